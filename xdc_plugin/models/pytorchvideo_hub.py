"""pytorchvideo's hub models without their head, as backbones.

``PytorchVideoHub(model='x3d_xs', **kwargs)`` calls
``pytorchvideo.models.hub.<model>(pretrained=False, **kwargs)`` (nothing is
downloaded) and keeps the model's ``blocks`` but the last, its head: the
output is the last stage's feature map ``(B, C, T, H, W)``. Its keys are the
hub model's (``blocks.<i>.*``), so its weights load into the hub model with
only the head missing. Wrap it in ``HostBackbone`` to train it with XDC::

    video_encoder=dict(type='HostBackbone', input_shape=[3, 8, 112, 112],
                       backbone=dict(type='PytorchVideoHub', model='x3d_xs'))

Single-pathway models whose last block is the head: ``x3d_xs/s/m/l``,
``slow_r50``, ``c2d_r50``, ``i3d_r50``, ``r2plus1d_r50``, ``csn_r101``.
"""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import nn

from xdc_plugin.registry import MODELS


@MODELS.register_module()
class PytorchVideoHub(BaseModule):
    """A pytorchvideo hub model but its head (module docstring).

    Args:
        model: name of a builder in ``pytorchvideo.models.hub``.
        init_cfg: mmengine's (``Pretrained``: a file with this layout).
        **kwargs: the builder's model settings (``pytorchvideo/models/
            x3d.py``, ``resnet.py``, ...), e.g. ``width_factor`` of X3D.
    """

    def __init__(self, model: str, init_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(init_cfg=init_cfg)
        from pytorchvideo.models import hub
        from pytorchvideo.models.net import MultiPathWayWithFuse, Net
        builder = getattr(hub, model, None) if isinstance(model, str) and \
            not model.startswith('_') else None
        if not callable(builder):
            raise ValueError(f'PytorchVideoHub: no hub model {model!r} in '
                             'pytorchvideo.models.hub')
        if 'pretrained' in kwargs:
            raise ValueError(
                'PytorchVideoHub builds with pretrained=False (no download); '
                'initialise from a file with init_cfg=dict(type='
                "'Pretrained', checkpoint=...)")
        net = builder(pretrained=False, **kwargs)
        if not isinstance(net, Net):
            raise ValueError(
                f'PytorchVideoHub: {model} builds a {type(net).__name__}, '
                'not a pytorchvideo Net whose last block is the head')
        if any(isinstance(b, MultiPathWayWithFuse) for b in net.blocks):
            raise ValueError(
                f'PytorchVideoHub: {model} takes a list of pathways; only '
                'single-pathway models take (B, 3, T, H, W) clips')
        self.model = model
        self.blocks = nn.ModuleList(list(net.blocks)[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
