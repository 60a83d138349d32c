"""The parts both encoders share: one stage builder, one initialisation."""
import torch
from torch import nn

from xdc_plugin.encoders import AudioResNet18, R2Plus1D18, init_classifier
from xdc_plugin.encoders.resnet import resnet_stages


def _shortcuts(model):
    return {name: module.downsample for name, module in model.named_modules()
            if hasattr(module, 'downsample')}


def test_both_encoders_get_the_same_stage_layout():
    video, audio = R2Plus1D18(width=0.25), AudioResNet18(width=0.25)
    video_shortcuts, audio_shortcuts = _shortcuts(video), _shortcuts(audio)
    assert list(video_shortcuts) == list(audio_shortcuts) == [
        f'layer{layer}.{block}' for layer in range(1, 5) for block in (0, 1)]
    # A projection only where a stage strides: layer2.0, layer3.0, layer4.0.
    projected = [name for name, shortcut in video_shortcuts.items()
                 if shortcut is not None]
    assert projected == ['layer2.0', 'layer3.0', 'layer4.0']
    assert projected == [name for name, shortcut in audio_shortcuts.items()
                         if shortcut is not None]
    # The video shortcut strides time too (2, 2, 2), as in the release.
    assert video.layer3[0].downsample[0].stride == (2, 2, 2)
    assert audio.layer3[0].downsample[0].stride == (2, 2)
    assert isinstance(video.layer3[0].downsample[1], nn.BatchNorm3d)
    assert isinstance(audio.layer3[0].downsample[1], nn.BatchNorm2d)


def test_stage_builder_projects_a_width_change_without_stride():
    from torchvision.models.resnet import BasicBlock
    stages = resnet_stages(BasicBlock, nn.Conv2d, nn.BatchNorm2d,
                           in_planes=8, widths=(16, 16, 32, 32),
                           num_blocks=3)
    assert [len(stage) for stage in stages] == [3, 3, 3, 3]
    assert stages[0][0].downsample[0].stride == (1, 1)  # 8 -> 16
    assert stages[0][1].downsample is None
    out = nn.Sequential(*stages)(torch.randn(1, 8, 16, 16))
    assert out.shape == (1, 32, 2, 2)


def test_classifier_init_is_normal_001_bias_0():
    torch.manual_seed(0)
    linear = nn.Linear(512, 400)
    init_classifier(linear)
    assert torch.all(linear.bias == 0)
    assert abs(linear.weight.std().item() - 0.01) < 5e-4
    assert abs(linear.weight.mean().item()) < 5e-4
    # The encoders' fc gets the same initialisation.
    fc = R2Plus1D18(width=0.125, num_classes=400).fc
    assert torch.all(fc.bias == 0)
    assert abs(fc.weight.std().item() - 0.01) < 2e-3
