from xdc_plugin.models.video_resnet import R2Plus1D18, XDC_MEAN, XDC_STD  # noqa: F401
