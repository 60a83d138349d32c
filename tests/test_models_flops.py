"""forward_flops: FLOPs per clip counted on a meta copy of the model."""
import copy
import math

import pytest
import torch
from torch import nn

import xdc_plugin  # noqa: F401
from xdc_plugin.models.flops import (forward_flops, model_flops_utilisation,
                                     peak_bf16_tflops)
from xdc_plugin.registry import MODELS


def build(width, num_clusters=256):
    return MODELS.build(dict(
        type='XDCModel', num_clusters=num_clusters,
        video_encoder=dict(type='R2Plus1D18', width=width),
        audio_encoder=dict(type='AudioResNet18', width=width)))


def layer_arithmetic(module, inputs):
    """2 x multiply-adds of every conv and linear layer, from the output
    shapes seen by forward hooks (a count independent of torch's)."""
    total = []

    def hook(layer, _, out):
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            per_output = (layer.in_channels // layer.groups *
                          math.prod(layer.kernel_size))
        else:
            per_output = layer.in_features
        total.append(2 * out.numel() * per_output)

    module = copy.deepcopy(module).to('meta')
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            layer.register_forward_hook(hook)
    with torch.no_grad():
        module(*[torch.empty(s, device='meta') for s in inputs])
    return sum(total)


@pytest.mark.parametrize('width,video,audio', [
    (1.0, (3, 8, 112, 112), (1, 40, 100)),   # paper sizes, full width
    (0.25, (3, 4, 32, 48), (1, 40, 201)),
])
def test_counts_equal_layer_arithmetic(width, video, audio):
    model = build(width)
    counts = forward_flops(model, video, audio)
    assert counts['video'] == layer_arithmetic(model.video_encoder,
                                               [(1, *video)])
    assert counts['audio'] == layer_arithmetic(model.audio_encoder,
                                               [(1, *audio)])
    # two 512 -> 256 heads at full width
    assert counts['heads'] == 2 * 2 * model.feat_dims['video'] * 256
    assert counts['total'] == (counts['video'] + counts['audio'] +
                               counts['heads'])


def test_paper_size_video_dominates_and_model_is_untouched():
    model = build(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counts = forward_flops(model, (3, 8, 112, 112), (1, 40, 100))
    # R(2+1)D-18 at 8x112x112: about 41.5 GFLOPs; the 40x100 audio ResNet
    # about a tenth of that.
    assert 41e9 < counts['video'] < 42e9
    assert 4e9 < counts['audio'] < 5e9
    assert all(p.device.type == 'cpu' for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in
               model.state_dict().items())


def test_counts_scale_with_input():
    model = build(0.125)
    short = forward_flops(model, (3, 8, 32, 32), (1, 40, 48))
    long = forward_flops(model, (3, 16, 32, 32), (1, 40, 96))
    # every layer's output doubles when T (or the frames) doubles and no
    # stride rounds: 8 -> 8, 4, 2, 1 frames through the video stages, 48 ->
    # 48, 24, 12, 6 through the audio ones
    assert long['video'] == 2 * short['video']
    assert long['audio'] == 2 * short['audio']
    assert long['heads'] == short['heads']


# Host backbones (tiny) whose matmuls are not all layers: attention.
HOST_BACKBONES = [
    dict(type='mmaction.X3D', gamma_w=0.5, gamma_d=0.5),
    dict(type='mmaction.TimeSformer', num_frames=8, img_size=32,
         patch_size=16, embed_dims=32, num_heads=2, num_transformer_layers=1),
    dict(type='mmaction.SwinTransformer3D', pretrained=None,
         pretrained2d=False, arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                       num_heads=[1, 1, 1, 1]),
         window_size=(4, 4, 4), drop_path_rate=0.0),
    dict(type='mmaction.MViT', spatial_size=32, temporal_size=8,
         arch=dict(embed_dims=16, num_layers=2, num_heads=1,
                   downscale_indices=[1])),
]
# fvcore's counts (multiply-adds) of the ops torch's counter counts.
FVCORE_MATMULS = ('conv', 'linear', 'matmul', 'bmm', 'einsum')


@pytest.mark.parametrize('backbone', HOST_BACKBONES,
                         ids=lambda b: b['type'])
def test_host_backbone_counts_equal_fvcore(backbone):
    from fvcore.nn import FlopCountAnalysis
    video = (3, 8, 32, 32)
    model = MODELS.build(dict(
        type='XDCModel', num_clusters=4,
        video_encoder=dict(type='HostBackbone', backbone=backbone,
                           input_shape=video),
        audio_encoder=dict(type='AudioResNet18', width=0.125)))
    counts = forward_flops(model, video, (1, 40, 48))
    model.eval()
    analysis = FlopCountAnalysis(model.video_encoder, torch.zeros(1, *video))
    analysis.unsupported_ops_warnings(False)
    by_op = analysis.by_operator()
    assert set(by_op) - {'layer_norm', 'batch_norm'} <= set(FVCORE_MATMULS)
    assert counts['video'] == pytest.approx(
        2 * sum(by_op.get(op, 0) for op in FVCORE_MATMULS),
        abs=4)  # fvcore counts an einsum in floats


@pytest.mark.parametrize('name,peak', [
    ('NVIDIA H200', 989.5), ('NVIDIA H200 NVL', 835.5),
    ('NVIDIA GH200 480GB', 989.5), ('NVIDIA H100 80GB HBM3', 989.5),
    ('NVIDIA H100 PCIe', 756.5), ('NVIDIA A100-SXM4-80GB', 312.0),
    ('NVIDIA A10', 125.0), ('NVIDIA L40S', 362.0), ('NVIDIA L40', 181.0),
    ('NVIDIA L4', 121.0), ('Tesla T4', None), ('cpu', None)])
def test_peak_by_device_name(name, peak):
    assert peak_bf16_tflops(name) == peak


def test_mfu_arithmetic():
    # 40 GFLOP forward, x3 for the backward, 1000 clips/s on 989.5 TFLOP/s
    assert model_flops_utilisation(40e9, 1000.0, 989.5) == pytest.approx(
        120e12 / 989.5e12)
    assert model_flops_utilisation(40e9, 1000.0, None) is None
