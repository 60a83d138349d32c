"""The per-round cluster file ``work_dir/clusters/round_<r>.npz``.

The only code that writes or reads it (``round_dataset.py`` gathers what
it records of the dataset). A round file holds, for every
clustering source (``video``, ``audio``, ``joint``): each clip's cluster and
its distance to that cluster's centre in the space k-means ran in, the
centroids and the preprocessing state of that space, per-cluster size and,
when the dataset has labels, purity, majority label and label counts. Beside
them: the dataset's file paths and root folder, labels and class names, the
time window each clip was cut at for feature extraction, the round's id,
epoch, variant and quality metrics. Everything is a plain array or a JSON
string, so the file loads with ``allow_pickle=False``.

Format 1 (before per-clip distances were saved) held only
``<source>_labels`` and ``<source>_centroids``; it still loads, with
``ClusterRound.missing`` naming what it lacks.
"""
import io
import json
import os.path as osp
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import numpy as np
from mmengine import fileio

from xdc_plugin.clustering.preprocess import FeaturePreprocessor
from xdc_plugin.clustering.round_dataset import (ClipWindows,
                                                 cluster_label_stats,
                                                 dataset_arrays)

FORMAT_VERSION = 2
SOURCES = ('video', 'audio', 'joint')
_ROUND_NAME = re.compile(r'^round_(\d+|final)\.npz$')

# What a file may lack, and what a viewer cannot show without it.
MISSING_CONSEQUENCES = {
    'distances': 'the clips nearest each centre and cluster tightness',
    'preprocess': 'the PCA/whitening state of the centroid space',
    'paths': 'any clip (no file paths)',
    'labels': 'purity, majority labels and label histograms',
    'windows': 'the exact extraction window of each clip',
    'metrics': 'this round in the quality charts',
    'run': 'the epoch, variant and config of the round',
}


class RoundFileError(ValueError):
    """A round file that cannot be read (corrupt, foreign, truncated)."""


@dataclass
class SourceClusters:
    """One clustering source of a round (arrays over the N clips or the K
    clusters; optional fields are None when the file lacks them)."""
    labels: np.ndarray                      # (N,) int64, -1: not extracted
    centroids: np.ndarray                   # (K, D') float32
    counts: np.ndarray                      # (K,) int64
    distances: Optional[np.ndarray] = None  # (N,) float32, NaN where -1
    preprocess: Optional[dict] = None       # FeaturePreprocessor.state_dict
    purity: Optional[np.ndarray] = None     # (K,) NaN: no labelled clip
    majority: Optional[np.ndarray] = None   # (K,) int64 class, -1: none
    label_counts: Optional[np.ndarray] = None  # (K, C) int64

    @property
    def num_clusters(self):
        return len(self.centroids)

    def tightness(self):
        """Mean distance of each cluster's clips to its centre (K,); NaN for
        an empty cluster."""
        kept = self.labels >= 0
        sums = np.bincount(self.labels[kept], self.distances[kept],
                           minlength=self.num_clusters)
        with np.errstate(invalid='ignore', divide='ignore'):
            return sums / self.counts


@dataclass
class ClusterRound:
    """A loaded round file."""
    path: str
    version: int
    round_id: Union[int, str]
    sources: Dict[str, SourceClusters]
    epoch: Optional[int] = None
    variant: Optional[str] = None
    config: Optional[str] = None
    paths: Optional[List[str]] = None
    data_root: Optional[str] = None  # the dataset's folder (None: unknown)
    gt_labels: Optional[np.ndarray] = None
    classes: Optional[List[str]] = None
    windows: Optional[ClipWindows] = None
    metrics: Dict[str, dict] = field(default_factory=dict)
    agreement: Dict[str, float] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)

    @property
    def num_clips(self):
        return len(next(iter(self.sources.values())).labels)

    @property
    def has_labels(self):
        return self.gt_labels is not None and bool((self.gt_labels >= 0).any())

    def describe_missing(self):
        """One line per missing field: what it is and what it prevents."""
        return [f'{name}: cannot show {MISSING_CONSEQUENCES[name]}'
                for name in self.missing]


def round_path(work_dir, round_id):
    return osp.join(work_dir, 'clusters', f'round_{round_id}.npz')


def round_sort_key(round_id):
    """Numbered rounds in order, then ``'final'``."""
    return (1, 0) if round_id == 'final' else (0, int(round_id))


def list_round_files(work_dir):
    """``{round_id: path}`` of the round files of a work dir, in order."""
    folder = osp.join(work_dir, 'clusters')
    found = {}
    if osp.isdir(folder):
        for name in sorted(fileio.list_dir_or_file(folder, list_dir=False)):
            match = _ROUND_NAME.match(name)
            if match:
                rid = match.group(1)
                found[rid if rid == 'final' else int(rid)] = osp.join(
                    folder, name)
    return dict(sorted(found.items(), key=lambda kv: round_sort_key(kv[0])))


# -- writing ------------------------------------------------------------------
def save_round(path, round_id, epoch, results, dataset=None, variant=None,
               config=None, metrics=None, agreement=None, backend_args=None):
    """Write a round file at ``path`` (through mmengine's file backends).

    Args:
        results: ``{source: ClusterResult}`` with labels over the whole
            dataset (-1 for clips not extracted, whose distance is NaN).
        dataset: the extraction dataset (paths, labels, classes and clip
            windows are read from it), or None.
        metrics: ``{source: {'nmi', 'ari', 'purity'}}`` against the labels.
        agreement: cross-modal agreement (``{'xmodal_nmi': float}``).
        backend_args: mmengine file backend arguments (the hook passes an
            atomic local backend).
    """
    _checked_round_id(round_id, path)
    arrays, meta = ({}, {}) if dataset is None else dataset_arrays(dataset)
    gt_labels = arrays.get('gt_labels')
    meta.update(round=round_id, epoch=int(epoch), variant=variant,
                config=config, metrics=metrics or {},
                agreement=agreement or {}, sources=list(results),
                preprocess={})
    for source, result in results.items():
        if source not in SOURCES:
            raise ValueError(f'unknown clustering source {source!r}')
        labels = np.asarray(result.labels, np.int64)
        distances = np.asarray(result.distances, np.float32)
        if distances.shape != labels.shape:
            raise ValueError(f'{source}: {len(distances)} distances for '
                             f'{len(labels)} labels')
        arrays.update({f'{source}_labels': labels,
                       f'{source}_centroids': result.centroids,
                       f'{source}_counts': result.counts,
                       f'{source}_distances': distances})
        if gt_labels is not None and (gt_labels >= 0).any():
            table, purity, majority = cluster_label_stats(
                labels, gt_labels, result.num_clusters)
            arrays.update({f'{source}_label_counts': table,
                           f'{source}_purity': purity,
                           f'{source}_majority': majority})
        if result.preprocess is not None:
            state = dict(result.preprocess)
            for name in FeaturePreprocessor.STATE_ARRAYS:
                value = state.pop(name)
                if value is not None:
                    arrays[f'{source}_pca_{name}'] = value
            meta['preprocess'][source] = state
    arrays['format_version'] = np.array(FORMAT_VERSION)
    arrays['meta'] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    fileio.put(buffer.getvalue(), path, backend_args=backend_args)


# -- reading ------------------------------------------------------------------
def _checked_round_id(round_id, path):
    # It names the gallery's pages: never a path, even from a foreign file.
    if not (type(round_id) is int or round_id == 'final'):
        raise RoundFileError(f'{path}: round id {round_id!r} is neither a '
                             "number nor 'final'")
    return round_id


def _round_id_from_name(path):
    match = _ROUND_NAME.match(osp.basename(path))
    if not match:
        return None
    rid = match.group(1)
    return rid if rid == 'final' else int(rid)


def _open_arrays(path):
    try:
        with np.load(io.BytesIO(fileio.get(path)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise RoundFileError(f'{path}: not a readable round file ({e})') from e


def _load_v1(path, arrays):
    sources = {}
    for source in SOURCES:
        if f'{source}_labels' in arrays:
            labels = arrays[f'{source}_labels'].astype(np.int64)
            centroids = arrays[f'{source}_centroids']
            sources[source] = SourceClusters(
                labels=labels, centroids=centroids,
                counts=np.bincount(labels[labels >= 0],
                                   minlength=len(centroids)))
    return ClusterRound(
        path=path, version=1, round_id=_round_id_from_name(path),
        sources=sources,
        missing=['distances', 'preprocess', 'paths', 'labels', 'windows',
                 'metrics', 'run'])


def _load_v2(path, arrays, meta):
    def optional(key):
        return arrays.get(key)

    sources = {}
    for source in meta['sources']:
        state = meta['preprocess'].get(source)
        if state is not None:
            state = dict(state, **{
                name: optional(f'{source}_pca_{name}')
                for name in FeaturePreprocessor.STATE_ARRAYS})
        sources[source] = SourceClusters(
            labels=arrays[f'{source}_labels'],
            centroids=arrays[f'{source}_centroids'],
            counts=arrays[f'{source}_counts'],
            distances=arrays[f'{source}_distances'], preprocess=state,
            purity=optional(f'{source}_purity'),
            majority=optional(f'{source}_majority'),
            label_counts=optional(f'{source}_label_counts'))
    windows = None
    if 'clip_start_sec' in arrays:
        windows = ClipWindows(arrays['clip_start_sec'],
                              arrays['clip_frame_rate'], meta['clip_cfg'])
    round_id = _checked_round_id(meta['round'], path)
    paths = optional('paths_json')
    if paths is not None:
        paths = json.loads(paths.tobytes().decode('utf-8'))
        if not (isinstance(paths, list) and all(isinstance(p, str)
                                                for p in paths)):
            raise RoundFileError(f'{path}: paths_json is not a list of '
                                 'paths')
    data_root = meta.get('data_root')
    if not (data_root is None or isinstance(data_root, str)):
        raise RoundFileError(f'{path}: data_root {data_root!r} is not a '
                             'path')
    record = ClusterRound(
        path=path, version=FORMAT_VERSION, round_id=round_id,
        sources=sources, epoch=meta['epoch'], variant=meta['variant'],
        config=meta['config'],
        paths=paths, data_root=data_root,
        gt_labels=optional('gt_labels'), classes=meta['classes'],
        windows=windows, metrics=meta['metrics'],
        agreement=meta['agreement'])
    record.missing = [name for name, absent in (
        ('paths', paths is None), ('labels', record.gt_labels is None),
        ('windows', windows is None)) if absent]
    return record


def load_round(path):
    """Read a round file of any format version -> ``ClusterRound``.

    Raises ``RoundFileError`` for a file that is not a round file or was
    written by a newer version of this code.
    """
    arrays = _open_arrays(path)
    if 'format_version' not in arrays:
        if not any(f'{s}_labels' in arrays for s in SOURCES):
            raise RoundFileError(f'{path}: no cluster labels in it; not a '
                                 'round file')
        return _load_v1(path, arrays)
    version = int(arrays['format_version'])
    if version > FORMAT_VERSION:
        raise RoundFileError(f'{path}: format {version} is newer than this '
                             f'code reads ({FORMAT_VERSION}); update '
                             'xdc_plugin')
    try:
        return _load_v2(path, arrays, json.loads(str(arrays['meta'])))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise RoundFileError(f'{path}: incomplete round file (no {e})') from e
