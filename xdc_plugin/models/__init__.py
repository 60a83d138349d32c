from xdc_plugin.models.video_resnet import (  # noqa: F401
    XDC_MEAN, XDC_STD, R2Plus1D18)
from xdc_plugin.models.audio_resnet import AudioResNet18  # noqa: F401
from xdc_plugin.models.heads import LinearHead  # noqa: F401
from xdc_plugin.models.data_preprocessor import (  # noqa: F401
    AVDataPreprocessor)
from xdc_plugin.models.xdc_model import XDCModel  # noqa: F401
from xdc_plugin.models import backbone, pretrained  # noqa: F401
