"""configs/benchmarks/{ucf101,hmdb51}.yaml: mmaction2's Recognizer3D on
XDCBackbone; the settings tools/benchmark.py applies reach the built
objects; fc-only trains the classifier only; the test pipeline decodes the
frames it samples."""
import os.path as osp

import numpy as np
import pytest
import torch
from tiny_video_releases import SMALL_RUN, make_release, write_avi

import xdc_plugin  # noqa: F401
from xdc_plugin.encoders import XDC_MEAN, XDC_STD, R2Plus1D18
from xdc_plugin.engine.runner.config import ConfigKeyError
from xdc_plugin.evaluation.video_benchmark import (EncoderWeights,
                                                   benchmark_config)
from xdc_plugin.evaluation.video_splits import convert_split
from xdc_plugin.weights import save_hash_named

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO_DIR, 'configs', 'benchmarks')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _transform(pipeline, kind):
    return next(t for t in pipeline if t['type'] == kind)


@pytest.fixture(scope='module')
def tiny_ucf101(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'ucf101'
    make_release('ucf101', root)
    return convert_split('ucf101', str(root), str(root / 'annotations'), 1)


@pytest.mark.parametrize('dataset,num_classes', [('ucf101', 101),
                                                 ('hmdb51', 51)])
def test_configs_build_the_documented_recognizer(dataset, num_classes):
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope
    from xdc_plugin.engine.runner.config import load_config
    cfg = load_config(osp.join(CONFIGS, f'{dataset}.yaml'))
    assert cfg.default_scope == 'mmaction'
    assert cfg.custom_imports['imports'] == ['xdc_plugin']
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.frozen_stages, backbone.norm_eval) == (
        'xdc.XDCBackbone', -1, False)
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint='xdc://r2plus1d_18_xdc_ig65m_kinetics')
    head = cfg.model.cls_head
    assert (head.type, head.num_classes, head.in_channels, head.dropout_ratio,
            head.average_clips) == ('I3DHead', num_classes, 512, 0.0, 'prob')
    pre = cfg.model.data_preprocessor
    assert np.allclose(pre.mean, np.array(XDC_MEAN) * 255, atol=1e-3)
    assert np.allclose(pre.std, np.array(XDC_STD) * 255, atol=1e-3)
    for loader in LOADERS:
        dataset_cfg = cfg[loader].dataset
        assert dataset_cfg.type == 'VideoDataset'
        assert f'{dataset}_' in dataset_cfg.ann_file
        pipeline = dataset_cfg.pipeline
        assert [t['type'] for t in pipeline][:3] == [
            'PyAVInit', 'SampleFrames', 'PyAVDecode']
        sample = _transform(pipeline, 'SampleFrames')
        assert (sample['clip_len'], sample['frame_interval']) == (32, 1)
        assert _transform(pipeline, 'Resize')['scale'] == (-1, 128)
        crop = pipeline[4]
        assert crop.get('size', crop.get('crop_size')) == 112
    test_sample = _transform(cfg.test_dataloader.dataset.pipeline,
                             'SampleFrames')
    assert (test_sample['num_clips'], test_sample['test_mode']) == (10, True)
    assert cfg.test_evaluator == dict(type='AccMetric')
    init_default_scope('mmaction')
    model = MODELS.build(dict(cfg.model, backbone=dict(
        backbone, width=0.25, init_cfg=None), cls_head=dict(
            head, in_channels=128)))
    logits = model.cls_head(model.backbone(torch.zeros(2, 3, 8, 32, 32)))
    assert logits.shape == (2, num_classes)


def test_benchmark_settings_reach_the_config(tiny_ucf101, tmp_path):
    config = osp.join(CONFIGS, 'ucf101.yaml')
    run = dict(annotations=tiny_ucf101, frames=8, mode='fc-only',
               weights=EncoderWeights('weights.pth', 0.25),
               work_dir=str(tmp_path / 'split_1'))
    cfg = benchmark_config(config, ['train_dataloader.num_workers=0'],
                           **run)
    for loader in LOADERS:
        dataset = cfg[loader].dataset
        part = 'train' if loader == 'train_dataloader' else 'test'
        assert dataset.ann_file == tiny_ucf101[part]
        assert dataset.data_prefix == dict(video=tiny_ucf101['video_dir'])
        assert _transform(dataset.pipeline, 'SampleFrames')['clip_len'] == 8
    backbone = cfg.model.backbone
    assert (backbone.frozen_stages, backbone.norm_eval, backbone.width) == (
        4, True, 0.25)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint='weights.pth')
    assert (cfg.model.cls_head.num_classes,
            cfg.model.cls_head.in_channels) == (3, 128)
    assert cfg.work_dir == str(tmp_path / 'split_1')
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True
    # An option wins over the run's setting; the classifier follows the
    # backbone's width; a key the config lacks is refused.
    cfg = benchmark_config(config, ['model.backbone.frozen_stages=0',
                                    'model.backbone.width=0.5',
                                    'test_dataloader.dataset.pipeline.3.'
                                    'scale=[-1, 64]'], **run)
    assert cfg.model.backbone.frozen_stages == 0
    assert cfg.model.backbone.norm_eval is True
    assert cfg.model.cls_head.in_channels == 256
    assert cfg.test_dataloader.dataset.pipeline[3]['scale'] == (-1, 64)
    with pytest.raises(ValueError, match='in_channels=512 but a backbone of '
                       'width 0.25 gives 128'):
        benchmark_config(config, ['model.cls_head.in_channels=512'], **run)
    with pytest.raises(ConfigKeyError, match='frozen_stage'):
        benchmark_config(config, ['model.backbone.frozen_stage=4'], **run)


@pytest.mark.parametrize('mode', ['fc-only', 'finetune'])
def test_training_moves_only_what_the_mode_trains(mode, tiny_ucf101,
                                                  tmp_path):
    from mmengine.runner import Runner
    torch.manual_seed(0)
    weights = save_hash_named(R2Plus1D18(num_classes=0, width=0.25)
                              .state_dict(), str(tmp_path), 'small')
    cfg = benchmark_config(
        osp.join(CONFIGS, 'ucf101.yaml'), SMALL_RUN, annotations=tiny_ucf101,
        frames=4, mode=mode, weights=EncoderWeights(weights, 0.25),
        work_dir=str(tmp_path / 'work'))
    cfg.experiment_name = f'finetune_recognizer_{mode}'
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()  # train() keeps weights already initialised
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    after = runner.model.state_dict()
    assert runner.iter == 2  # 9 training videos, batches of 5
    file_weights = torch.load(weights, weights_only=True)
    for key, value in file_weights.items():
        assert torch.equal(before[f'backbone.{key}'], value), key
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {'cls_head.fc_cls.weight', 'cls_head.fc_cls.bias'} <= changed
    backbone_changed = {k for k in changed if k.startswith('backbone.')}
    if mode == 'fc-only':  # weights and BatchNorm statistics untouched
        assert not backbone_changed
    else:  # the stem has lr 0; BatchNorm statistics and later layers move
        assert 'backbone.layer4.1.conv2.0.3.weight' in backbone_changed
        assert 'backbone.stem.1.running_mean' in backbone_changed
        assert not {'backbone.stem.0.weight',
                    'backbone.stem.3.weight'} & backbone_changed


# A tiny X3D, as a HostBackbone encoder trained with it would bring it.
TINY_X3D = dict(type='mmaction.X3D', gamma_w=0.25, gamma_b=1.0, gamma_d=0.5)
HOST_RUN = [o for o in SMALL_RUN if not o.startswith('model.backbone.')]


def test_a_host_backbone_replaces_the_backbone(tiny_ucf101, tmp_path):
    config = osp.join(CONFIGS, 'ucf101.yaml')
    run = dict(annotations=tiny_ucf101, frames=8, mode='fc-only',
               weights=EncoderWeights('weights.pth', host_backbone=TINY_X3D,
                                      feat_dim=72),
               work_dir=str(tmp_path / 'split_1'))
    cfg = benchmark_config(config, HOST_RUN, **run)
    assert cfg.model.backbone == dict(TINY_X3D, frozen_stages=4,
                                      norm_eval=True)
    assert cfg.load_from == 'weights.pth'
    assert cfg.model.cls_head.in_channels == 72
    cfg = benchmark_config(config, HOST_RUN + [
        'model.backbone.frozen_stages=2'], **run)
    assert cfg.model.backbone.frozen_stages == 2
    with pytest.raises(ValueError, match='in_channels=512 but mmaction.X3D '
                       'gives 72'):
        benchmark_config(config, ['model.cls_head.in_channels=512'], **run)
    # Our PytorchVideoHub is named with its scope in mmaction2's.
    hub = dict(type='PytorchVideoHub', model='x3d_xs')
    cfg = benchmark_config(config, HOST_RUN, **dict(run, mode='finetune',
                           weights=EncoderWeights(host_backbone=hub,
                                                  feat_dim=192)))
    assert cfg.model.backbone == dict(hub, type='xdc.PytorchVideoHub')
    assert cfg.load_from is None
    # fc-only: every backbone parameter at lr 0, whatever the class
    # freezes itself; TimeSformer takes no frozen_stages.
    custom_keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert 'backbone' not in custom_keys  # finetune
    timesformer = dict(type='mmaction.TimeSformer', num_frames=8,
                       img_size=32, patch_size=16)
    cfg = benchmark_config(config, HOST_RUN, **dict(
        run, weights=EncoderWeights(host_backbone=timesformer, feat_dim=768)))
    assert cfg.model.backbone == dict(timesformer)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone == dict(
        lr_mult=0.0, decay_mult=0.0)


def test_fc_only_host_backbone_keeps_the_loaded_weights(tiny_ucf101,
                                                       tmp_path):
    from mmengine.runner import Runner
    from xdc_plugin.registry import MODELS
    torch.manual_seed(0)
    encoder = MODELS.build(dict(type='HostBackbone', backbone=TINY_X3D,
                                input_shape=[3, 4, 32, 32]))
    encoder.init_weights()
    own = encoder.state_dict()
    weights = save_hash_named({'backbone.' + k: v for k, v in own.items()},
                              str(tmp_path), 'x3d')
    cfg = benchmark_config(
        osp.join(CONFIGS, 'ucf101.yaml'), HOST_RUN, annotations=tiny_ucf101,
        frames=4, mode='fc-only', weights=EncoderWeights(
            weights, host_backbone=TINY_X3D, feat_dim=encoder.feat_dim),
        work_dir=str(tmp_path / 'work'))
    cfg.experiment_name = 'finetune_recognizer_host'
    runner = Runner.from_cfg(cfg)
    head_before = runner.model.cls_head.fc_cls.weight.detach().clone()
    runner.train()  # init, load_from, two iterations
    assert runner.iter == 2
    after = runner.model.backbone.state_dict()
    assert set(after) == set(own)
    for key, value in own.items():  # loaded, then frozen (BN too)
        assert torch.equal(after[key], value), key
    assert not torch.equal(runner.model.cls_head.fc_cls.weight, head_before)


def _coded_frames(num_frames, size=64):
    """Frame i shows i in binary: 8 vertical bars, white for a 1 bit."""
    frames = np.zeros((num_frames, size // 2, size, 3), np.uint8)
    for i in range(num_frames):
        for bit in range(8):
            if (i >> bit) & 1:
                frames[i, :, bit * size // 8:(bit + 1) * size // 8] = 255
    return frames


def _frame_codes(images, size=64):
    return [sum(1 << bit for bit in range(8)
                if image[size // 4, bit * size // 8 + size // 16].mean() > 128)
            for image in images]


@pytest.mark.parametrize('loader', LOADERS)
def test_pipeline_decodes_the_frames_it_samples(loader, tmp_path):
    # On an MPEG-4 Part 2 .avi with B-frames, the releases' codec, on which
    # decord's seeking returns other frames (dmlc/decord#195).
    import mmaction.datasets  # noqa: F401 - registers the transforms
    from mmaction.registry import TRANSFORMS
    from xdc_plugin.engine.runner.config import load_config
    path = tmp_path / 'coded.avi'
    write_avi(path, _coded_frames(150))
    pipeline = load_config(osp.join(CONFIGS, 'hmdb51.yaml'))[
        loader].dataset.pipeline
    transforms = [TRANSFORMS.build(t) for t in pipeline[:3]]
    np.random.seed(0)
    for _ in range(3):
        results = dict(filename=str(path), start_index=0, modality='RGB')
        for transform in transforms:
            results = transform(results)
        assert results['total_frames'] == 150
        assert len(results['frame_inds']) == len(results['imgs']) >= 32
        assert _frame_codes(results['imgs']) == list(results['frame_inds'])


def test_amp_is_the_bf16_wrapper_of_run_net(tiny_ucf101, tmp_path):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    run = dict(annotations=tiny_ucf101, frames=8, mode='fc-only',
               weights=EncoderWeights('weights.pth', 0.25),
               work_dir=str(tmp_path / 'split_1'))
    config = osp.join(CONFIGS, 'ucf101.yaml')
    assert benchmark_config(config, [], **run).optim_wrapper.get(
        'type', 'OptimWrapper') == 'OptimWrapper'
    cfg = benchmark_config(config, [], amp=True, **run)
    assert cfg.optim_wrapper.type == 'xdc.Bf16OptimWrapper'
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        wrapper = build_optim_wrapper(torch.nn.Linear(2, 2),
                                      cfg.optim_wrapper)
    assert type(wrapper).__name__ == 'Bf16OptimWrapper'
