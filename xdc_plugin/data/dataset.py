"""``AVClipDataset``: an mmengine ``BaseDataset`` of audio-visual files.

Each item is one file (``path``, ``label``, and the ``duration`` and ``fps``
its headers give); the pipeline written in the config samples, decodes and
transforms its clips. Three things set it apart from a plain file list:

* **Checked at build**: every file is checked once (``file_check.py``, the
  check ``tools/check_manifest.py`` runs too) and those that cannot give
  clips are skipped with one logged summary. Small sets are decoded end to
  end (start, middle and end clip); results are cached (``check_cache.py``).
  A manifest written by ``tools/prepare_dataset.py`` (its sidecar matches
  it, ``prepared_manifest.py``) is trusted instead: its rows give each
  file's duration and frame rate, and the build opens no media file.
* **Never stops on a bad file**: a file that fails to decode anyway is
  replaced by the next decodable index; the sample's ``index`` is the index
  of the content returned (pseudo-labels are looked up by it). Failures are
  counted per process and logged; more than ``max_undecodable_fraction`` of
  the dataset is an error.
* **Reproducible samples**: every random choice of the pipeline comes from
  a generator seeded by ``(seed, epoch, index)``, whatever worker decodes the
  sample and whatever ran before. ``set_epoch`` changes the epoch; DataLoader
  workers see it only when they are created, so the configs set
  ``persistent_workers=False`` (workers are re-created every epoch).
"""
import logging
import os
from collections import Counter

import numpy as np
from mmengine import dist
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

from xdc_plugin.data.check_cache import CheckCache
from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.data.file_check import CheckSettings, check_files
from xdc_plugin.data.manifest import (ManifestError, extensions_for,
                                      read_file_list)
from xdc_plugin.data.media_info import DecodeError
from xdc_plugin.data.prepared_manifest import (file_list_digest,
                                               read_sidecar, trusted_checks)
from xdc_plugin.data.seeding import seeded_rng
from xdc_plugin.data.transforms import SampleClip, resize_in_decoder
from xdc_plugin.registry import DATASETS, SCOPE

__all__ = ['AVClipDataset', 'AUTO_DECODE_CHECK_MAX_FILES']

# check='auto' decodes every file end to end below this many files.
AUTO_DECODE_CHECK_MAX_FILES = 2000
CHECKS = ('auto', 'decode', 'headers')


def _encode_labels(raw, classes=None):
    """Labels as int64, -1 where unlabelled, and the class names (None when
    the labels are integers already and no ``classes`` are given).

    ``classes`` fixes the class order; otherwise string labels become
    indices of the sorted class names.
    """
    if classes is not None:
        lut = {str(c): i for i, c in enumerate(classes)}
        unknown = sorted({v for v in raw if v is not None} - set(lut))
        if unknown:
            raise ValueError(f'labels {unknown[:5]} are not among the '
                             f'metainfo classes {list(classes)[:10]}')
        return np.asarray([lut.get(v, -1) for v in raw], np.int64), \
            tuple(classes)
    known = [v for v in raw if v is not None]
    try:
        return np.asarray([int(v) if v is not None else -1 for v in raw],
                          np.int64), None
    except ValueError:
        names = tuple(sorted(set(known)))
        lut = {c: i for i, c in enumerate(names)}
        return np.asarray([lut.get(v, -1) for v in raw], np.int64), names


@DATASETS.register_module()
class AVClipDataset(BaseDataset):
    """Audio-visual (or audio-only) files, one item each.

    Args:
        ann_file: CSV manifest with a ``path`` column and optional label
            column (see ``manifest.py``); '' to scan ``data_root``. As in
            mmengine, a relative ``ann_file`` is joined to ``data_root``.
        data_root: root of the manifest's relative paths (default: the
            CSV's folder), or the folder scanned for media files.
        pipeline: transform configs (``SampleClip``, ``DecodeAVClip``, ...).
        label_column: the label column (evaluation only); None: ``label``
            when the manifest has one. Unlabelled rows get -1.
        modalities: the streams every file must have and the pipeline
            decodes: ``('video', 'audio')``, ``('audio',)`` for audio-only
            files (ESC-50, DCASE), ``('video',)``.
        pad_short_audio: a file whose audio track ends well before its video
            is skipped (``audio_short``); True keeps it and pads the missing
            audio with zeros (the count is logged at build).
        check: ``'decode'``: decode a clip at the start, middle and end of
            every file at build; ``'headers'``: read headers only; ``'auto'``:
            decode when there are at most ``AUTO_DECODE_CHECK_MAX_FILES``.
            The clip settings come from the pipeline (``clip_spec``).
            With ``'auto'`` or ``'headers'``, a prepared manifest is
            trusted (see above): nothing is opened.
        check_cache: keep check results beside the manifest (or in the user
            cache folder), True; not at all, False; or in this folder.
        check_workers: threads that check files (None: one per core, <= 8).
        max_undecodable_fraction: the run stops when more than this
            fraction of the files fail to decode during training.
        seed: seed of the pipeline's random choices (None: 0, or the
            runner's seed when ``DatasetEpochHook`` runs).
        metainfo: ``dict(classes=[...])`` fixes the class order.
        indices, serialize_data, lazy_init: as in mmengine's ``BaseDataset``.
    """

    def __init__(self, ann_file='', data_root='', pipeline=(),
                 label_column=None, modalities=('video', 'audio'),
                 pad_short_audio=False, check='auto', check_cache=True,
                 check_workers=None, max_undecodable_fraction=0.05,
                 seed=None, metainfo=None, indices=None, serialize_data=True,
                 lazy_init=False):
        if check not in CHECKS:
            raise ValueError(f'check must be one of {CHECKS}, not {check!r}')
        if not 0 <= max_undecodable_fraction <= 1:
            raise ValueError('max_undecodable_fraction must be in [0, 1], '
                             f'got {max_undecodable_fraction}')
        self.label_column = label_column
        self.modalities = tuple(modalities)
        self.pad_short_audio = pad_short_audio
        self.check, self.check_cache = check, check_cache
        self.check_workers = check_workers
        self.max_undecodable_fraction = max_undecodable_fraction
        self.seed, self.epoch = seed, 0
        self.skipped = []  # (path, status) of the files left out at build
        self.prepared = None  # the sidecar of a trusted prepared manifest
        # Digest of the kept files in order (``file_list_digest``), compared
        # across ranks before training (engine/round/dataset_agreement.py).
        self.file_list_digest = None
        self._undecodable = set()  # indices that failed in this process
        self._source = None  # the manifest or folder read
        # Transforms are looked up in the xdc scope even when the dataset is
        # built outside a runner.
        with DefaultScope.overwrite_default_scope(SCOPE):
            super().__init__(
                ann_file=ann_file or '', metainfo=metainfo,
                data_root=data_root or '', pipeline=list(pipeline),
                indices=indices, serialize_data=serialize_data,
                lazy_init=lazy_init)
        resize_in_decoder(self.pipeline.transforms)

    # -- build ----------------------------------------------------------
    def load_data_list(self):
        files = read_file_list(self.ann_file, self.data_root,
                               self.label_column,
                               extensions_for(self.modalities))
        if files.summary():
            print_log(files.summary(), logger='current',
                      level=logging.WARNING)
        labels, classes = _encode_labels(files.labels,
                                         self._metainfo.get('classes'))
        if classes is not None:
            self._metainfo['classes'] = classes
        self._source = files.source
        if self.ann_file and self.check != 'decode':
            self.prepared = read_sidecar(self.ann_file)
        if self.prepared is not None:  # duration and fps come from the rows
            return [dict(path=p, label=int(l), duration=r.get('duration'),
                         fps=r.get('fps'))
                    for p, l, r in zip(files.paths, labels, files.rows)]
        return [dict(path=p, label=int(l))
                for p, l in zip(files.paths, labels)]

    @property
    def clip_spec(self):
        """The clip the pipeline cuts (``ClipSpec``)."""
        return ClipSpec.from_pipeline(self.pipeline.transforms)

    def check_settings(self, num_files):
        """The ``CheckSettings`` of this dataset's pipeline, for a list of
        ``num_files`` files."""
        spec = self.clip_spec
        sample = 'SampleClip' in spec.transforms
        decode = 'DecodeAVClip' in spec.transforms
        full = self.check == 'decode' or (
            self.check == 'auto' and
            num_files <= AUTO_DECODE_CHECK_MAX_FILES)
        return CheckSettings(
            modalities=self.modalities,
            num_frames=spec.num_frames if sample else None,
            frame_rate=spec.frame_rate if sample else None,
            clip_duration=spec.clip_duration if sample else 0.0,
            audio_duration=spec.audio_duration if decode else None,
            sample_rate=spec.sample_rate,
            full_decode=bool(full and sample and decode))

    @property
    def cuts_fixed_clips(self):
        """Whether the pipeline decodes one clip per file at a place that
        depends on the file only (a feature-extraction pipeline), so that
        ``clip_window`` says where."""
        sample = self._clip_sampler()
        return (sample is not None and sample.mode != 'random'
                and sample.num_clips == 1
                and 'DecodeAVClip' in self.clip_spec.transforms)

    def clip_window(self, info):
        """``(start_sec, frame_rate)`` of the clip the pipeline cuts from
        the file of data info ``info`` (``get_data_info``): its own
        ``SampleClip`` run on it. Meaningful when ``cuts_fixed_clips``."""
        cut = self._clip_sampler().transform(dict(info))
        return cut['clip_starts'][0], cut['frame_rate']

    def _clip_sampler(self):
        return next((t for t in self.pipeline.transforms
                     if isinstance(t, SampleClip)), None)

    def filter_data(self):
        """Keep the files that pass ``check_file`` (see ``check``), or whose
        prepared manifest row says they hold a clip."""
        settings = self.check_settings(len(self.data_list))
        if self.prepared is not None:
            results = trusted_checks(self.data_list, settings)
        else:
            cache = None
            if self.check_cache:
                folder = None if self.check_cache is True else \
                    self.check_cache
                cache = CheckCache(self._source, settings, folder)
            results = check_files([d['path'] for d in self.data_list],
                                  settings, self.check_workers,
                                  progress=dist.is_main_process(),
                                  cache=cache)
        accepted = {'ok', 'audio_short'} if self.pad_short_audio else {'ok'}
        kept, padded = [], []
        for info, result in zip(self.data_list, results):
            if result.status in accepted:
                kept.append(dict(info, duration=result.duration,
                                 fps=result.fps))
                if result.status == 'audio_short':
                    padded.append(info['path'])
            else:
                self.skipped.append((info['path'], result.status))
        self._log_build(len(self.data_list), padded)
        self.file_list_digest = file_list_digest([d['path'] for d in kept])
        if not kept:
            raise ManifestError(
                f'{type(self).__name__}: no usable file in {self._source!r} '
                f'({len(self.data_list)} listed, all skipped: '
                f'{dict(Counter(s for _, s in self.skipped))})')
        return kept

    def _log_build(self, listed, padded):
        if self.skipped:
            counts = Counter(s for _, s in self.skipped)
            first = ', '.join(f'{p} ({s})' for p, s in self.skipped[:5])
            print_log(
                f'{type(self).__name__}: skipped {len(self.skipped)} of '
                f'{listed} files ('
                f'{", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))}'
                f'); first: {first}', logger='current',
                level=logging.WARNING)
        if padded:
            print_log(
                f'{type(self).__name__}: {len(padded)} files have an audio '
                'track that ends before their video; their audio is padded '
                f'with zeros (pad_short_audio=True); first: {padded[:5]}',
                logger='current', level=logging.WARNING)

    # -- items ----------------------------------------------------------
    def set_epoch(self, epoch):
        """Seed the next samples with ``epoch`` (seen by DataLoader workers
        created after this call)."""
        self.epoch = epoch

    def get_data_info(self, idx):
        info = super().get_data_info(idx)
        info.update(index=info['sample_idx'], modalities=self.modalities,
                    pad_short_audio=self.pad_short_audio)
        return info

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        with seeded_rng(self.seed or 0, self.epoch, info['index']):
            return self.pipeline(info)

    def __getitem__(self, idx):
        if not self._fully_initialized:
            self.full_init()
        n = len(self)
        for step in range(n):
            j = (idx + step) % n
            if j in self._undecodable:
                continue
            try:
                return self.prepare_data(j)
            except DecodeError as e:
                self._count_failure(j, e)
        raise RuntimeError(f'{type(self).__name__}: no file decodes')

    def _count_failure(self, index, error):
        self._undecodable.add(index)
        limit = self.max_undecodable_fraction * len(self)
        print_log(
            f'{type(self).__name__}: skipping index {index} ({error.path}): '
            f'{error.kind}: {error.reason} [{len(self._undecodable)} '
            f'undecodable files met by this process (pid {os.getpid()}); '
            f'the run stops above {limit:g}]', logger='current',
            level=logging.WARNING)
        if len(self._undecodable) > limit:
            raise RuntimeError(
                f'{type(self).__name__}: {len(self._undecodable)} of '
                f'{len(self)} files failed to decode, more than '
                f'max_undecodable_fraction={self.max_undecodable_fraction}. '
                'Run tools/check_manifest.py --write-clean on the manifest '
                'and train on the clean one.')

    def get_labels(self):
        """Labels as int64 (N,), -1 where unlabelled (evaluation only)."""
        return np.asarray([self.get_data_info(i)['label']
                           for i in range(len(self))], np.int64)
