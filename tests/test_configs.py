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
from xdc_plugin.engine.launch.dry_run import clip_shapes
from xdc_plugin.engine.round.extract_loader import extract_dataset_cfg
from xdc_plugin.engine.round.round_clustering import build_clusterer

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPES = sorted(glob.glob(osp.join(REPO, 'configs', 'xdc_*.yaml')))


def _paths(dataset):
    return [dataset.get_data_info(i)['path'] for i in range(len(dataset))]


def _narrow(config):
    """Width overrides of the encoders that have a width (ours)."""
    model = load_config(config).model
    return [f'model.{encoder}.width=0.125'
            for encoder in ('video_encoder', 'audio_encoder')
            if 'width' in model[encoder]]


def _build(config, overrides, tmp_path):
    cfg = load_config(config, overrides + [
        f'work_dir={tmp_path / "work"}', 'train_dataloader.num_workers=0',
        'default_hooks.clustering.extract_dataloader.num_workers=0',
        'env_cfg.dist_cfg.backend=gloo'] + _narrow(config))
    runner = Runner.from_cfg(cfg)
    for hook in runner.hooks:  # what training starts with
        if type(hook).__name__ in ('CrossModalClusteringHook',
                                   'DatasetEpochHook'):
            hook.before_train(runner)
    return runner, runner.train_dataloader.dataset, \
        _clustering(runner)._extract_loader.dataset


def _clustering(runner):
    return next(h for h in runner.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')


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
    assert names == ['xdc_audioset.yaml', 'xdc_avobjects.yaml',
                     'xdc_avobjects_paper_input.yaml', 'xdc_demo.yaml',
                     *sorted(HOST_DEMOS), 'xdc_ig65m.yaml',
                     'xdc_kinetics.yaml', 'xdc_kinetics_x3d.yaml']


PER_SOURCE_K = ['model.num_clusters.video=5', 'model.num_clusters.audio=5']


@pytest.mark.parametrize('config, k_overrides', [
    ('xdc_avobjects.yaml', ['model.num_clusters=5']),
    ('xdc_kinetics.yaml', PER_SOURCE_K),
    ('xdc_kinetics.yaml', ['+model.num_clusters=5']),  # one k for all
    ('xdc_audioset.yaml', PER_SOURCE_K),
    ('xdc_ig65m.yaml', PER_SOURCE_K)])
def test_manifest_model_and_seed_overrides(config, k_overrides, manifest,
                                           tmp_path):
    runner, train, extract = _build(
        osp.join(REPO, 'configs', config),
        [f'train_dataloader.dataset.ann_file={manifest}',
         'train_dataloader.dataset.label_column=label',
         'model.variant=sdc', 'randomness.seed=7',
         'default_hooks.clustering.interval=3',
         '+default_hooks.clustering.feature_bank=True'
         ] + k_overrides, tmp_path)
    expected = [str(manifest.parent / n) for n in ('a.mp4', 'b.mp4',
                                                   'c.mp4')]
    assert _paths(train) == expected
    assert _paths(extract) == expected
    assert train.get_labels().tolist() == [0, 1, 0]
    model = runner.model
    assert model.variant == 'sdc'
    assert set(model.num_clusters.values()) == {5}
    assert runner.seed == 7 and train.seed == 7
    assert _clustering(runner).interval == 3
    assert _clustering(runner).feature_bank
    assert runner.work_dir == str(tmp_path / 'work')
    # The two pipelines: random clips for training, centred for features.
    assert [t.mode for t in train.pipeline.transforms[:1]] == ['random']
    assert [t.mode for t in extract.pipeline.transforms[:1]] == ['center']
    assert not runner.train_dataloader.persistent_workers


@pytest.mark.parametrize('config, k', [('xdc_kinetics.yaml', 256),
                                       ('xdc_kinetics_x3d.yaml', 256),
                                       ('xdc_audioset.yaml', 1024),
                                       ('xdc_ig65m.yaml', 8192)])
def test_paper_recipes_per_source_k_and_schedule(config, k, manifest,
                                                 tmp_path):
    runner, _, _ = _build(osp.join(REPO, 'configs', config), [
        f'train_dataloader.dataset.ann_file={manifest}',
        'model.num_clusters.audio=7'], tmp_path)
    assert runner.model.num_clusters == {'video': k, 'audio': 7}
    schedulers = runner.cfg.param_scheduler
    # The cosine ends with training, after the warm-up.
    assert schedulers[-1]['begin'] + schedulers[-1]['T_max'] == \
        runner.cfg.train_cfg.max_epochs
    assert schedulers[0]['end'] == schedulers[-1]['begin']
    assert runner.cfg.throughput_estimate.mfu == 0.2
    # GPU runs: page-locked batches, copied to the device asynchronously.
    assert runner.train_dataloader.pin_memory
    assert _clustering(runner)._extract_loader.pin_memory
    assert runner.model.data_preprocessor._non_blocking


def test_ig65m_clusterer_overrides(manifest, tmp_path):
    runner, _, _ = _build(osp.join(REPO, 'configs', 'xdc_ig65m.yaml'), [
        f'train_dataloader.dataset.ann_file={manifest}',
        'default_hooks.clustering.clusterers.preprocess.pca_dim=16',
        'default_hooks.clustering.clusterers.feature_dtype=float32'], tmp_path)
    hook = _clustering(runner)
    clusterer = build_clusterer(hook.clusterer_cfgs, 'video',
                                runner.model.num_clusters['video'],
                                world_size=1)
    assert type(clusterer).__name__ == 'DistributedKMeans'
    assert clusterer.preprocess['pca_dim'] == 16
    assert clusterer.feature_dtype == 'float32'
    assert clusterer.max_points_per_centroid == 256
    assert runner.train_dataloader.dataset.check == 'headers'


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


# The demo with one host encoder: modality, backbone class, pooled width.
HOST_DEMOS = {
    'xdc_demo_pytorchvideo.yaml': ('video', 'PytorchVideoHub', 192),
    'xdc_demo_resnet_audio.yaml': ('audio', 'ResNetAudio', 512),
    'xdc_demo_slowonly.yaml': ('video', 'ResNet3dSlowOnly', 128),
    'xdc_demo_swin.yaml': ('video', 'SwinTransformer3D', 192),
    'xdc_demo_x3d.yaml': ('video', 'X3D', 432),
}


@pytest.fixture(scope='module')
def small_demo(tmp_path_factory):
    """Overrides putting 4 demo clips under a folder of this module."""
    data = tmp_path_factory.mktemp('demo')
    return [f'train_dataloader.dataset.data_root={data}',
            'train_dataloader.dataset.generate.num_classes=2',
            'train_dataloader.dataset.generate.clips_per_class=2',
            '+train_dataloader.dataset.generate.progress=false',
            'model.num_clusters=3']


@pytest.mark.parametrize('config', sorted(HOST_DEMOS))
def test_host_demos_are_the_demo_with_another_encoder(config, small_demo,
                                                      tmp_path):
    modality, backbone, feat_dim = HOST_DEMOS[config]
    path = osp.join(REPO, 'configs', config)
    demo = load_config(osp.join(REPO, 'configs', 'xdc_demo.yaml')).to_dict()
    cfg = load_config(path).to_dict()
    for differs in ('work_dir', 'model'):
        demo.pop(differs), cfg.pop(differs)
    assert cfg == demo  # same data, schedule, rounds and seed
    runner, train, _ = _build(path, small_demo, tmp_path)
    encoder = runner.model.encoder(modality)
    assert type(encoder).__name__ == 'HostBackbone'
    assert type(encoder.backbone).__name__ == backbone
    assert encoder.feat_dim == feat_dim
    # Its input_shape is what the pipeline makes.
    assert list(encoder.input_shape) == list(train[0][modality].shape)


def test_paper_host_recipe_input_is_its_pipeline_clip():
    cfg = load_config(osp.join(REPO, 'configs', 'xdc_kinetics_x3d.yaml'))
    video, _ = clip_shapes(cfg.train_dataloader.dataset)
    assert list(video) == cfg.model.video_encoder.input_shape
    extract = extract_dataset_cfg(
        cfg.train_dataloader.dataset,
        cfg.default_hooks.clustering.extract_dataloader)['pipeline']
    assert [t for t in extract if t['type'] == 'VideoCrop'][0]['size'] == \
        video[-1]


def test_a_mistyped_key_is_refused():
    from xdc_plugin.engine import ConfigKeyError
    with pytest.raises(ConfigKeyError, match='ann_file'):
        load_config(osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
                    ['train_dataloader.dataset.ann_fiel=x.csv'])
