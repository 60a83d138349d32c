"""Official-layout checks of R2Plus1D18 (the release's
``model/r2plus1d_18.py``)."""
import pytest
import torch
from torch import nn
from torchvision.models.video import r2plus1d_18

from xdc_plugin.encoders import R2Plus1D18

# (conv1 mid, conv2 mid) per block: (in*out*27) // (in*9 + 3*out).
MID_WIDTHS = {
    'layer1.0': (144, 144), 'layer1.1': (144, 144),
    'layer2.0': (230, 288), 'layer2.1': (288, 288),
    'layer3.0': (460, 576), 'layer3.1': (576, 576),
    'layer4.0': (921, 1152), 'layer4.1': (1152, 1152),
}


@pytest.fixture(scope='module')
def model400():
    torch.manual_seed(0)
    return R2Plus1D18(num_classes=400).eval()


def _num_params(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_without_fc():
    model = R2Plus1D18()
    assert model.fc is None
    assert model.feat_dim == 512
    assert _num_params(model) == 33_165_639


def test_parameter_count_with_fc(model400):
    assert _num_params(model400) == 33_165_639 + 512 * 400 + 400


def test_mid_widths(model400):
    sd = model400.state_dict()
    assert tuple(sd['layer2.0.conv2.0.0.weight'].shape) == (288, 128, 1, 3, 3)
    for block, (mid1, mid2) in MID_WIDTHS.items():
        assert sd[f'{block}.conv1.0.0.weight'].shape[0] == mid1, block
        assert sd[f'{block}.conv2.0.0.weight'].shape[0] == mid2, block
        assert sd[f'{block}.conv1.0.3.weight'].shape[1] == mid1, block
        assert sd[f'{block}.conv2.0.3.weight'].shape[1] == mid2, block


def test_keys_match_torchvision_and_shapes_differ_where_expected(model400):
    ours = model400.state_dict()
    tv = r2plus1d_18().state_dict()
    assert set(ours) == set(tv)
    differing = {k for k in ours if ours[k].shape != tv[k].shape}
    # Only the conv2 of each stage's first downsampling block: torchvision
    # reuses conv1's middle width (230/460/921), XDC recomputes it.
    expected = set()
    for layer in (2, 3, 4):
        p = f'layer{layer}.0.conv2.0'
        expected |= {f'{p}.0.weight', f'{p}.3.weight', f'{p}.1.weight',
                     f'{p}.1.bias', f'{p}.1.running_mean',
                     f'{p}.1.running_var'}
    assert differing == expected


def test_bn_eps(model400):
    bns = [m for m in model400.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and all(m.eps == 1e-3 for m in bns)
    assert all(m.momentum == 0.1 for m in bns)


def test_forward_full_width(model400):
    x = torch.randn(2, 3, 8, 112, 112)
    torch.manual_seed(0)
    no_fc = R2Plus1D18().eval()
    with torch.no_grad():
        assert no_fc(x).shape == (2, 512)
        assert model400(x).shape == (2, 400)


def test_forward_quarter_width():
    model = R2Plus1D18(width=0.25)
    assert model.feat_dim == 128
    out = model(torch.randn(2, 3, 8, 64, 64))
    assert out.shape == (2, 128)
    out.sum().backward()
    assert model.stem[0].weight.grad is not None
