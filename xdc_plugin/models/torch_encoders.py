"""The torch-only encoders in the ``xdc`` MODELS registry, under their class
names: ``type='R2Plus1D18'`` and ``type='AudioResNet18'``."""
from xdc_plugin.encoders import AudioResNet18, R2Plus1D18
from xdc_plugin.registry import MODELS

MODELS.register_module(module=R2Plus1D18)
MODELS.register_module(module=AudioResNet18)
