"""One feature vector per file: the pooled encoder outputs of several clips
(video) or windows (audio) of the file, averaged, as the field does.

Defaults (:data:`DEFAULT_NUM_CLIPS`): 10 clips / windows uniformly spaced
over each file, centre crop, each clip with the encoder's own input
settings (frames, frame rate, size, audio front end); the features of the
10 are averaged. The dataset gives, per file, ``video`` uint8
``(K, 3, T, H, W)`` and/or ``audio`` ``(K, 1, n_mels, frames)`` (no leading
``K`` when ``K = 1``), ``label`` and ``index``.

A file that cannot be decoded is skipped and counted, never a crash:
whether the dataset raises ``DecodeError`` for it or, as ``AVClipDataset``
does, returns the next decodable file instead (whose ``index`` then
repeats; each index is kept once). The files the dataset excluded when it
was built (its ``skipped`` list) are counted too.
"""
import dataclasses
import logging
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.logging import print_log
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from xdc_plugin.data.decode import DecodeError
from xdc_plugin.encoders import XDC_MEAN, XDC_STD
from xdc_plugin.evaluation.encoder_sources import Encoders

DEFAULT_NUM_CLIPS = 10
#: Dimensions of one clip after packing: video (3, T, H, W), audio (1, F, T').
_CLIP_DIMS = {'video': 4, 'audio': 3}


@dataclasses.dataclass
class FileFeatures:
    """Features of the files that decoded, in dataset order.

    ``features``: modality -> float32 ``(N, D)``; ``labels``: int64 ``(N,)``
    (-1 unknown); ``indices``: their dataset indices; ``paths``: their
    files; ``skipped``: ``(file, reason)`` of every file left out.
    """
    features: Dict[str, np.ndarray]
    labels: np.ndarray
    indices: np.ndarray
    paths: List[str]
    skipped: List[Tuple[str, str]]

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)


class _SkipUndecodable(Dataset):
    """``dataset[i]``, or a marker naming why file ``i`` failed to decode
    (so that a DataLoader worker never dies on a bad file)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except DecodeError as exc:
            return {'failed': exc.kind, 'index': index}


def _collate(items):
    failed = {item['index']: item['failed'] for item in items
              if 'failed' in item}
    good = [item for item in items if 'failed' not in item]
    return (default_collate(good) if good else None), failed


def _path(dataset, index):
    try:
        return str(dataset.get_data_info(index)['path'])
    except (AttributeError, KeyError):
        return f'index {index}'


def _normalise_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> [0, 1] -> released models' mean/std (as the model's
    data preprocessor does for training)."""
    mean = video.new_tensor(XDC_MEAN, dtype=torch.float32).view(3, 1, 1, 1)
    std = video.new_tensor(XDC_STD, dtype=torch.float32).view(3, 1, 1, 1)
    return (video.float() / 255 - mean) / std


def _per_file(encoder, clips: torch.Tensor, modality: str, device):
    """Encoder features averaged over each file's clips: ``(B, K, *clip)``
    or ``(B, *clip)`` -> ``(B, D)``."""
    if clips.dim() == _CLIP_DIMS[modality] + 1:
        clips = clips.unsqueeze(1)
    if clips.dim() != _CLIP_DIMS[modality] + 2:
        raise ValueError(f'{modality} batch of shape {tuple(clips.shape)}: '
                         f'expected (B, K, {_CLIP_DIMS[modality]} clip '
                         'dimensions)')
    batch, num_clips = clips.shape[:2]
    flat = clips.flatten(0, 1).to(device)
    if modality == 'video':
        flat = _normalise_video(flat)
    feats = encoder(flat.float())
    return feats.view(batch, num_clips, -1).mean(1).float().cpu()


@torch.no_grad()
def extract_file_features(encoders: Encoders, dataset,
                          modalities: Optional[Sequence[str]] = None,
                          batch_size: int = 4, num_workers: int = 0,
                          device: str = 'cpu', progress: bool = True,
                          desc: str = 'features') -> FileFeatures:
    """Per-file features of ``modalities`` (default: every loaded encoder)
    over ``dataset`` (see the module docstring), with a progress bar."""
    modalities = tuple(modalities or encoders.modalities)
    modules = {m: encoders.modules[m].to(device).eval() for m in modalities}
    loader = DataLoader(_SkipUndecodable(dataset), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_collate)
    chunks = {m: [] for m in modalities}
    labels, indices, failed = [], [], {}
    with tqdm(total=len(dataset), desc=desc, unit='file',
              disable=not progress) as bar:
        for batch, batch_failed in loader:
            failed.update(batch_failed)
            bar.update(len(batch_failed))
            if batch is None:
                continue
            for m in modalities:
                chunks[m].append(_per_file(modules[m], batch[m], m, device))
            labels.append(torch.as_tensor(batch['label']).long())
            indices.append(torch.as_tensor(batch['index']).long())
            bar.update(len(indices[-1]))
    if not indices:
        raise RuntimeError(f'{desc}: no file could be decoded '
                           f'({len(failed)} failed)')
    indices = torch.cat(indices).numpy()
    # A replaced file's content comes back under its replacement's index.
    indices, first = np.unique(indices, return_index=True)
    missing = np.setdiff1d(np.arange(len(dataset)), indices)
    skipped = [(str(p), str(r)) for p, r in getattr(dataset, 'skipped', [])]
    skipped += [(_path(dataset, i), failed.get(i, 'undecodable'))
                for i in missing]
    if skipped:
        counts = Counter(reason for _, reason in skipped)
        print_log(f'{desc}: skipped {len(skipped)} file(s) that could not be '
                  f'decoded ({dict(counts)}); first: {skipped[:3]}',
                  logger='current', level=logging.WARNING)
    return FileFeatures(
        features={m: torch.cat(c).numpy()[first] for m, c in chunks.items()},
        labels=torch.cat(labels).numpy()[first], indices=indices,
        paths=[_path(dataset, i) for i in indices], skipped=skipped)
