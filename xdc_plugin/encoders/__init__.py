"""The XDC encoders as plain ``torch.nn`` modules (torch and torchvision
only): R(2+1)D-18 in the official release's layout and the audio ResNet-18.
``xdc_plugin.models`` registers them for mmengine configs."""
from xdc_plugin.encoders.audio_resnet import AudioResNet18
from xdc_plugin.encoders.r2plus1d import (XDC_MEAN, XDC_STD, Conv2Plus1D,
                                          R2Plus1D18)
from xdc_plugin.encoders.resnet import init_classifier

__all__ = ['AudioResNet18', 'Conv2Plus1D', 'R2Plus1D18', 'XDC_MEAN',
           'XDC_STD', 'init_classifier']
