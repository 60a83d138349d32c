"""Every shipped XDC config builds, and every override that the README and
the config comments mention reaches the built objects: the train dataset's
file list, the feature-extraction dataset's (the clustering hook's), the
model, the seed, the demo data location."""
import glob
import os.path as osp
import shutil

import pytest
import torch
from mmengine.runner import Runner

from xdc_plugin.engine import load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPES = sorted(glob.glob(osp.join(REPO, 'configs', 'xdc_*.yaml')))


def _paths(dataset):
    return [dataset.get_data_info(i)['path'] for i in range(len(dataset))]


def _build(config, overrides, tmp_path):
    cfg = load_config(config, overrides + [
        f'work_dir={tmp_path / "work"}', 'train_dataloader.num_workers=0',
        'custom_hooks.0.extract_dataloader.num_workers=0',
        'model.video_encoder.width=0.125', 'model.audio_encoder.width=0.125',
        'env_cfg.dist_cfg.backend=gloo'])
    runner = Runner.from_cfg(cfg)
    for hook in runner.hooks:  # what training starts with
        if type(hook).__name__ in ('CrossModalClusteringHook',
                                   'DatasetEpochHook'):
            hook.before_train(runner)
    clustering = next(h for h in runner.hooks
                      if type(h).__name__ == 'CrossModalClusteringHook')
    return runner, runner.train_dataloader.dataset, \
        clustering._extract_loader.dataset


@pytest.fixture(scope='module')
def manifest(tmp_path_factory, media_dir):
    """Three files of our own, listed with labels."""
    root = tmp_path_factory.mktemp('mine')
    for name in ('a.mp4', 'b.mp4', 'c.mp4'):
        shutil.copy(media_dir / 'timecode.mp4', root / name)
    path = root / 'mine.csv'
    path.write_text('path,label\na.mp4,x\nb.mp4,y\nc.mp4,x\n')
    return path


def test_the_shipped_recipes():
    names = [osp.basename(p) for p in RECIPES]
    assert names == ['xdc_avobjects.yaml', 'xdc_demo.yaml',
                     'xdc_kinetics.yaml']


@pytest.mark.parametrize('config', ['xdc_avobjects.yaml',
                                    'xdc_kinetics.yaml'])
def test_manifest_model_and_seed_overrides(config, manifest, tmp_path):
    runner, train, extract = _build(
        osp.join(REPO, 'configs', config),
        [f'train_dataloader.dataset.ann_file={manifest}',
         'train_dataloader.dataset.label_column=label',
         'model.num_clusters=5', 'model.variant=sdc', 'randomness.seed=7'],
        tmp_path)
    expected = [str(manifest.parent / n) for n in ('a.mp4', 'b.mp4',
                                                   'c.mp4')]
    assert _paths(train) == expected
    assert _paths(extract) == expected
    assert train.get_labels().tolist() == [0, 1, 0]
    model = runner.model
    assert model.variant == 'sdc'
    assert set(model.num_clusters.values()) == {5}
    assert runner.seed == 7 and train.seed == 7
    assert runner.work_dir == str(tmp_path / 'work')
    # The two pipelines: random clips for training, centred for features.
    assert [t.mode for t in train.pipeline.transforms[:1]] == ['random']
    assert [t.mode for t in extract.pipeline.transforms[:1]] == ['center']
    assert not runner.train_dataloader.persistent_workers


def test_demo_data_location(tmp_path):
    data = tmp_path / 'demo'
    runner, train, extract = _build(
        osp.join(REPO, 'configs', 'xdc_demo.yaml'),
        [f'train_dataloader.dataset.data_root={data}',
         'train_dataloader.dataset.generate.num_classes=2',
         'train_dataloader.dataset.generate.clips_per_class=2',
         '+train_dataloader.dataset.generate.progress=false',
         'model.num_clusters=3'], tmp_path)
    assert osp.isfile(data / 'manifest.csv')  # made on first use
    assert len(train) == 4 and _paths(extract) == _paths(train)
    assert all(p.startswith(str(data)) for p in _paths(train))
    assert train.metainfo['classes'] == tuple(sorted(
        {osp.basename(osp.dirname(p)) for p in _paths(train)}))
    assert set(runner.model.num_clusters.values()) == {3}
    sample = train[0]
    assert sample['video'].shape == (3, 8, 40, 40)
    assert sample['audio'].shape == (1, 40, 101)
    assert sample['video'].dtype == torch.uint8


def test_a_mistyped_key_is_refused():
    from xdc_plugin.engine import ConfigKeyError
    with pytest.raises(ConfigKeyError, match='ann_file'):
        load_config(osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
                    ['train_dataloader.dataset.ann_fiel=x.csv'])
