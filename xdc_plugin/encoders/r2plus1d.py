"""R(2+1)D-18 video encoder with the layout of the official XDC release.

The released weights (github.com/HumamAlwassel/XDC, ``model/r2plus1d_18.py``)
use torchvision's ``VideoResNet`` key names but differ from torchvision's
``r2plus1d_18`` in one place: every (2+1)D convolution recomputes its middle
width from its own input and output widths, as Caffe2/VMZ did. BatchNorm eps
is 1e-3. Without the fc the network has 33,165,639 parameters.

``width`` scales every channel count (stem included) so that tests and the
CPU demo can train a small network with exactly the same structure.
"""
import functools

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock

from xdc_plugin.encoders.resnet import (STAGE_WIDTHS, init_resnet,
                                        resnet_stages, scaled)

# Normalisation of the released models: RGB in [0, 1], then these (issue #2
# of the official repo; VMZ's 0-255 values divided by 255).
XDC_MEAN = (0.43216, 0.394666, 0.37645)
XDC_STD = (0.22803, 0.22145, 0.216989)


class Conv2Plus1D(nn.Sequential):
    """Spatial (1x3x3) then temporal (3x1x1) convolution.

    ``midplanes`` passed by torchvision's ``BasicBlock`` is ignored: the
    middle width is ``(in*out*27) // (in*9 + 3*out)`` for every convolution.
    """

    def __init__(self, in_planes, out_planes, midplanes=None, stride=1,
                 padding=1):
        midplanes = ((in_planes * out_planes * 27) //
                     (in_planes * 9 + 3 * out_planes))
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3),
                      stride=(1, stride, stride),
                      padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1),
                      stride=(stride, 1, 1), padding=(padding, 0, 0),
                      bias=False))


class R2Plus1D18(nn.Module):
    """R(2+1)D-18 on ``(B, 3, T, H, W)`` clips, normalised with
    ``XDC_MEAN``/``XDC_STD``.

    Args:
        num_classes: size of the fc; 0 gives no fc and ``forward`` returns
            the pooled features (``feat_dim`` wide).
        width: channel multiplier (1.0 is the official model).
        bn_eps: BatchNorm eps (1e-3 in the release).
        bn_momentum: PyTorch BatchNorm momentum. The release sets 0.9 to
            mimic Caffe2; 0.9 in PyTorch means the running statistics follow
            the last batch almost entirely, so we default to PyTorch's 0.1.
    """

    def __init__(self, num_classes=0, width=1.0, bn_eps=1e-3,
                 bn_momentum=0.1, dropout=0.0):
        super().__init__()
        widths = [scaled(c, width) for c in STAGE_WIDTHS]
        stem_mid = scaled(45, width)
        self.stem = nn.Sequential(
            nn.Conv3d(3, stem_mid, kernel_size=(1, 7, 7), stride=(1, 2, 2),
                      padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(stem_mid, widths[0], kernel_size=(3, 1, 1),
                      stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=True))
        # The projection shortcuts' int stride downsamples time as well as
        # space, as in the release.
        (self.layer1, self.layer2, self.layer3,
         self.layer4) = resnet_stages(
            functools.partial(BasicBlock, conv_builder=Conv2Plus1D),
            nn.Conv3d, nn.BatchNorm3d, widths[0], widths)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.feat_dim = widths[3]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = (nn.Linear(self.feat_dim, num_classes)
                   if num_classes else None)
        init_resnet(self, bn_eps, bn_momentum)

    def forward_features(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        x = self.forward_features(x)
        if self.fc is None:
            return x
        return self.fc(self.dropout(x))
