"""What the video and the audio ResNet share: widths, the stage builder and
the initialisation (also used by the pseudo-label heads and the weights
package for every fresh classifier)."""
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def scaled(channels, width):
    """``channels * width`` rounded, at least 1 (the width multiplier)."""
    return max(1, int(round(channels * width)))


def resnet_stages(block, conv, norm, in_planes, widths, num_blocks=2):
    """The four stages ``layer1..layer4`` of a ResNet-18 as a list.

    Each stage is ``num_blocks`` residual blocks; the first one strides as
    ``STAGE_STRIDES`` says and gets a 1x1 ``conv`` + ``norm`` projection
    shortcut when its input and output shapes differ. ``block`` is called
    as torchvision's blocks are, ``block(in_planes, planes, stride=,
    downsample=)``.
    """
    stages = []
    for planes, stride in zip(widths, STAGE_STRIDES):
        downsample = None
        if stride != 1 or in_planes != planes:
            downsample = nn.Sequential(
                conv(in_planes, planes, kernel_size=1, stride=stride,
                     bias=False),
                norm(planes))
        blocks = [block(in_planes, planes, stride=stride,
                        downsample=downsample)]
        blocks += [block(planes, planes, stride=1, downsample=None)
                   for _ in range(num_blocks - 1)]
        stages.append(nn.Sequential(*blocks))
        in_planes = planes
    return stages


def init_classifier(linear):
    """A fresh classifier: weight ~ N(0, 0.01), bias 0."""
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)


def init_resnet(module, bn_eps, bn_momentum):
    """torchvision's ResNet initialisation (Kaiming fan-out convolutions,
    unit BatchNorm, classifiers by :func:`init_classifier`) and the given
    BatchNorm eps/momentum."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                    nonlinearity='relu')
        elif isinstance(m, _BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.eps, m.momentum = bn_eps, bn_momentum
        elif isinstance(m, nn.Linear):
            init_classifier(m)
