import pytest
import torch
import torchvision
from torch import nn

from xdc_plugin.encoders import AudioResNet18


def _num_params(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_width1():
    model = AudioResNet18()
    # torchvision resnet18 = 11,689,512; minus fc (512*1000 + 1000) gives
    # 11,176,512; minus its 7x7 RGB stem conv (3*64*7*7 = 9,408) plus our
    # 3x3 one-channel stem conv (1*64*3*3 = 576) gives 11,167,680.
    tv = torchvision.models.resnet18()
    expected = (_num_params(tv) - _num_params(tv.fc)
                - tv.conv1.weight.numel() + 1 * 64 * 3 * 3)
    assert expected == 11_167_680
    assert _num_params(model) == expected
    assert model.feat_dim == 512
    # Same key names as torchvision's resnet18 without the fc.
    assert set(model.state_dict()) == (set(tv.state_dict())
                                       - {'fc.weight', 'fc.bias'})


def test_stem_has_no_pool_and_bn_settings():
    model = AudioResNet18()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.eps == 1e-3 and m.momentum == 0.1 for m in bns)


def test_output_shape_and_gradient():
    model = AudioResNet18(width=0.25)
    x = torch.randn(2, 1, 40, 200, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 128) == (2, model.feat_dim)
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())


def test_width_one_forward_and_layer4_resolution():
    model = AudioResNet18().eval()
    seen = {}

    def record(module, inputs, output):
        seen['layer4'] = tuple(output.shape)

    model.layer4.register_forward_hook(record)
    with torch.no_grad():
        out = model(torch.randn(2, 1, 40, 200))
    assert out.shape == (2, 512)
    assert seen['layer4'] == (2, 512, 5, 25)


def test_bad_input_rank():
    model = AudioResNet18(width=0.125)
    with pytest.raises(ValueError, match='expects'):
        model(torch.randn(2, 40, 200))
