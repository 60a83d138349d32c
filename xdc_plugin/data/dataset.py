"""``AVClipDataset``: map-style dataset of (video clip, audio window) pairs.

The file list is validated once, at construction, by reading every file's
headers (``probe``); ``with_mode`` gives a view of the same list in another
mode, so that index ``i`` is the same file for training and for feature
extraction (pseudo-labels are keyed by that index).
"""
import copy
import csv
import logging
import os
import os.path as osp
from collections import Counter

import numpy as np
from mmengine.logging import print_log
from torch.utils.data import Dataset

from xdc_plugin.data.decode import DecodeError, probe, probe_clip_source
from xdc_plugin.data.transforms import build_pipeline, default_pipeline
from xdc_plugin.registry import DATASETS

__all__ = ['AVClipDataset', 'VIDEO_EXTENSIONS', 'read_file_list']

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.ogv',
                    '.mpeg', '.mpg', '.flv', '.3gp', '.wmv')


def read_file_list(ann_file=None, data_root=None, label_column='label'):
    """``(paths, raw_labels)`` from a CSV manifest (``path`` column relative
    to ``data_root`` or to the CSV's folder; optional ``label_column``) or
    from a recursive, sorted scan of ``data_root`` (labels all None)."""
    if ann_file is None:
        if data_root is None or not osp.isdir(data_root):
            raise ValueError(f'give ann_file or an existing data_root folder '
                             f'(got {data_root!r})')
        paths = sorted(
            osp.join(d, f) for d, _, files in os.walk(data_root)
            for f in files if f.lower().endswith(VIDEO_EXTENSIONS))
        return paths, [None] * len(paths)
    root = data_root if data_root is not None else osp.dirname(
        osp.abspath(ann_file))
    with open(ann_file, newline='') as f:
        reader = csv.DictReader(f)
        if 'path' not in (reader.fieldnames or ()):
            raise ValueError(f'{ann_file} has no "path" column')
        rows = list(reader)
    paths = [osp.join(root, r['path']) for r in rows]
    labels = [(r.get(label_column) or None) for r in rows]
    return paths, labels


def _encode_labels(raw):
    """Integers kept as they are; strings mapped to the index of the class
    in the sorted class names; None -> -1."""
    known = [v for v in raw if v is not None]
    if not known:
        return np.full(len(raw), -1, np.int64), None
    try:
        ints = [int(v) if v is not None else -1 for v in raw]
        classes = tuple(str(c) for c in sorted(set(ints) - {-1}))
        return np.asarray(ints, np.int64), classes
    except ValueError:
        classes = tuple(sorted(set(known)))
        lut = {c: i for i, c in enumerate(classes)}
        return np.asarray([lut.get(v, -1) for v in raw], np.int64), classes


@DATASETS.register_module()
class AVClipDataset(Dataset):
    """Video clips with their time-aligned audio, from one file each.

    Args:
        ann_file: CSV with a ``path`` column (relative to ``data_root``, or
            to the CSV's folder when ``data_root`` is None) and an optional
            label column. Labels are for evaluation only.
        data_root: root of the paths, or (without ``ann_file``) a folder
            scanned recursively for video files (no labels).
        label_column: name of the label column (``'coarse_label'`` for
            avobjects); string labels become indices of the sorted classes.
        num_frames, frame_rate: clip length in frames, sampled at
            ``frame_rate`` fps (None: the file's own rate).
        short_side, crop_size: resize, then square crop (random in train).
        audio_duration, sample_rate: audio window (s) centred on the clip,
            resampled to mono ``sample_rate`` Hz.
        n_mels, hop_ms, win_ms: log-mel front end.
        mode: ``'train'`` (random clip start, random crop, flip) or
            ``'extract'`` (clip centred in the file, centre crop, no flip).
        pipeline: None for ``default_pipeline(mode, ...)``, or a list of
            transform configs/callables on the results dict.
        probe: read every file's headers now and exclude the files that
            cannot be opened, lack audio or video, or are shorter than a
            clip (``self.skipped`` lists ``(path, reason)``).

    ``__getitem__`` returns ``dict(video=uint8 (3, T, crop, crop),
    audio=float32 (1, n_mels, frames), index=i, label=int or -1)`` and
    raises ``DecodeError`` for a file that fails to decode (wrap the dataset
    in ``PseudoLabelDataset`` to skip such files during training).
    """

    def __init__(self, ann_file=None, data_root=None, label_column='label',
                 num_frames=8, frame_rate=None, short_side=128, crop_size=112,
                 audio_duration=2.0, sample_rate=16000, n_mels=40, hop_ms=10,
                 win_ms=25, mode='train', pipeline=None, probe=True):
        self.ann_file, self.data_root = ann_file, data_root
        self.clip_cfg = dict(
            num_frames=num_frames, frame_rate=frame_rate,
            short_side=short_side, crop_size=crop_size,
            audio_duration=audio_duration, sample_rate=sample_rate,
            n_mels=n_mels, hop_ms=hop_ms, win_ms=win_ms)
        paths, raw = read_file_list(ann_file, data_root, label_column)
        labels, classes = _encode_labels(raw)
        self.metainfo = dict(classes=classes) if classes else {}
        self.samples = [dict(path=p, label=int(l), duration=None, fps=None)
                        for p, l in zip(paths, labels)]
        self.skipped = []
        if probe:
            self._probe_all()
        if not self.samples:
            raise ValueError(
                f'AVClipDataset: no usable file in '
                f'{ann_file or data_root!r} ({len(paths)} listed, '
                f'{len(self.skipped)} skipped: '
                f'{dict(Counter(r for _, r in self.skipped))})')
        self._set_mode(mode, pipeline)

    def _set_mode(self, mode, pipeline):
        if mode not in ('train', 'extract'):
            raise ValueError(
                f"mode must be 'train' or 'extract', not {mode!r}")
        self.mode = mode
        self.pipeline = build_pipeline(
            pipeline if pipeline is not None else
            default_pipeline(mode, **self.clip_cfg))

    def _probe_all(self):
        kept = []
        for s in self.samples:
            try:
                info = probe_clip_source(s['path'],
                                         self.clip_cfg['num_frames'],
                                         self.clip_cfg['frame_rate'])
            except DecodeError as e:
                self.skipped.append((s['path'], e.kind))
                continue
            kept.append(dict(s, duration=info.duration, fps=info.fps))
        self.samples = kept
        if self.skipped:
            counts = Counter(r for _, r in self.skipped)
            first = ', '.join(f'{p} ({r})' for p, r in self.skipped[:5])
            print_log(
                f'AVClipDataset: skipped {len(self.skipped)} of '
                f'{len(self.skipped) + len(kept)} files '
                f'({", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))}'
                f'); first: {first}', logger='current',
                level=logging.WARNING)

    def with_mode(self, mode, pipeline=None):
        """A copy in ``mode`` sharing this dataset's validated file list (same
        files, same order, no re-probe). A custom ``pipeline`` is not
        carried over (it is mode specific): pass the new one."""
        other = copy.copy(self)
        other._set_mode(mode, pipeline)
        return other

    def __len__(self):
        return len(self.samples)

    def get_path(self, index):
        return self.samples[index]['path']

    def get_labels(self):
        """Labels as int64 (N,), -1 where unknown (evaluation only)."""
        return np.asarray([s['label'] for s in self.samples], np.int64)

    def __getitem__(self, index):
        s = self.samples[index]
        if s['duration'] is None:  # built with probe=False
            info = probe(s['path'])
            s = dict(s, duration=info.duration, fps=info.fps)
        return self.pipeline(dict(s, index=index))

    def __repr__(self):
        return (f'{type(self).__name__}(n={len(self)}, mode={self.mode!r}, '
                f'skipped={len(self.skipped)}, {self.clip_cfg})')
