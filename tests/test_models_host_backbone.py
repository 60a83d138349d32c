"""HostBackbone: mmaction2's and pytorchvideo's backbones as XDC encoders by
config, end to end. For each backbone: built through the wrapper from a
model config, a clustering round and a training step on tiny generated
clips, the export, and the host's recognizer with the same backbone config
loading the export (every key, nothing missing or unexpected) and giving
the same features. Tiny widths, depths and inputs keep each one fast."""
import os.path as osp
import runpy

import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from torch.utils.data import DataLoader

import xdc_plugin  # noqa: F401  (registers the modules)
from xdc_plugin.clustering.collectives import default_collectives
from xdc_plugin.engine.round.feature_extraction import extract_shard
from xdc_plugin.engine.round.round_clustering import cluster_shard
from xdc_plugin.models.host_backbone import (pool_output,
                                             recognizer_backbone_cfg)
from xdc_plugin.registry import DATASETS, MODELS

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXPORT = runpy.run_path(osp.join(REPO_DIR, 'tools', 'export_encoder.py'))[
    'export']
FRAMES, CROP, MELS = 8, 32, 40
VIDEO_SHAPE = [3, FRAMES, CROP, CROP]
AUDIO_SHAPE = [1, MELS, 51]  # 1 s at a 20 ms hop
NUM_CLASSES = 3
OURS = {'video': dict(type='R2Plus1D18', width=0.125),
        'audio': dict(type='AudioResNet18', width=0.125)}
I3D = dict(type='I3DHead')
# name -> (modality, backbone config, head of the host's recognizer, how
# the backbone class takes a file: its `pretrained` argument, `init_cfg`,
# or neither for a 3D file: TimeSformer's `pretrained` converts a 2D ViT,
# copying its space attention over the time attention)
BACKBONES = {
    'slowonly': ('video', dict(
        type='mmaction.ResNet3dSlowOnly', depth=18, pretrained=None,
        pretrained2d=False, base_channels=8, lateral=False,
        conv1_kernel=(1, 7, 7),
        inflate=(0, 0, 1, 1)), I3D, 'pretrained'),
    'x3d': ('video', dict(type='mmaction.X3D', gamma_w=0.5, gamma_b=1.0,
                          gamma_d=0.5), I3D, 'pretrained'),
    'csn': ('video', dict(
        type='mmaction.ResNet3dCSN', depth=50, pretrained=None,
        pretrained2d=False, base_channels=8, bottleneck_mode='ir'), I3D,
        'pretrained'),
    'r2plus1d': ('video', dict(
        type='mmaction.ResNet2Plus1d', depth=18, pretrained=None,
        pretrained2d=False, base_channels=8,
        conv_cfg=dict(type='Conv2plus1d'), conv1_kernel=(3, 7, 7),
        inflate=(1, 1, 1, 1), spatial_strides=(1, 2, 2, 2),
        temporal_strides=(1, 2, 2, 2)), I3D, 'pretrained'),
    'resnet_audio': ('audio', dict(
        type='mmaction.ResNetAudio', depth=50, pretrained=None,
        base_channels=8), dict(type='TSNAudioHead'), 'pretrained'),
    'pytorchvideo_x3d_xs': ('video', dict(
        type='PytorchVideoHub', model='x3d_xs', width_factor=0.5,
        depth_factor=0.5), I3D, 'init_cfg'),
    'timesformer': ('video', dict(
        type='mmaction.TimeSformer', num_frames=FRAMES, img_size=CROP,
        patch_size=16, embed_dims=32, num_heads=2,
        num_transformer_layers=1), dict(type='TimeSformerHead'), None),
    'swin3d': ('video', dict(
        type='mmaction.SwinTransformer3D', pretrained=None,
        pretrained2d=False, arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                      num_heads=[1, 1, 1, 1]),
        window_size=(4, 4, 4), drop_path_rate=0.0), I3D, 'pretrained'),
    'mvit': ('video', dict(
        type='mmaction.MViT', arch=dict(embed_dims=16, num_layers=2,
                                        num_heads=1, downscale_indices=[1]),
        spatial_size=CROP, temporal_size=FRAMES), dict(type='MViTHead'),
        'init_cfg'),
}


def xdc_cfg(modality, backbone):
    """An XDC model whose ``modality`` encoder is the host backbone."""
    encoders = dict(OURS)
    encoders[modality] = dict(
        type='HostBackbone', backbone=backbone,
        input_shape=VIDEO_SHAPE if modality == 'video' else AUDIO_SHAPE)
    return dict(type='XDCModel', num_clusters=NUM_CLASSES,
                video_encoder=encoders['video'],
                audio_encoder=encoders['audio'])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(loader, one batch of all its clips) of 9 generated clips."""
    dataset = DATASETS.build(dict(
        type='DemoAVDataset', data_root=str(tmp_path_factory.mktemp('demo')),
        generate=dict(num_classes=NUM_CLASSES, clips_per_class=3, seed=0,
                      progress=False),
        pipeline=[
            dict(type='SampleClip', num_frames=FRAMES, mode='center'),
            dict(type='DecodeAVClip', audio_duration=1.0),
            dict(type='VideoResize', short_side=CROP),
            dict(type='VideoCrop', size=CROP, random=False),
            dict(type='AudioLogMel', n_mels=MELS, hop_ms=20),
            dict(type='PackAVInputs')]))
    loader = DataLoader(dataset, batch_size=len(dataset),
                        collate_fn=default_collate)
    return loader, next(iter(loader))


def _recognizer(modality, backbone, head, feat_dim, how, path):
    """The host's recognizer on ``backbone``, loading the file ``path``
    through the backbone config ``how`` its class takes one."""
    from mmaction.registry import MODELS as MMACTION_MODELS
    kind = 'Recognizer3D' if modality == 'video' else 'RecognizerAudio'
    backbone = recognizer_backbone_cfg(backbone)
    if how == 'pretrained':
        backbone['pretrained'] = path
    elif how == 'init_cfg':
        backbone['init_cfg'] = dict(type='Pretrained', checkpoint=path)
    with DefaultScope.overwrite_default_scope('mmaction'):
        recognizer = MMACTION_MODELS.build(dict(
            type=kind, backbone=backbone,
            cls_head=dict(head, num_classes=5, in_channels=feat_dim)))
    recognizer.init_weights()
    return recognizer


@pytest.mark.parametrize('name', list(BACKBONES))
def test_trains_clusters_exports_and_loads_into_the_host_recognizer(
        name, tiny, tmp_path):
    modality, backbone, head, how = BACKBONES[name]
    loader, batch = tiny
    torch.manual_seed(0)
    model = MODELS.build(xdc_cfg(modality, backbone))
    model.init_weights()
    encoder = model.encoder(modality)

    # A clustering round as the hook runs it, then a training step.
    shard = extract_shard(model, loader)
    assert shard.features[modality].shape == (9, encoder.feat_dim)
    results = cluster_shard(shard, model.cluster_sources, dict(
        type='FaissKMeans', num_iters=10, num_redo=1), model.num_clusters,
        9, default_collectives(), with_distances=False)
    model.set_pseudo_labels({s: r.labels for s, r in results.items()})
    assert (model.pseudo_labels >= 0).all()
    optim_wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    first, weight = next(iter(encoder.backbone.named_parameters()))
    before = weight.detach().clone()
    losses = model.train_step(batch, optim_wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(weight, before), f'{first} did not move'

    # The export, in the host's layout, loaded by the host's recognizer.
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    path = EXPORT(str(checkpoint), str(tmp_path / 'out'))[modality]
    exported = torch.load(path, weights_only=True)
    assert set(exported) == set(encoder.backbone.state_dict())
    recognizer = _recognizer(modality, backbone, head, encoder.feat_dim,
                             how, path)
    loaded = recognizer.backbone.state_dict()
    if how is None:  # mmengine's loader, strict
        load_checkpoint(recognizer.backbone, path, strict=True)
        loaded = recognizer.backbone.state_dict()
    assert set(loaded) == set(exported)  # none missing, none unexpected
    for key, value in exported.items():
        assert torch.equal(loaded[key], value), key
    model.eval()
    recognizer.eval()
    x = model.data_preprocessor(batch, False)[modality][:2]
    with torch.no_grad():
        torch.testing.assert_close(
            pool_output(recognizer.backbone(x)), encoder(x))


def _host(name='x3d', **kwargs):
    return MODELS.build(dict(type='HostBackbone', backbone=BACKBONES[name][1],
                             **dict(dict(input_shape=VIDEO_SHAPE), **kwargs)))


def test_weights_are_in_the_host_layout_everywhere(tmp_path):
    torch.manual_seed(0)
    encoder = _host()
    own = encoder.backbone.state_dict()
    assert list(encoder.state_dict()) == list(own)
    assert all(name.startswith('backbone.')
               for name, _ in encoder.named_parameters())
    model = MODELS.build(xdc_cfg('video', BACKBONES['x3d'][1]))
    assert [k for k in model.state_dict() if k.startswith('video_encoder.')
            ] == ['video_encoder.' + k for k in own]

    torch.manual_seed(1)
    other = _host()
    other.load_state_dict(encoder.state_dict())  # strict
    for key, value in own.items():
        assert torch.equal(other.state_dict()[key], value), key
    with pytest.raises(RuntimeError, match='Unexpected key.*backbone'):
        other.load_state_dict({'backbone.' + k: v for k, v in own.items()})

    # mmengine's Pretrained init: our export as it is, or the backbone of a
    # host recognizer's checkpoint.
    exported = tmp_path / 'x3d.pth'
    torch.save(own, exported)
    recognizer = tmp_path / 'recognizer.pth'
    torch.save({'state_dict': {**{'backbone.' + k: v for k, v in own.items()},
                               'cls_head.fc_cls.weight': torch.zeros(5, 2)}},
               recognizer)
    for init_cfg in (dict(type='Pretrained', checkpoint=str(exported)),
                     dict(type='Pretrained', checkpoint=str(recognizer),
                          prefix='backbone.')):
        torch.manual_seed(2)
        loaded = _host(init_cfg=init_cfg)
        loaded.init_weights()
        for key, value in own.items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_pooling_of_each_output():
    fmap = torch.arange(2 * 3 * 8, dtype=torch.float).view(2, 3, 2, 4)
    assert torch.equal(pool_output(fmap), fmap.mean((2, 3)))
    vector = torch.randn(2, 5)
    assert pool_output(vector) is vector
    stages = (torch.randn(2, 3, 4, 4), fmap)  # multi-stage: the deepest
    assert torch.equal(pool_output(stages), fmap.mean((2, 3)))
    assert torch.equal(pool_output(stages, 'concat'), torch.cat(
        [stages[0].mean((2, 3)), fmap.mean((2, 3))], 1))  # pathways
    mvit = ([torch.randn(2, 5, 2, 3, 3), vector], )  # [patch, class token]
    assert pool_output(mvit) is vector
    with pytest.raises(TypeError, match='pools'):
        pool_output(torch.randn(2))


def test_feat_dim_given_or_found():
    assert _host().feat_dim == 128  # X3D at gamma_w 0.5
    encoder = _host(input_shape=None, feat_dim=128)  # no dry forward
    assert encoder(torch.randn(1, *VIDEO_SHAPE)).shape == (1, 128)
    with pytest.raises(ValueError, match='feat_dim=100 but mmaction.X3D '
                       'gives 128'):
        _host(feat_dim=100)
    with pytest.raises(ValueError, match='needs input_shape'):
        _host(input_shape=None)
    with pytest.raises(ValueError, match="output must be one of"):
        _host(output='avg')


def test_clear_errors_for_inputs_a_backbone_cannot_take():
    timesformer = BACKBONES['timesformer'][1]
    with pytest.raises(ValueError, match=r'TimeSformer takes clips of exactly '
                       r'8 frames of 32x32 \(its num_frames and img_size'):
        _host('timesformer', input_shape=[3, 8, 40, 40])
    encoder = _host('timesformer')
    with pytest.raises(ValueError, match='exactly 8 frames of 32x32.*'
                       r'\[3, 16, 32, 32\]'):
        encoder(torch.randn(1, 3, 16, 32, 32))
    with pytest.raises(ValueError, match='must be divisible by patch size'):
        MODELS.build(dict(type='HostBackbone', input_shape=VIDEO_SHAPE,
                          backbone=dict(timesformer, img_size=40)))
    with pytest.raises(ValueError, match=r'configured for inputs \[3, 8, 32, '
                       r'32\].*got \[1, 40, 51\]'):
        _host()(torch.randn(1, *AUDIO_SHAPE))
    with pytest.raises(ValueError, match='mmaction.ResNetTSM fails on a '
                       r'\[1, 3, 8, 32, 32\] input.*Recognizer2D'):
        MODELS.build(dict(type='HostBackbone', input_shape=VIDEO_SHAPE,
                          backbone=dict(type='mmaction.ResNetTSM', depth=18,
                                        pretrained=None)))
    with pytest.raises(KeyError, match='X3DD is not in the mmaction'):
        MODELS.build(dict(type='HostBackbone', input_shape=VIDEO_SHAPE,
                          backbone=dict(type='mmaction.X3DD')))


@pytest.mark.parametrize('model,kwargs,message', [
    ('x3d_xxl', {}, "no hub model 'x3d_xxl'"),
    ('x3d_xs', dict(pretrained=True), 'pretrained=False'),
    ('slowfast_r50', {}, 'list of pathways'),
    ('mvit_base_16x4', {}, 'MultiscaleVisionTransformers, not a '
     'pytorchvideo Net'),
])
def test_pytorchvideo_hub_refuses_what_it_cannot_wrap(model, kwargs,
                                                      message):
    with pytest.raises(ValueError, match=message):
        MODELS.build(dict(type='PytorchVideoHub', model=model, **kwargs))


def test_pytorchvideo_weights_load_into_the_hub_model_but_its_head():
    from pytorchvideo.models.hub import x3d_xs
    settings = {k: v for k, v in BACKBONES['pytorchvideo_x3d_xs'][1].items()
                if k not in ('type', 'model')}
    torch.manual_seed(0)
    encoder = _host('pytorchvideo_x3d_xs')
    hub = x3d_xs(pretrained=False, **settings)
    result = hub.load_state_dict(encoder.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        k.startswith(f'blocks.{len(hub.blocks) - 1}.')
        for k in result.missing_keys)
