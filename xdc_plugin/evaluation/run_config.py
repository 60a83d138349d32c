"""What a training run's config says about its encoders and their input.

A config comes from ``--cfg`` (a file the user names, read by mmengine), or
from a checkpoint: mmengine stores ``cfg.pretty_text`` in the checkpoint's
``meta`` and dumps the config into the work dir. Those two are read without
running anything: the stored text is parsed as Python *literals* only
(assignments of ``dict(...)``, lists, numbers, strings), YAML with
``safe_load``; a file that holds anything else is refused, never executed.
"""
import ast
import dataclasses
import glob
import logging
import os.path as osp
from typing import Mapping, Optional

import yaml
from mmengine.config import Config
from mmengine.logging import print_log

from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.engine.runner.config import load_config

# Settings a dataset config may give as its own keyword arguments.
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(ClipSpec)
                      if f.compare)


def _literal(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(v) for v in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v)
                for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(k.arg for k in node.keywords)):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)):
        return -node.operand.value
    raise ValueError(f'line {node.lineno}: {ast.dump(node)[:60]} is not a '
                     'plain value')


def config_from_text(text: str) -> dict:
    """The dict of a config written as ``name = <literal>`` lines (mmengine's
    ``pretty_text``), parsed without executing it."""
    config = {}
    for statement in ast.parse(text).body:
        if not (isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            raise ValueError(f'line {statement.lineno}: only "name = value" '
                             'assignments are read from a stored config')
        config[statement.targets[0].id] = _literal(statement.value)
    return config


def _read_dumped_config(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            text = f.read()
        config = (yaml.safe_load(text) if path.endswith(('.yaml', '.yml'))
                  else config_from_text(text))
    except (OSError, ValueError, SyntaxError, yaml.YAMLError) as exc:
        print_log(f'{path}: not read as a config ({exc})', logger='current',
                  level=logging.WARNING)
        return None
    return config if isinstance(config, dict) and 'model' in config else None


def run_config(checkpoint_path: str, meta: Optional[Mapping]) -> dict:
    """The config of the run that wrote a checkpoint: the one stored in its
    ``meta``, else the one dumped into its folder (the work dir); ``{}``
    when neither is there."""
    text = (meta or {}).get('cfg')
    if isinstance(text, str):
        try:
            return config_from_text(text)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(
                f'{checkpoint_path}: the config stored in its meta is not '
                f'plain data ({exc}); pass the run\'s config with --cfg.'
            ) from exc
    folder = osp.dirname(osp.abspath(checkpoint_path))
    found = [c for c in map(_read_dumped_config, sorted(
        glob.glob(osp.join(folder, '*.yaml')) +
        glob.glob(osp.join(folder, '*.py')))) if c is not None]
    if len(found) > 1:
        raise ValueError(f'{folder} holds {len(found)} configs with a model; '
                         'say which with --cfg.')
    return found[0] if found else {}


def as_config_dict(cfg) -> dict:
    """A config path (read by mmengine: the user chose it), a ``Config`` or
    a dict -> plain dict."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if isinstance(cfg, Config):
        return cfg.to_dict()
    return dict(cfg)


def _innermost_dataset(cfg: Mapping) -> Mapping:
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    while isinstance(dataset.get('dataset'), Mapping):  # dataset wrappers
        dataset = dataset['dataset']
    return dataset


def input_settings(cfg: Mapping) -> ClipSpec:
    """The clip of the training dataset of ``cfg``: its clip keyword
    arguments, then its pipeline's (which win; ``ClipSpec.from_pipeline``).
    Settings the config does not give keep their defaults."""
    dataset = _innermost_dataset(cfg)
    pipeline = [t for t in dataset.get('pipeline') or ()
                if isinstance(t, Mapping)]
    return ClipSpec.from_pipeline(
        pipeline, **{k: dataset[k] for k in SETTING_NAMES if k in dataset})


def encoder_cfg(cfg: Mapping, modality: str) -> Optional[dict]:
    """``model.<modality>_encoder`` of ``cfg``, or None."""
    found = (cfg.get('model') or {}).get(f'{modality}_encoder')
    return dict(found) if isinstance(found, Mapping) else None
