from xdc_plugin.models.video_resnet import R2Plus1D18, XDC_MEAN, XDC_STD  # noqa: F401
from xdc_plugin.models.audio_resnet import AudioResNet18  # noqa: F401
from xdc_plugin.models.heads import LinearHead  # noqa: F401
from xdc_plugin.models.data_preprocessor import AVDataPreprocessor  # noqa: F401
from xdc_plugin.models.xdc_model import XDCModel  # noqa: F401
from xdc_plugin.models import backbone, pretrained  # noqa: F401
