"""What the video and the audio ResNet share: widths and initialisation."""
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

STAGE_WIDTHS = (64, 128, 256, 512)


def scaled(channels, width):
    """``channels * width`` rounded, at least 1 (the width multiplier)."""
    return max(1, int(round(channels * width)))


def init_resnet(module, bn_eps, bn_momentum):
    """torchvision's ResNet initialisation (Kaiming fan-out convolutions,
    unit BatchNorm, fc N(0, 0.01)) and the given BatchNorm eps/momentum."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                    nonlinearity='relu')
        elif isinstance(m, _BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.eps, m.momentum = bn_eps, bn_momentum
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
