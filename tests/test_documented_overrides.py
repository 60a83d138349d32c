"""Every ``KEY=VALUE`` override that the READMEs and the config comments tell
a user to write is accepted by the config it is written for and sets that
key; ``test_configs.py`` shows each documented key reaching the built
objects.

Where overrides are read: the ``tools/run_net.py`` and
``tools/submit_slurm.py`` commands of the READMEs' code blocks (with their
``--cfg``), inline ```key.sub=value``` mentions in the READMEs (applied to
every recipe), and ``key.sub=VALUE`` in a config's comments (applied to that
config). ``a|b`` lists alternatives; upper-case or ``...`` values are
placeholders.
"""
import glob
import os.path as osp
import re

import pytest

from xdc_plugin.engine import load_config
from xdc_plugin.engine.runner.config import parse_overrides

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
READMES = ('README.md', 'projects/xdc/README.md')
RECIPES = sorted(osp.relpath(p, REPO)
                 for p in glob.glob(osp.join(REPO, 'configs', 'xdc_*.yaml')))
_OVERRIDE = re.compile(r'^\+?[A-Za-z_][\w]*(\.\w+)*=\S+$')
_INLINE = re.compile(r'`(\+?[A-Za-z_]\w*(?:\.\w+)+=[^`\s]+)`')
_COMMENT = re.compile(r'(?<![\w.+])(\+?[a-z_]\w*(?:\.\w+)+=[^\s,;)]+)')
_PLACEHOLDER = re.compile(r'^(\.\.\.|[A-Z][A-Z_0-9]*)$')
# The keys whose effect on the built runner, datasets and model
# test_configs.py asserts.
KEYS_REACHING_THE_BUILD = {
    'train_dataloader.dataset.ann_file', 'train_dataloader.dataset.data_root',
    'train_dataloader.dataset.label_column', 'model.num_clusters',
    'model.variant', 'randomness.seed', 'work_dir',
    'default_hooks.clustering.feature_bank'}


def _alternatives(override):
    key, value = override.split('=', 1)
    if _PLACEHOLDER.match(value):
        value = 'placeholder'
    return [f'{key}={v}' for v in value.split('|')]


def _commands(text):
    """Shell commands of the fenced code blocks, continuations joined."""
    blocks = re.findall(r'```(?:bash|sh|shell)?\n(.*?)```', text, re.S)
    for block in blocks:
        yield from block.replace('\\\n', ' ').splitlines()


def documented_overrides():
    """``[(where, config, override)]``."""
    found = []
    for readme in READMES:
        text = open(osp.join(REPO, readme), encoding='utf-8').read()
        for command in _commands(text):
            if not re.search(r'tools/(run_net|submit_slurm)\.py', command):
                continue
            words = command.split()
            config = words[words.index('--cfg') + 1]
            found += [(readme, config, o) for w in words
                      if _OVERRIDE.match(w) for o in _alternatives(w)]
        found += [(readme, config, o) for m in _INLINE.findall(text)
                  for o in _alternatives(m) for config in RECIPES]
    # configs/benchmarks/ comments name mmengine --cfg-options of
    # tools/benchmark.py, not run_net overrides.
    for config in glob.glob(osp.join(REPO, 'configs', '*.yaml')) + glob.glob(
            osp.join(REPO, 'configs', '_base_', '**', '*.yaml'),
            recursive=True):
        for line in open(config, encoding='utf-8'):
            if line.lstrip().startswith('#'):
                found += [(osp.relpath(config, REPO), osp.relpath(
                    config, REPO), o) for m in _COMMENT.findall(line)
                          for o in _alternatives(m)]
    return sorted(set(found))


DOCUMENTED = documented_overrides()


def _key(override):
    return override.split('=', 1)[0].lstrip('+')


def test_the_documents_are_read():
    overrides = {o for _, _, o in DOCUMENTED}
    assert {'model.variant=sdc', 'model.variant=cdc', 'randomness.seed=1',
            'train_dataloader.dataset.data_root=placeholder'} <= overrides
    assert any(o.startswith('work_dir=') for o in overrides)
    assert {c for _, c, _ in DOCUMENTED} >= set(RECIPES)


@pytest.mark.parametrize('where,config,override', DOCUMENTED)
def test_documented_override_sets_its_key(where, config, override):
    cfg = load_config(osp.join(REPO, config), [override])
    existing, new = parse_overrides([override])
    for key, value in {**existing, **new}.items():
        node = cfg
        for part in key.split('.'):
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, dict) and not isinstance(value, dict):
            value = dict.fromkeys(node, value)  # one k for every modality
        assert node == value, (where, key)


def test_documented_keys_reach_the_built_objects():
    keys = {_key(o) for _, _, o in DOCUMENTED}
    assert keys <= KEYS_REACHING_THE_BUILD, keys - KEYS_REACHING_THE_BUILD
