"""torch.hub entry points of xdc_plugin.

    model = torch.hub.load('<path to this repo>', 'xdc_video_encoder',
                           source='local',
                           pretraining='r2plus1d_18_xdc_ig65m_kinetics',
                           num_classes=101)

``weights=<local .pth>`` loads a local file (e.g. one written by
``tools/export_encoder.py``) instead of the release. The package itself
(mmengine included) must be importable; ``torch.hub`` puts this folder first
on ``sys.path`` while it imports this file, so ``xdc_plugin`` is the one of
this checkout unless another copy was imported earlier in the process.
"""
import os.path as _osp
import sys as _sys

dependencies = ['torch', 'torchvision']

_HERE = _osp.dirname(_osp.abspath(__file__))
if _HERE not in _sys.path:  # imported directly rather than via torch.hub
    _sys.path.insert(0, _HERE)

from xdc_plugin.models.pretrained import xdc_video_encoder  # noqa: E402,F401
