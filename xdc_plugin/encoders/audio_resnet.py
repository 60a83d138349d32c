"""2D ResNet-18 audio encoder over log-mel spectrograms.

**The paper's exact audio network is unverified.** XDC says only
"ResNet-18 with MelSpectrograms as the input". The closest primary source,
VMZ's ``create_acoustic_resnet`` (same authors' codebase), uses a 16-channel
3x3 stem, extra 16->32 blocks, stride-2 stages and a final (4, 2) max-pool;
whether XDC used that network or a torchvision-style 2D ResNet-18 on a
one-channel spectrogram is not known.
What follows is our choice, documented so that it can be swapped when the
paper's supplement is checked.

Our choices:

* **Blocks.** torchvision's 2D ``BasicBlock`` (two 3x3 convs, identity or
  1x1-projection shortcut), stages ``[2, 2, 2, 2]`` with widths
  64/128/256/512 times ``width``; stages 2-4 start at stride 2, as in
  torchvision's ``resnet18``. Key names follow torchvision's ``resnet18``
  (``conv1``, ``bn1``, ``layerL.B.*``) so torchvision tooling applies.
* **Stem.** A 3x3 stride-1 conv (+BN+ReLU), and **no max-pool**. The input is
  only ``n_mels=40`` bins high. With the ImageNet stem (7x7 stride 2, then a
  stride-2 max-pool) a 40x200 spectrogram is already 10x50 entering layer1
  and only 3x13 entering layer4 (2x7 out of it); for the 40x100 crop of
  VMZ/the paper it is 3x7 entering layer4. Our stem keeps full resolution
  into layer1 and gives 5x25 (40x200 input) or 5x13 (40x100) out of layer4.
  The price is compute: layer1 runs at full input resolution.
* **Pooling.** Global average pooling to ``feat_dim = 512 * width``
  (VMZ max-pools; averaging matches our video encoder and any input size).
* **BatchNorm.** eps 1e-3 as in the XDC/VMZ video model, PyTorch momentum
  0.1 (see ``R2Plus1D18`` on why not the release's 0.9).
* **Init.** Kaiming-normal (fan_out) convs, BN weight 1 / bias 0, like
  torchvision.

Input: ``(B, in_channels, n_mels, n_frames)``, e.g. ``(B, 1, 40, 200)`` for
2 s at a 10 ms hop (any size works). ``forward`` returns ``(B, feat_dim)``.
At width 1 the network has 11,167,680 parameters (torchvision ``resnet18``
without its fc, 11,176,512, minus its 3x64x7x7 stem conv, plus our 1x64x3x3
one).
"""
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from xdc_plugin.encoders.resnet import (STAGE_WIDTHS, init_resnet,
                                        resnet_stages, scaled)


class AudioResNet18(nn.Module):
    """2D ResNet-18 on log-mel spectrograms (see the module docstring).

    Args:
        width: channel multiplier (1.0: 64/128/256/512).
        in_channels: spectrogram channels (1 for mono log-mel).
        bn_eps: BatchNorm eps.
        bn_momentum: PyTorch BatchNorm momentum.
    """

    def __init__(self, width=1.0, in_channels=1, bn_eps=1e-3,
                 bn_momentum=0.1):
        super().__init__()
        widths = [scaled(c, width) for c in STAGE_WIDTHS]
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3,
                               stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        (self.layer1, self.layer2, self.layer3,
         self.layer4) = resnet_stages(BasicBlock, nn.Conv2d, nn.BatchNorm2d,
                                      widths[0], widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feat_dim = widths[3]
        self.in_channels = in_channels
        init_resnet(self, bn_eps, bn_momentum)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'AudioResNet18 expects (B, {self.in_channels}, n_mels, '
                f'n_frames), got {tuple(x.shape)}')
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)
