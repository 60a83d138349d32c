"""Frozen encoders from any ``ENCODER`` string.

``ENCODER`` is one of:

* ``random``: randomly initialised encoders built from the config
  (``cfg``; without one, the official widths), seeded: the baseline every
  table needs;
* a release name such as ``r2plus1d_18_xdc_ig65m_kinetics`` (or
  ``xdc://<name>``): the official video encoder (downloaded once into
  torch.hub's cache, hash-checked). The release has no audio encoder;
* an exported encoder file, ``<name>_video-<h8>.pth`` or
  ``<name>_audio-<h8>.pth`` (``tools/export_encoder.py``; the other file of
  the pair is found beside it), or any file in the official video layout;
* a training checkpoint (``work_dirs/x/epoch_48.pth``): its run's config (from
  ``cfg``, else the checkpoint's ``meta``, else the work dir) gives the
  architecture and the input settings. It is read with
  ``weights_only=True`` and the allow-list of ``engine/checkpoint.py``;
  ``trusted=True`` (``--trust-checkpoint``) allows a full unpickle of a
  checkpoint you made yourself.

:func:`load_encoders` returns an :class:`Encoders`: eval-mode modules, their
official-layout state dicts and the clip (:class:`ClipSpec`) to feed them.
"""
import dataclasses
import logging
import os
import os.path as osp
import re
from collections.abc import Mapping
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.encoders import AudioResNet18, R2Plus1D18
from xdc_plugin.engine.checkpoint import read_training_checkpoint
from xdc_plugin.evaluation.run_config import (as_config_dict, encoder_cfg,
                                              input_settings, run_config)
from xdc_plugin.registry import MODELS
from xdc_plugin.weights import (FC_KEYS, PRETRAINED_CFGS, XDC_SCHEME,
                                IncompatibleWeightsError,
                                load_official_state_dict,
                                load_pretrained_weights, read_weights_file,
                                split_training_state_dict)

MODALITIES = ('video', 'audio')
RANDOM = 'random'
# ``tools/export_encoder.py``'s names: <name>_<modality>-<sha256 prefix>.pth
_EXPORTED_NAME = re.compile(
    r'^(?P<stem>.+)_(?P<modality>video|audio)-[0-9a-f]{8,64}\.pth$')


@dataclasses.dataclass
class Encoders:
    """Frozen (eval-mode) encoders and what their input must be.

    ``modules`` maps each loaded modality to its module, which maps a batch
    of clips (``(B, 3, T, H, W)`` normalised video, ``(B, 1, n_mels, frames)``
    log-mel) to pooled ``(B, feat_dim)`` features. ``kind`` is ``'random'``,
    ``'release'``, ``'exported'`` or ``'checkpoint'``; ``name`` the ENCODER
    string as given (it goes into every result record).
    """
    modules: Dict[str, nn.Module]
    settings: ClipSpec
    name: str
    kind: str

    @property
    def modalities(self) -> Tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.modules)

    def state_dict(self, modality: str) -> Dict[str, torch.Tensor]:
        """The encoder's weights without any fc, in its host's layout: for
        our video encoder the official release layout (what ``XDCBackbone``
        and ``xdc_video_encoder(weights=...)`` load), for a
        ``HostBackbone`` its backbone's own (what the host loads)."""
        return {k: v for k, v in self.modules[modality].state_dict().items()
                if k not in FC_KEYS}


def _check_modality(modality: str) -> Tuple[str, ...]:
    if modality == 'both':
        return MODALITIES
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'video', 'audio' or 'both', got "
                         f'{modality!r}')
    return (modality,)


def _release_name(encoder: str) -> Optional[str]:
    name = encoder[len(XDC_SCHEME):] if encoder.startswith(
        XDC_SCHEME) else encoder
    return name if name in PRETRAINED_CFGS else None


# A key of our encoders' layouts, whose shape gives the encoder's width.
_WIDTH_KEY = {'video': 'stem.3.weight', 'audio': 'conv1.weight'}


def _build(cfg: Optional[dict], modality: str, state_dict=None) -> nn.Module:
    """The encoder of ``cfg`` (the model's ``<modality>_encoder``); without
    a config, ours at the width the weights have (1.0 without weights)."""
    if cfg is not None:
        return MODELS.build(cfg)
    if state_dict and _WIDTH_KEY[modality] not in state_dict:
        raise ValueError(
            f'these {modality} weights are not our encoder\'s (no '
            f'{_WIDTH_KEY[modality]}; first keys {list(state_dict)[:3]}):'
            ' pass the config of the run that trained them (--cfg), whose '
            f'model.{modality}_encoder builds their backbone')
    if modality == 'video':
        width = (state_dict[_WIDTH_KEY['video']].shape[0] / 64
                 if state_dict else 1)
        return R2Plus1D18(num_classes=0, width=width)
    conv = state_dict[_WIDTH_KEY['audio']] if state_dict else None
    return AudioResNet18(width=conv.shape[0] / 64 if conv is not None else 1,
                         in_channels=conv.shape[1] if conv is not None else 1)


def _is_flat_weights(path: str) -> bool:
    """True for a ``{key: tensor}`` file (official layout, exported); a
    training checkpoint is a dict with ``state_dict`` or, read with
    ``weights_only=True``, not readable at all."""
    try:
        data = torch.load(path, map_location='cpu', weights_only=True,
                          mmap=True)
    except Exception:  # noqa: BLE001 - an unpickling error of any kind
        return False
    return (isinstance(data, Mapping) and 'state_dict' not in data
            and all(isinstance(v, torch.Tensor) for v in data.values()))


def _exported_files(path: str) -> Dict[str, str]:
    """``{modality: path}`` of an exported pair (or a lone official-layout
    video file, whose name does not follow the export pattern)."""
    match = _EXPORTED_NAME.match(osp.basename(path))
    if match is None:
        return {'video': path}
    files = {match['modality']: path}
    other = 'audio' if match['modality'] == 'video' else 'video'
    folder = osp.dirname(path) or '.'
    pattern = re.compile(re.escape(match['stem']) + f'_{other}-'
                         r'[0-9a-f]{8,64}\.pth$')
    siblings = sorted(f for f in os.listdir(folder) if pattern.match(f))
    if len(siblings) > 1:
        raise ValueError(f'{folder} has several {other} encoders for '
                         f'{match["stem"]}: {siblings}')
    if siblings:
        files[other] = osp.join(folder, siblings[0])
    return files


def _missing_modality(encoder: str, kind: str, modality: str):
    hint = {'release': ' The official release ships only video encoders; '
                       'use --modality video.',
            'exported': ' tools/export_encoder.py writes it beside the video '
                        'file as <name>_audio-<hash>.pth.'}.get(kind, '')
    return ValueError(f'{encoder!r} ({kind}) has no {modality} encoder.'
                      + hint)


def _load_weights(modality, state_dict, cfg, source):
    module = _build(cfg, modality, state_dict)
    load_official_state_dict(module, state_dict,
                             allow_missing=FC_KEYS if modality == 'video'
                             else (), source=f'{source} ({modality})')
    return module


def load_encoders(encoder: str, modality: str = 'both', cfg=None,
                  trusted: bool = False, seed: int = 0,
                  offline: Optional[bool] = None) -> Encoders:
    """Frozen encoders of ``modality`` (``'video'``, ``'audio'``,
    ``'both'``) from ``encoder`` (see the module docstring).

    Args:
        cfg: a config path, ``Config`` or dict. For ``random``, exported
            files and releases it gives the architecture and/or the input
            settings; for a checkpoint it replaces the run's own config.
        trusted: allow a full unpickle of a training checkpoint.
        seed: of the random initialisation (``random`` only).
        offline: never download a release (default: ``XDC_OFFLINE``).
    """
    wanted = _check_modality(modality)
    encoder = str(encoder)
    cfg = as_config_dict(cfg) if cfg is not None else None
    release = _release_name(encoder)
    weights: Dict[str, Dict[str, torch.Tensor]] = {}
    if encoder == RANDOM:
        kind = 'random'
    elif release is not None:
        kind = 'release'
        if 'audio' in wanted:
            raise _missing_modality(encoder, kind, 'audio')
    elif not osp.isfile(encoder):
        raise FileNotFoundError(
            f'ENCODER {encoder!r} is not a file, a release name '
            f'({", ".join(sorted(PRETRAINED_CFGS))}) or {RANDOM!r}.')
    elif _is_flat_weights(encoder):
        kind = 'exported'
        files = _exported_files(encoder)
        weights = {m: read_weights_file(files[m]) for m in wanted
                   if m in files}
    else:
        kind = 'checkpoint'
        checkpoint = read_training_checkpoint(encoder, trusted=trusted)
        if cfg is None:
            cfg = run_config(encoder, checkpoint.get('meta')) or None
        video, audio = split_training_state_dict(checkpoint['state_dict'])
        weights = {m: sd for m, sd in (('video', video), ('audio', audio))
                   if m in wanted and sd}
    if kind in ('exported', 'checkpoint'):
        for m in wanted:
            if m not in weights:
                raise _missing_modality(encoder, kind, m)
    if cfg is None and kind != 'random':
        print_log(f'{encoder}: no config, so the default input settings '
                  f'{ClipSpec()} are used; pass the training config '
                  '(--cfg) if it used others.', logger='current',
                  level=logging.WARNING)

    modules = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in wanted:
            arch = encoder_cfg(cfg, m) if cfg else None
            if kind == 'random':
                modules[m] = _build(arch, m)
                if hasattr(modules[m], 'init_weights'):  # as the Runner does
                    modules[m].init_weights()
            elif kind == 'release':  # the official architecture, always
                modules[m] = _build(None, m)
                load_pretrained_weights(modules[m], XDC_SCHEME + release,
                                        offline=offline)
            else:
                modules[m] = _load_weights(m, weights[m], arch, encoder)
    for module in modules.values():
        module.eval().requires_grad_(False)
    settings = input_settings(cfg) if cfg else ClipSpec()
    return Encoders(modules=modules, settings=settings, name=encoder,
                    kind=kind)


__all__ = ['Encoders', 'IncompatibleWeightsError', 'load_encoders',
           'RANDOM']
