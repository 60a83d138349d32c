"""The torch-only encoders and the pseudo-label head in the xdc registry."""
import torch
from torch import nn

from xdc_plugin.encoders import AudioResNet18, R2Plus1D18, init_classifier
from xdc_plugin.models import LinearHead
from xdc_plugin.registry import MODELS


def test_encoders_registered_under_their_class_names():
    assert MODELS.get('R2Plus1D18') is R2Plus1D18
    assert MODELS.get('AudioResNet18') is AudioResNet18
    video = MODELS.build(dict(type='R2Plus1D18', width=0.125))
    audio = MODELS.build(dict(type='AudioResNet18', width=0.125))
    assert (video.feat_dim, audio.feat_dim) == (64, 64)


def test_head_uses_the_shared_classifier_init():
    torch.manual_seed(0)
    head = LinearHead(16, 5)
    torch.manual_seed(0)
    expected = nn.Linear(16, 5)
    init_classifier(expected)
    assert torch.equal(head.fc.weight, expected.weight)
    with torch.no_grad():
        head.fc.weight.zero_()
    torch.manual_seed(1)
    head.reset_parameters()
    torch.manual_seed(1)
    init_classifier(expected)
    assert torch.equal(head.fc.weight, expected.weight)
    assert torch.all(head.fc.bias == 0)
