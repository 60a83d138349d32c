"""Any backbone of the host registries as an XDC encoder, by config.

``HostBackbone`` builds a backbone from its config in the registry that its
type names (``mmaction.X3D``, ``mmaction.ResNetAudio``, ``PytorchVideoHub``
of ours, ...), feeds it the clips (``(B, 3, T, H, W)``) or spectrograms
(``(B, 1, F, T)``) and pools what it returns to ``(B, feat_dim)``, which
is all ``XDCModel`` asks of an encoder::

    video_encoder=dict(type='HostBackbone', input_shape=[3, 8, 112, 112],
                       backbone=dict(type='mmaction.X3D', gamma_w=1,
                                     gamma_b=2.25, gamma_d=2.2))

Its weights keep the host's own key layout: ``state_dict()`` holds the
backbone's keys as the host names them (no ``backbone.`` level) and
``load_state_dict`` takes them so. A training checkpoint thus holds
``video_encoder.<host key>``, and ``tools/export_encoder.py`` writes the
backbone's own state dict, which the host loads, every key, into a
backbone built from the same config (mmengine's ``load_checkpoint``, the
backbone's ``pretrained=`` or ``init_cfg``: see the project page). Its
parameters are still named ``backbone.<key>`` (as optimizer
``paramwise_cfg`` keys see them).

The backbone is initialised by its own ``init_weights`` when the model's
is called (mmengine's Runner does it before training), as in the host's
recognizers; ``xdc_plugin.evaluation`` does the same for ``random``.
"""
import copy
import inspect
from typing import Optional, Sequence, Set, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import nn
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from xdc_plugin.registry import MODELS, SCOPE

OUTPUTS = ('last', 'concat')
# Backbones that take one clip size only, the size their position or time
# embeddings were built for: class name -> (what sets it, its (T, H, W)).
FIXED_CLIP_SIZE = {
    'TimeSformer': ('num_frames and img_size',
                    lambda m: (m.num_frames, *m.patch_embed.img_size)),
}
_BACKBONE = 'backbone.'


def _scope_and_name(type_name: str) -> Tuple[str, str]:
    """``('mmaction', 'X3D')`` of ``'mmaction.X3D'``; our scope for an
    unscoped name."""
    scope, _, name = type_name.rpartition('.')
    return scope or SCOPE, name


def build_host_backbone(cfg: dict) -> nn.Module:
    """The backbone of ``cfg`` built with its registry's scope as the
    default one, so that what it builds by name inside (mmaction2's
    ``Conv2plus1d``, ``ConvAudio``, TimeSformer's attention layers) is found
    in that registry too."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get('type'), str):
        raise TypeError('HostBackbone: backbone must be a config dict with a '
                        "type string such as 'mmaction.X3D', got "
                        f'{cfg!r}')
    with DefaultScope.overwrite_default_scope(
            _scope_and_name(cfg['type'])[0]):
        return MMENGINE_MODELS.build(dict(cfg))


def host_class(cfg: dict) -> type:
    """The class that ``cfg``'s type names, from its registry."""
    with DefaultScope.overwrite_default_scope(
            _scope_and_name(cfg['type'])[0]):
        with MMENGINE_MODELS.switch_scope_and_registry(None) as registry:
            return registry.get(cfg['type'])


def backbone_arguments(cfg: dict) -> Set[str]:
    """Names of the arguments the class of ``cfg`` takes, through the
    ``**kwargs`` that subclasses pass on (``ResNet3dSlowOnly`` to
    ``ResNet3d``)."""
    names = set()
    for klass in host_class(cfg).__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def recognizer_backbone_cfg(cfg: dict) -> dict:
    """``cfg`` as the backbone of a host recognizer, whose registry scope
    is not ours: its type named with its scope (``xdc.PytorchVideoHub``,
    ``mmaction.X3D``)."""
    return dict(cfg, type='.'.join(_scope_and_name(cfg['type'])))


def pool_output(out: Union[torch.Tensor, Sequence[torch.Tensor]],
                output: str = 'last') -> torch.Tensor:
    """``(B, C)`` features of what a backbone returns: a map ``(B, C, ...)``
    averaged over every axis after C, a ``(B, C)`` vector as it is. Of a
    tuple or list, ``'last'`` takes the last item (mmaction2's multi-stage
    outputs: the deepest stage; MViT's ``[patch tokens, class token]``: the
    class token, as ``MViTHead`` does) and ``'concat'`` pools every item and
    concatenates them (SlowFast's pathways, as ``SlowFastHead`` does)."""
    if isinstance(out, (tuple, list)):
        if output == 'concat':
            return torch.cat([pool_output(o) for o in out], dim=1)
        return pool_output(out[-1])
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise TypeError('the backbone returned '
                        f'{type(out).__name__} {getattr(out, "shape", "")}; '
                        'HostBackbone pools (B, C, ...) tensors')
    return out.flatten(2).mean(2) if out.dim() > 2 else out


@MODELS.register_module()
class HostBackbone(BaseModule):
    """A host backbone, pooled to ``(B, feat_dim)`` (module docstring).

    Args:
        backbone: config of the backbone, its type with the host's scope
            (``mmaction.<name>``) or one of ours (``PytorchVideoHub``).
        input_shape: one input's shape, ``[3, T, H, W]`` (video) or
            ``[1, F, T]`` (audio), as the pipeline makes it. A forward at
            this size on a meta-device copy (no compute, no memory) finds
            ``feat_dim`` and checks that the backbone takes such inputs.
        feat_dim: the pooled width, if known (checked against the dry
            forward when ``input_shape`` is given too).
        output: how a tuple output is pooled, ``'last'`` or ``'concat'``
            (see :func:`pool_output`).
        init_cfg: mmengine's; ``dict(type='Pretrained', checkpoint=F)``
            loads a file in the host's layout (an export of ours, or
            ``prefix='backbone.'`` for an mmaction2 recognizer checkpoint).
    """

    def __init__(self, backbone: dict,
                 input_shape: Optional[Sequence[int]] = None,
                 feat_dim: Optional[int] = None, output: str = 'last',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if output not in OUTPUTS:
            raise ValueError(f'HostBackbone: output must be one of {OUTPUTS}, '
                             f'got {output!r}')
        if input_shape is None and feat_dim is None:
            raise ValueError(
                'HostBackbone needs input_shape (one clip, e.g. [3, 8, 112, '
                '112], or spectrogram, e.g. [1, 40, 201], as the pipeline '
                'makes it) to find feat_dim, or feat_dim itself')
        try:
            self.backbone = build_host_backbone(backbone)
        except (AssertionError, ValueError) as exc:  # mmaction2 asserts
            raise ValueError(f'HostBackbone: {backbone["type"]} could not be '
                             f'built from {backbone}: {exc}') from exc
        self.backbone_cfg = dict(backbone)
        self.name = backbone['type']
        self.output = output
        self.input_shape = (tuple(int(s) for s in input_shape)
                            if input_shape is not None else None)
        if self.input_shape is not None:
            found = self._dry_forward_dim()
            if feat_dim is not None and feat_dim != found:
                raise ValueError(f'HostBackbone: feat_dim={feat_dim} but '
                                 f'{self.name} gives {found} features')
            feat_dim = found
        self.feat_dim = int(feat_dim)
        self.register_state_dict_post_hook(_drop_backbone_level)
        self.register_load_state_dict_pre_hook(_add_backbone_level)

    def _check_input(self, shape):
        """A clear error for an input the backbone cannot take."""
        if self.input_shape is not None and (
                len(shape) != len(self.input_shape) or
                shape[0] != self.input_shape[0]):
            raise ValueError(
                f'HostBackbone({self.name}) was configured for inputs '
                f'{list(self.input_shape)} (B first), got '
                f'{list(shape)}')
        fixed = FIXED_CLIP_SIZE.get(type(self.backbone).__name__)
        if fixed is not None:
            setting, size_of = fixed
            size = tuple(size_of(self.backbone))
            if tuple(shape[1:]) != size:
                raise ValueError(
                    f'{self.name} takes clips of exactly {size[0]} frames of '
                    f'{size[1]}x{size[2]} (its {setting}: its embeddings '
                    f'have that size), got {list(shape)}; set them to the '
                    "pipeline's clip (SampleClip.num_frames, VideoCrop.size)"
                    ' or crop to them')

    def _dry_forward_dim(self):
        self._check_input(self.input_shape)
        meta = copy.deepcopy(self.backbone).to('meta')
        meta.eval()
        try:
            with torch.no_grad():
                out = meta(torch.empty(1, *self.input_shape, device='meta'))
            return pool_output(out, self.output).shape[1]
        except Exception as exc:  # noqa: BLE001 - named with the input
            raise ValueError(
                f'HostBackbone: {self.name} fails on a '
                f'{[1, *self.input_shape]} input: {type(exc).__name__}: '
                f'{exc}. HostBackbone feeds (B, 3, T, H, W) clips, as '
                "mmaction2's Recognizer3D does, or (B, 1, F, T) spectrograms "
                '(Recognizer2D backbones take frames and are not '
                'supported)') from exc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(tuple(x.shape[1:]))
        return pool_output(self.backbone(x), self.output)


def _drop_backbone_level(module, state_dict, prefix, local_metadata):
    """``<prefix>backbone.<key>`` -> ``<prefix><key>`` (the host's layout)."""
    inner = prefix + _BACKBONE
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)


def _add_backbone_level(module, state_dict, prefix, local_metadata, strict,
                        missing_keys, unexpected_keys, error_msgs):
    """The reverse of :func:`_drop_backbone_level`, in place, before the
    backbone loads its part of ``state_dict``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[prefix + _BACKBONE + key[len(prefix):]] = \
            state_dict.pop(key)

