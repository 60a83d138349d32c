from xdc_plugin.encoders import (  # noqa: F401
    XDC_MEAN, XDC_STD, AudioResNet18, R2Plus1D18)
from xdc_plugin.models import torch_encoders  # noqa: F401  (registers)
from xdc_plugin.models.heads import LinearHead  # noqa: F401
from xdc_plugin.models.data_preprocessor import (  # noqa: F401
    AVDataPreprocessor)
from xdc_plugin.models.xdc_model import XDCModel  # noqa: F401
from xdc_plugin.models.backbone import XDCBackbone  # noqa: F401
from xdc_plugin.models.xdc_scheme import register_xdc_scheme  # noqa: F401
from xdc_plugin.models.host_backbone import HostBackbone  # noqa: F401
from xdc_plugin.models.pytorchvideo_hub import PytorchVideoHub  # noqa: F401
