"""XDC's R(2+1)D-18 as an mmaction2 backbone.

``XDCBackbone`` returns the layer4 feature map ``(B, C, T', H', W')``, which
is what mmaction2 heads such as ``I3DHead`` pool and classify. Its state-dict
keys are exactly the official release's (no ``fc``), so ``init_cfg=dict(
type='Pretrained', checkpoint='xdc://<name>')`` loads the release with our
strict loader instead of mmengine's ``strict=False`` one (no ``xdc://``
scheme registration needed).
"""
from typing import List, Optional, Union

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from xdc_plugin.encoders import R2Plus1D18
from xdc_plugin.registry import MODELS
from xdc_plugin.weights import load_pretrained_weights


@MODELS.register_module()
class XDCBackbone(BaseModule):
    """R(2+1)D-18 without pooling and fc, for ``Recognizer3D``.

    In an mmaction2 config: ``backbone=dict(type='xdc.XDCBackbone', ...)``.

    Args:
        width: channel multiplier (1.0 for the released weights).
        bn_momentum: PyTorch BatchNorm momentum; 0.1 by default, 0.9
            reproduces the official model (see ``xdc_video_encoder``).
        bn_eps: BatchNorm eps (1e-3 in the release).
        frozen_stages: -1 trains everything; 0 freezes the stem, ``k``
            the stem and layer1..layerk (4: linear probing).
        norm_eval: keep BatchNorm layers in eval mode while training.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` where
            checkpoint is ``xdc://<name>``, a release name or a local
            ``.pth`` in the official layout, loaded strictly; any other
            mmengine init config is handled by mmengine.
    """

    def __init__(self, width: float = 1.0, bn_momentum: float = 0.1,
                 bn_eps: float = 1e-3, frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        encoder = R2Plus1D18(num_classes=0, width=width, bn_eps=bn_eps,
                             bn_momentum=bn_momentum)
        self.stem = encoder.stem
        self.layer1 = encoder.layer1
        self.layer2 = encoder.layer2
        self.layer3 = encoder.layer3
        self.layer4 = encoder.layer4
        self.feat_dim = encoder.feat_dim
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze_stages()

    def _stages(self) -> List[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def _freeze_stages(self):
        for stage in self._stages()[:self.frozen_stages + 1]:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        """mmengine initialisation, except that a ``Pretrained`` entry is
        loaded strictly by our loader (mmengine's uses ``strict=False``);
        it is applied last, as mmengine does."""
        cfgs = self.init_cfg
        cfgs = [] if not cfgs else [cfgs] if isinstance(cfgs, dict) else cfgs
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not pretrained:
            super().init_weights()
            return
        if len(pretrained) > 1 or pretrained[0].get('prefix'):
            raise ValueError(
                'XDCBackbone takes one Pretrained init_cfg without prefix '
                '(official-layout weights); use load_from for a whole '
                f'fine-tuned recognizer. Got {pretrained}.')
        others = [c for c in cfgs if c is not pretrained[0]]
        if others:
            original, self.init_cfg = self.init_cfg, others
            super().init_weights()
            self.init_cfg = original
        load_pretrained_weights(self, pretrained[0]['checkpoint'],
                                allow_missing=())
        self._is_init = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def train(self, mode: bool = True) -> 'XDCBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


__all__ = ['XDCBackbone']
