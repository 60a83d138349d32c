"""Strict loading of official-layout weights.

The official ``xdc_video_encoder`` calls ``load_state_dict(strict=False)``,
which loads nothing and says nothing when a key is renamed. Here the only
keys a file may lack are the classifier's (``fc.weight``/``fc.bias``) and
BatchNorm's ``num_batches_tracked`` counters; anything unexpected, missing
or of the wrong shape raises :class:`IncompatibleWeightsError` naming the
keys. Files are always read with ``torch.load(..., weights_only=True)``.
"""
import os.path as osp
from typing import Dict, Iterable, Mapping, Optional

import torch
from torch import nn

from xdc_plugin.encoders import R2Plus1D18
from xdc_plugin.weights.download import check_file_hash, download_pretrained
from xdc_plugin.weights.errors import IncompatibleWeightsError
from xdc_plugin.weights.release import PRETRAINED_CFGS, release_name

FC_KEYS = ('fc.weight', 'fc.bias')


def _is_optional(key: str, allow_missing: Iterable[str]) -> bool:
    return key in allow_missing or key.endswith('.num_batches_tracked')


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     allow_missing: Iterable[str] = FC_KEYS,
                     source: str = 'state dict') -> None:
    """Raise :class:`IncompatibleWeightsError` unless ``state_dict`` fits
    ``model``: every model key present (except ``allow_missing`` and the
    ``num_batches_tracked`` counters), no unexpected key, identical shapes.
    ``allow_missing`` keys (the fc) must be absent: the release never has
    them and the classifier is always freshly initialised."""
    allow_missing = tuple(allow_missing)
    expected = model.state_dict()
    bad_values = [k for k, v in state_dict.items()
                  if not isinstance(v, torch.Tensor)]
    unexpected = [k for k in state_dict
                  if k not in expected or k in allow_missing]
    missing = [k for k in expected
               if k not in state_dict and not _is_optional(k, allow_missing)]
    mismatched = [
        f'{k}: file {tuple(state_dict[k].shape)} vs model '
        f'{tuple(expected[k].shape)}'
        for k in state_dict
        if k in expected and k not in allow_missing
        and isinstance(state_dict[k], torch.Tensor)
        and state_dict[k].shape != expected[k].shape]
    problems = []
    if bad_values:
        problems.append(f'values that are not tensors: {bad_values}')
    if unexpected:
        problems.append(f'unexpected keys: {unexpected}')
    if missing:
        problems.append(f'missing keys: {missing}')
    if mismatched:
        problems.append('shape mismatches: ' + '; '.join(mismatched))
    if problems:
        hint = ''
        if any(k.startswith(('state_dict', 'module.', 'video_encoder.'))
               for k in unexpected):
            hint = (' This looks like a training checkpoint, not the '
                    'official layout; convert it with '
                    'tools/export_encoder.py.')
        raise IncompatibleWeightsError(
            f'{source} does not fit {type(model).__name__}: '
            + ' | '.join(problems) + '.' + hint)


def load_official_state_dict(model: nn.Module,
                             state_dict: Mapping[str, torch.Tensor],
                             allow_missing: Iterable[str] = FC_KEYS,
                             source: str = 'state dict') -> None:
    """Strictly checked ``model.load_state_dict`` (see
    :func:`check_state_dict`)."""
    check_state_dict(model, state_dict, allow_missing, source)
    model.load_state_dict(dict(state_dict), strict=False)


def read_weights_file(path: str, check_hash: bool = True
                      ) -> Dict[str, torch.Tensor]:
    """Read a ``.pth`` in the official layout (a flat ``{key: tensor}``
    dict) with ``weights_only=True``; a ``-<hex>`` hash prefix in the file
    name is verified first."""
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'No weights file at {path} (and it is not a release name: '
            f'{sorted(PRETRAINED_CFGS)})')
    if check_hash:
        check_file_hash(path)
    state_dict = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise IncompatibleWeightsError(
            f'{path} holds a {type(state_dict).__name__}, not a state dict '
            '(the official layout is a flat {key: tensor} dict).')
    if 'state_dict' in state_dict:
        raise IncompatibleWeightsError(
            f'{path} is a training checkpoint ({{"state_dict": ...}}), not '
            'the official layout; run tools/export_encoder.py on it first.')
    return dict(state_dict)


def resolve_weights(source: str, *, model_dir: Optional[str] = None,
                    progress: bool = True,
                    offline: Optional[bool] = None) -> str:
    """A local path for ``source``: ``xdc://<name>``, a release ``<name>``
    (both via :func:`download_pretrained`), or a local file path."""
    source = str(source)
    name = release_name(source)
    if name is not None:
        return download_pretrained(name, model_dir=model_dir,
                                   progress=progress, offline=offline)
    return osp.expanduser(source)


def load_pretrained_weights(model: nn.Module, source: str, *,
                            allow_missing: Iterable[str] = FC_KEYS,
                            model_dir: Optional[str] = None,
                            progress: bool = True,
                            offline: Optional[bool] = None) -> str:
    """Load ``source`` (see :func:`resolve_weights`) strictly into
    ``model``; returns the file used."""
    path = resolve_weights(source, model_dir=model_dir, progress=progress,
                           offline=offline)
    load_official_state_dict(model, read_weights_file(path), allow_missing,
                             source=path)
    return path


def reference_model(width: float = 1.0) -> R2Plus1D18:
    """An fc-less R2Plus1D18 on the meta device: keys and shapes only."""
    with torch.device('meta'):
        return R2Plus1D18(num_classes=0, width=width)
