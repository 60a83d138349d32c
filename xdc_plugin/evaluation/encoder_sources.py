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
  ``weights_only=True`` and the allow-list of ``engine/runner/checkpoint.py``;
  ``trusted=True`` (``--trust-checkpoint``) allows a full unpickle of a
  checkpoint you made yourself.

Each kind is an :class:`EncoderSource` (``matches`` + ``load``) in
``ENCODER_SOURCES``; :func:`load_encoders` asks them in turn and returns an
:class:`Encoders`: eval-mode modules, their official-layout state dicts and
the clip (:class:`ClipSpec`) to feed them.
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

from xdc_plugin import MODALITIES
from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.encoders import AudioResNet18, R2Plus1D18
from xdc_plugin.engine.runner.checkpoint import read_training_checkpoint
from xdc_plugin.evaluation.run_config import (as_config_dict, encoder_cfg,
                                              input_settings, run_config)
from xdc_plugin.registry import MODELS
from xdc_plugin.weights import (FC_KEYS, PRETRAINED_CFGS, XDC_SCHEME,
                                IncompatibleWeightsError,
                                load_official_state_dict,
                                load_pretrained_weights, read_weights_file,
                                split_training_state_dict)

RANDOM = 'random'
# ``tools/export_encoder.py``'s names: <name>_<modality>-<sha256 prefix>.pth
_EXPORTED_NAME = re.compile(
    r'^(?P<stem>.+)_(?P<modality>video|audio)-[0-9a-f]{8,64}\.pth$')


@dataclasses.dataclass
class Encoders:
    """Frozen (eval-mode) encoders and what their input must be.

    ``modules`` maps each loaded modality to its module, which maps a batch
    of clips (``(B, 3, T, H, W)`` normalised video, ``(B, 1, n_mels, frames)``
    log-mel) to pooled ``(B, feat_dim)`` features. ``kind`` is the ``name``
    of the source that loaded them (``'random'``, ``'release'``,
    ``'exported'`` or ``'checkpoint'``); ``name`` the ENCODER string as
    given (it goes into every result record).
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


def _load_weights(modality, state_dict, cfg, source):
    module = _build(cfg, modality, state_dict)
    load_official_state_dict(module, state_dict,
                             allow_missing=FC_KEYS if modality == 'video'
                             else (), source=f'{source} ({modality})')
    return module


class EncoderSource:
    """One kind of ENCODER string: :meth:`matches` says whether a string
    is of this kind, :meth:`load` builds its encoders. ``name`` is the
    ``Encoders.kind`` it gives; ``missing_hint`` completes the error for a
    modality it does not have."""

    name = ''
    missing_hint = ''

    def matches(self, encoder: str) -> bool:
        raise NotImplementedError

    def load(self, encoder: str, wanted: Tuple[str, ...],
             cfg: Optional[dict], trusted: bool, offline: Optional[bool]
             ) -> Tuple[Dict[str, nn.Module], Optional[dict]]:
        """``({modality: module}, cfg)`` for the ``wanted`` modalities,
        ``cfg`` the config given or, for a checkpoint without one, its
        run's. Called with torch's generator seeded."""
        raise NotImplementedError

    def missing(self, encoder: str, modality: str) -> ValueError:
        return ValueError(f'{encoder!r} ({self.name}) has no {modality} '
                          f'encoder.{self.missing_hint}')

    def from_weights(self, encoder: str,
                     weights: Dict[str, Dict[str, torch.Tensor]],
                     wanted: Tuple[str, ...], cfg: Optional[dict]
                     ) -> Dict[str, nn.Module]:
        """The ``wanted`` modules built and loaded from ``{modality: state
        dict}``; a modality without weights is an error."""
        for m in wanted:
            if m not in weights:
                raise self.missing(encoder, m)
        return {m: _load_weights(m, weights[m],
                                 encoder_cfg(cfg, m) if cfg else None,
                                 encoder) for m in wanted}


class RandomSource(EncoderSource):
    """``random``: the config's encoders (the official widths without
    one), initialised as the Runner initialises them."""

    name = RANDOM

    def matches(self, encoder):
        return encoder == RANDOM

    def load(self, encoder, wanted, cfg, trusted, offline):
        modules = {}
        for m in wanted:
            modules[m] = _build(encoder_cfg(cfg, m) if cfg else None, m)
            if hasattr(modules[m], 'init_weights'):  # as the Runner does
                modules[m].init_weights()
        return modules, cfg


class ReleaseSource(EncoderSource):
    """A release name, or ``xdc://<name>``: the official architecture,
    whatever the config's, with the released weights."""

    name = 'release'
    missing_hint = (' The official release ships only video encoders; use '
                    '--modality video.')

    def matches(self, encoder):
        return _release_name(encoder) is not None

    def load(self, encoder, wanted, cfg, trusted, offline):
        if 'audio' in wanted:
            raise self.missing(encoder, 'audio')
        module = _build(None, 'video')
        load_pretrained_weights(module, XDC_SCHEME + _release_name(encoder),
                                offline=offline)
        return {'video': module}, cfg


class ExportedSource(EncoderSource):
    """A file of weights only (``tools/export_encoder.py``'s pair, or the
    official video layout)."""

    name = 'exported'
    missing_hint = (' tools/export_encoder.py writes it beside the video '
                    'file as <name>_audio-<hash>.pth.')

    def matches(self, encoder):
        return osp.isfile(encoder) and _is_flat_weights(encoder)

    def load(self, encoder, wanted, cfg, trusted, offline):
        files = _exported_files(encoder)
        weights = {m: read_weights_file(files[m]) for m in wanted
                   if m in files}
        return self.from_weights(encoder, weights, wanted, cfg), cfg


class CheckpointSource(EncoderSource):
    """Any other file: a training checkpoint, read safely unless
    ``trusted``; without ``cfg`` its run's config gives the architecture."""

    name = 'checkpoint'

    def matches(self, encoder):
        return osp.isfile(encoder)

    def load(self, encoder, wanted, cfg, trusted, offline):
        checkpoint = read_training_checkpoint(encoder, trusted=trusted)
        if cfg is None:
            cfg = run_config(encoder, checkpoint.get('meta')) or None
        weights = dict(zip(MODALITIES, split_training_state_dict(
            checkpoint['state_dict'])))
        weights = {m: sd for m, sd in weights.items() if sd}
        return self.from_weights(encoder, weights, wanted, cfg), cfg


# Asked in this order; the first that matches loads (a checkpoint is any
# file that is not weights only).
ENCODER_SOURCES = (RandomSource(), ReleaseSource(), ExportedSource(),
                   CheckpointSource())


def encoder_source(encoder: str) -> EncoderSource:
    """The source that loads ``encoder``; a clear error for none."""
    for source in ENCODER_SOURCES:
        if source.matches(encoder):
            return source
    raise FileNotFoundError(
        f'ENCODER {encoder!r} is not a file, a release name '
        f'({", ".join(sorted(PRETRAINED_CFGS))}) or {RANDOM!r}.')


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
    source = encoder_source(encoder)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        modules, cfg = source.load(encoder, wanted, cfg, trusted, offline)
    if cfg is None and source.name != RANDOM:
        print_log(f'{encoder}: no config, so the default input settings '
                  f'{ClipSpec()} are used; pass the training config '
                  '(--cfg) if it used others.', logger='current',
                  level=logging.WARNING)
    for module in modules.values():
        module.eval().requires_grad_(False)
    settings = input_settings(cfg) if cfg else ClipSpec()
    return Encoders(modules=modules, settings=settings, name=encoder,
                    kind=source.name)


__all__ = ['Encoders', 'EncoderSource', 'ENCODER_SOURCES', 'encoder_source',
           'IncompatibleWeightsError', 'load_encoders',
           'RANDOM']
