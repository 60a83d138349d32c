"""The recipes' layout: each states its input once, and the clustering hook
lives in one base per kind of run.

* Every recipe builds the config it built when each recipe held a copy of
  the hook with its own extraction pipeline (``BEFORE``: the built config
  of every recipe at commit e6fb684, written by ``_write_before`` from
  that commit's ``configs/``), but for the intended differences, undone
  by ``_as_before``: the hook is ``default_hooks.clustering`` instead of
  ``custom_hooks[0]``, and its extraction pipeline is derived from the
  train pipeline (it must equal the one the recipe wrote).
* The crop size, changed in one place (the train pipeline's
  ``VideoCrop``), changes the training pipeline, the extraction pipeline,
  the dry run's clip and estimates, and the evaluation's input together.
"""
import copy
import glob
import json
import os.path as osp
import sys

import pytest

from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.engine.launch import dry_run
from xdc_plugin.engine.launch.launch import main
from xdc_plugin.engine.round.extract_loader import extract_dataset_cfg
from xdc_plugin.engine.runner.config import load_config
from xdc_plugin.evaluation.eval_data import eval_pipeline
from xdc_plugin.evaluation.run_config import input_settings
from xdc_plugin.registry import DATASETS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPES = sorted(osp.basename(p) for p in glob.glob(
    osp.join(REPO, 'configs', 'xdc_*.yaml')))
BEFORE_FILE = osp.join(REPO, 'tests', 'fixtures', 'recipes_e6fb684.json')


def _built(config_dir, name):
    """The built config of a recipe as plain JSON data."""
    cfg = load_config(osp.join(config_dir, name)).to_dict()
    return json.loads(json.dumps(cfg))


def _write_before(config_dir, path=BEFORE_FILE):
    """Write ``BEFORE`` from the recipes under ``config_dir``."""
    with open(path, 'w') as f:
        json.dump({name: _built(config_dir, name) for name in sorted(
            osp.basename(p) for p in glob.glob(
                osp.join(config_dir, 'xdc_*.yaml')))}, f, indent=1,
            sort_keys=True)
        f.write('\n')


def _as_before(cfg):
    """``cfg`` with the intended differences undone: the hook back in
    ``custom_hooks``, its extraction pipeline written out."""
    cfg = copy.deepcopy(cfg)
    hook = cfg['default_hooks'].pop('clustering')
    extract = hook['extract_dataloader']
    extract['dataset'] = dict(pipeline=extract_dataset_cfg(
        cfg['train_dataloader']['dataset'], extract)['pipeline'])
    cfg['custom_hooks'] = [hook]
    return cfg


@pytest.fixture(scope='module')
def before():
    with open(BEFORE_FILE) as f:
        return json.load(f)


def test_every_recipe_is_listed_before(before):
    assert sorted(before) == RECIPES


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_builds_the_config_it_built_before(name, before):
    cfg = _built(osp.join(REPO, 'configs'), name)
    assert 'custom_hooks' not in cfg
    assert 'pipeline' not in cfg['default_hooks']['clustering'][
        'extract_dataloader'].get('dataset', {})
    # Registered after every other default hook, as custom_hooks were.
    assert list(cfg['default_hooks'])[-1] == 'clustering'
    assert _as_before(cfg) == before[name]


def _manifest(tmp_path, rows=300):
    tmp_path.mkdir()
    lines = ['path'] + [f'{i}.mp4' for i in range(rows)]
    for i in range(rows):
        (tmp_path / f'{i}.mp4').write_bytes(b'')
    path = tmp_path / 'train.csv'
    path.write_text('\n'.join(lines) + '\n')
    return path


def _everything_of_the_clip(tmp_path, overrides):
    """The crop size as the training pipeline, the extraction pipeline,
    the dry run and the evaluation each see it, and the dry run's report,
    for the Kinetics recipe with ``overrides``."""
    config = osp.join(REPO, 'configs', 'xdc_kinetics.yaml')
    manifest = _manifest(tmp_path)
    small = ['model.video_encoder.width=0.125',
             'model.audio_encoder.width=0.125',
             'default_hooks.clustering.clusterers.preprocess.pca_dim=32',
             f'train_dataloader.dataset.ann_file={manifest}', *overrides]
    cfg = load_config(config, small)
    train_cfg = cfg.train_dataloader.dataset
    extract_cfg = extract_dataset_cfg(
        train_cfg, cfg.default_hooks.clustering.extract_dataloader)
    train, extract = (DATASETS.build(dict(c, lazy_init=True))
                      for c in (train_cfg, extract_cfg))
    (train_crop, ) = (t for t in train.pipeline.transforms
                      if type(t).__name__ == 'VideoCrop')
    (extract_crop, ) = (t for t in extract.pipeline.transforms
                        if type(t).__name__ == 'VideoCrop')
    assert train_crop.random and not extract_crop.random
    report = main(['--cfg', config, '--dry-run', '--world-size', '2',
                   '--work-dir', str(tmp_path / 'work'), *small])
    evaluation = eval_pipeline(input_settings(cfg.to_dict()), 1,
                               ('video', 'audio'))
    (eval_crop, ) = (t for t in evaluation if t['type'] == 'VideoCrop')
    return dict(train=train_crop.size, extract=extract_crop.size,
                dry_run=dry_run.clip_shapes(train_cfg)[0][-1],
                evaluation=eval_crop['size']), report


def test_the_crop_size_is_stated_once(tmp_path):
    crops, report = _everything_of_the_clip(tmp_path / 'a', [])
    assert crops == dict.fromkeys(crops, 112)
    changed, changed_report = _everything_of_the_clip(
        tmp_path / 'b', ['train_dataloader.dataset.pipeline.3.size=96'])
    assert changed == dict.fromkeys(crops, 96)
    # The dry run's FLOPs and times follow the clip: (96 / 112)^2 of the
    # video's spatial work.
    ratio = changed_report['forward_flops']['video'] / \
        report['forward_flops']['video']
    assert ratio == pytest.approx((96 / 112) ** 2, rel=0.05)
    assert changed_report['seconds']['epoch'] < report['seconds']['epoch']
    assert changed_report['forward_flops']['audio'] == \
        report['forward_flops']['audio']
    # Its memory per rank is the clustering's (N, features, k): the clip
    # size does not enter it.
    assert changed_report['memory_gib'] == report['memory_gib']


def test_the_dry_run_reads_the_clip_of_the_spec():
    cfg = load_config(osp.join(REPO, 'configs', 'xdc_avobjects.yaml'))
    spec = ClipSpec.from_pipeline(cfg.train_dataloader.dataset.pipeline)
    assert dry_run.clip_shapes(cfg.train_dataloader.dataset) == (
        spec.video_shape, spec.audio_shape) == ((3, 8, 48, 48), (1, 40, 101))


if __name__ == '__main__':
    _write_before(sys.argv[1])
