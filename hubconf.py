"""torch.hub entry points of xdc_plugin (torch and torchvision only).

    model = torch.hub.load('<path to this repo>', 'xdc_video_encoder',
                           source='local',
                           pretraining='r2plus1d_18_xdc_ig65m_kinetics',
                           num_classes=101)

``weights=<local .pth>`` loads a local file (e.g. one written by
``tools/export_encoder.py``) instead of the release. Only
``xdc_plugin.weights`` is imported, which needs neither mmengine nor the
data libraries. ``torch.hub`` puts this folder first on ``sys.path`` while
it imports this file, so ``xdc_plugin`` is the one of this checkout unless
another copy was imported earlier in the process.
"""
from xdc_plugin.weights import xdc_video_encoder  # noqa: F401

dependencies = ['torch', 'torchvision']
