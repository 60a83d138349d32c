"""Writing weights files: atomic, hash-named saves and the split of our XDC
training model's state dict into the two encoders' state dicts."""
import hashlib
import io
import os.path as osp
import re
from typing import Dict, Mapping, Optional, Tuple

import torch

from xdc_plugin.atomic_write import write_atomically
from xdc_plugin.weights.errors import IncompatibleWeightsError
from xdc_plugin.weights.loading import check_state_dict, reference_model


def _serialise(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    return buffer.getvalue()


def save_state_dict(state_dict: Mapping[str, torch.Tensor],
                    path: str) -> str:
    """Save ``state_dict`` to ``path`` atomically; the folder must exist
    (a mistyped output folder is an error, not a new folder)."""
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise FileNotFoundError(f'No folder {folder}')
    write_atomically(_serialise(state_dict), path)
    return path


def save_hash_named(state_dict: Mapping[str, torch.Tensor], out_dir: str,
                    name: str) -> str:
    """Save to ``<out_dir>/<name>-<sha256[:8]>.pth`` (torch.hub's naming,
    so ``check_hash=True`` accepts it) and return the path."""
    if '-' in name:
        raise ValueError(f'{name!r}: no "-" in the name (torch.hub reads '
                         'the hash after the first "-")')
    data = _serialise(state_dict)
    path = osp.join(out_dir,
                    f'{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth')
    write_atomically(data, path)
    return path


def _strip_prefix(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)}


def infer_width(video_state_dict: Mapping[str, torch.Tensor]) -> float:
    """Width multiplier of an R2Plus1D18 state dict (1.0 official)."""
    return video_state_dict['stem.3.weight'].shape[0] / 64


def split_training_state_dict(
        state_dict: Mapping[str, torch.Tensor],
        width: Optional[float] = None
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(video, audio)`` encoder state dicts out of our XDC model's state
    dict (keys ``video_encoder.*``, ``audio_encoder.*``; ``heads.*``,
    ``pseudo_labels`` and ``data_preprocessor.*`` are dropped), each in the
    layout of its encoder's host: our R(2+1)D-18 in the official layout
    (any ``fc`` dropped), checked strictly against ``R2Plus1D18(
    num_classes=0, width=<inferred or given>)``; a ``HostBackbone``'s in
    its backbone's own (checked when loaded into a backbone built from
    the run's config)."""
    video = _strip_prefix(state_dict, 'video_encoder.')
    audio = _strip_prefix(state_dict, 'audio_encoder.')
    if not video:
        raise IncompatibleWeightsError(
            'No video_encoder.* keys in the checkpoint; is it an XDC '
            f'training checkpoint? First keys: {list(state_dict)[:5]}')
    if 'stem.3.weight' in video:  # our R2Plus1D18
        video = {k: v for k, v in video.items() if not k.startswith('fc.')}
        width = width if width is not None else infer_width(video)
        check_state_dict(reference_model(width), video, allow_missing=(),
                         source=f'video_encoder (width {width:g})')
    elif width is not None:
        raise IncompatibleWeightsError(
            f'a width ({width:g}) was given but the video encoder is not our '
            'R2Plus1D18 (no stem.3.weight): a HostBackbone is exported in '
            "its backbone's layout as it is")
    return video, audio


def export_name(checkpoint_path: str) -> str:
    """Default file-name stem of an export: ``xdc_<checkpoint stem>``."""
    stem = osp.splitext(osp.basename(checkpoint_path))[0]
    return 'xdc_' + re.sub(r'[^0-9A-Za-z_]+', '_', stem)


def export_encoders(state_dict: Mapping[str, torch.Tensor], out_dir: str,
                    name: str, width: Optional[float] = None
                    ) -> Dict[str, Optional[str]]:
    """Write the encoders of a training model's state dict as hash-named
    files: ``<name>_video-<h8>.pth`` and ``<name>_audio-<h8>.pth``, each in
    its host's layout (:func:`split_training_state_dict`). Returns
    ``{'video': path, 'audio': path or None}`` (None: no audio encoder in
    the state dict)."""
    video, audio = split_training_state_dict(state_dict, width=width)
    return {'video': save_hash_named(video, out_dir, f'{name}_video'),
            'audio': (save_hash_named(audio, out_dir, f'{name}_audio')
                      if audio else None)}
