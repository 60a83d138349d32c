"""The per-round cluster file ``work_dir/clusters/round_<r>.npz``.

The only code that writes or reads it (``round_dataset.py`` gathers what
it records of the dataset). A round records, for every clustering source
(``video``, ``audio``, ``joint``): each clip's cluster and its distance to
that cluster's centre in the space k-means ran in, the centroids and the
preprocessing state of that space, per-cluster size and, when the dataset
has labels, purity, majority label and label counts. Beside them: the
dataset's file paths and root folder, labels and class names, the time
window each clip was cut at for feature extraction, the round's id, epoch,
variant and quality metrics. Everything is a plain array or a JSON string,
so the files load with ``allow_pickle=False``.

Format 3 is written by every rank: rank r of W writes the part file
``round_<r>.part-<r>-of-<W>.npz`` with what the round records of the clips
``[N r / W, N (r + 1) / W)``, so no rank touches the other ranks' clips
(the time is that of N / W clips); once every part is written, rank 0
writes ``round_<r>.npz`` itself: the round's id, metrics, centroids and
state, and the number of parts. A round is listed once that file exists.
Per-cluster label statistics are computed when the round is loaded.

Format 2 (one file written by rank 0, with the label statistics) and
format 1 (before per-clip distances were saved: only ``<source>_labels``
and ``<source>_centroids``) still load, format 1 with
``ClusterRound.missing`` naming what it lacks.
"""
import hashlib
import io
import json
import os.path as osp
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from mmengine import fileio

from xdc_plugin import SOURCES
from xdc_plugin.clustering.collectives import LOCAL
from xdc_plugin.clustering.preprocess import FeaturePreprocessor
from xdc_plugin.clustering.round_dataset import (ClipWindows, clip_arrays,
                                                 cluster_label_stats,
                                                 dataset_meta)

FORMAT_VERSION = 3
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
    labels: np.ndarray                      # (N,) int32, -1: not extracted
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
    gt_labels: Optional[np.ndarray] = None  # (N,) int, -1: unlabelled
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
def part_path(path, part, num_parts):
    """The file of part ``part`` (of ``num_parts``) of the round file
    ``path``: ``round_<r>.part-<part>-of-<num_parts>.npz``."""
    stem, ext = osp.splitext(path)
    return f'{stem}.part-{part:05d}-of-{num_parts:05d}{ext}'


def part_bounds(num_clips, num_parts):
    """Clip ``i`` belongs to part ``p`` when ``bounds[p] <= i <
    bounds[p + 1]``: contiguous ranges, sizes within one of each other."""
    return [num_clips * p // num_parts for p in range(num_parts + 1)]


def _write_npz(arrays, path, backend_args, compress=True):
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    fileio.put(buffer.getvalue(), path, backend_args=backend_args)


def _checked_results(results):
    """The number of clips of ``results`` after checking its sources and
    the shapes of its labels and distances."""
    sizes = set()
    for source, result in results.items():
        if source not in SOURCES:
            raise ValueError(f'unknown clustering source {source!r}')
        if np.shape(result.distances) != np.shape(result.labels):
            raise ValueError(f'{source}: {np.size(result.distances)} '
                             f'distances for {np.size(result.labels)} labels')
        sizes.add(len(result.labels))
    if len(sizes) != 1:
        raise ValueError(f'the sources cluster different numbers of clips: '
                         f'{sorted(sizes)}')
    return sizes.pop()


def _write_id(round_id, epoch, results):
    """The same string on every rank for the same round (the results are
    identical everywhere) and another for another fit: ties the parts to
    their index file, so that a part left by an earlier write of the same
    round is never read as this one's."""
    digest = hashlib.sha1(f'{round_id}/{epoch}'.encode())
    for source, result in results.items():
        digest.update(source.encode())
        digest.update(np.ascontiguousarray(result.centroids).tobytes())
    return digest.hexdigest()


def _part_arrays(results, dataset, start, stop, write_id):
    arrays = {} if dataset is None else clip_arrays(dataset, start, stop)
    for source, result in results.items():
        arrays[f'{source}_labels'] = np.asarray(result.labels[start:stop],
                                                np.int32)
        arrays[f'{source}_distances'] = np.asarray(
            result.distances[start:stop], np.float32)
    arrays.update(format_version=np.array(FORMAT_VERSION),
                  rows=np.array([start, stop]), write_id=np.array(write_id))
    return arrays


def _index_arrays(round_id, epoch, results, dataset, num_clips, num_parts,
                  write_id, run):
    meta = {} if dataset is None else dataset_meta(dataset)
    meta.update(run, round=round_id, epoch=int(epoch), sources=list(results),
                preprocess={}, num_clips=num_clips, num_parts=num_parts,
                write_id=write_id)
    arrays = {}
    for source, result in results.items():
        arrays[f'{source}_centroids'] = result.centroids
        arrays[f'{source}_counts'] = result.counts
        if result.preprocess is not None:
            state = dict(result.preprocess)
            for name in FeaturePreprocessor.STATE_ARRAYS:
                value = state.pop(name)
                if value is not None:
                    arrays[f'{source}_pca_{name}'] = value
            meta['preprocess'][source] = state
    arrays.update(format_version=np.array(FORMAT_VERSION),
                  meta=np.array(json.dumps(meta)))
    return arrays


def save_round(path, round_id, epoch, results, dataset=None, variant=None,
               config=None, metrics=None, agreement=None, backend_args=None,
               collectives=LOCAL):
    """Write a round at ``path`` (through mmengine's file backends); with
    several ranks, every rank calls it with the same arguments.

    Rank r of W writes part r (the clips ``[N r / W, N (r + 1) / W)``);
    when every rank has written its part, rank 0 writes ``path``. A rank
    whose part could not be written raises its error, and every other rank
    a ``RoundFileError`` (no rank is left waiting in a collective).

    Args:
        results: ``{source: ClusterResult}`` with labels and distances over
            the whole dataset, identical on every rank (-1 for clips not
            extracted, whose distance is NaN).
        dataset: the extraction dataset (paths, labels, classes and clip
            windows are read from it), or None.
        metrics: ``{source: {'nmi', 'ari', 'purity'}}`` against the labels.
        agreement: cross-modal agreement (``{'xmodal_nmi': float}``).
        backend_args: mmengine file backend arguments (the hook passes an
            atomic local backend).
        collectives: the ranks' collectives (``LOCAL``: one process writes
            a single part).
    """
    _checked_round_id(round_id, path)
    rank, num_parts = collectives.rank, collectives.world_size
    error = None
    try:
        num_clips = _checked_results(results)
        write_id = _write_id(round_id, epoch, results)
        bounds = part_bounds(num_clips, num_parts)
        _write_npz(_part_arrays(results, dataset, bounds[rank],
                                bounds[rank + 1], write_id),
                   part_path(path, rank, num_parts), backend_args)
    except Exception as exc:  # re-raised below, once every rank knows
        error = exc
    failed = int(collectives.all_reduce_sum(
        torch.tensor(int(error is not None))))
    if error is not None:
        raise error
    if failed:
        raise RoundFileError(f'{path}: {failed} other rank(s) could not write '
                             'their part of the round (see their error)')
    if rank == 0:  # uncompressed: centroids (K x D floats) barely compress
        run = dict(variant=variant, config=config, metrics=metrics or {},
                   agreement=agreement or {})
        _write_npz(_index_arrays(round_id, epoch, results, dataset,
                                 num_clips, num_parts, write_id, run),
                   path, backend_args, compress=False)


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
            labels = arrays[f'{source}_labels'].astype(np.int32)
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


def _decoded_paths(paths_json, path):
    paths = json.loads(paths_json.tobytes().decode('utf-8'))
    if not (isinstance(paths, list) and all(isinstance(p, str)
                                            for p in paths)):
        raise RoundFileError(f'{path}: paths_json is not a list of paths')
    return paths


def _record(path, version, arrays, meta, paths):
    """The ``ClusterRound`` of a format-2 file or a joined format-3 round
    (``arrays``: every array of the round; ``paths``: the file paths or
    None)."""
    def optional(key):
        return arrays.get(key)

    round_id = _checked_round_id(meta['round'], path)
    sources = {}
    for source in meta['sources']:
        state = meta['preprocess'].get(source)
        if state is not None:
            state = dict(state, **{
                name: optional(f'{source}_pca_{name}')
                for name in FeaturePreprocessor.STATE_ARRAYS})
        sources[source] = SourceClusters(
            labels=arrays[f'{source}_labels'].astype(np.int32, copy=False),
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
    data_root = meta.get('data_root')
    if not (data_root is None or isinstance(data_root, str)):
        raise RoundFileError(f'{path}: data_root {data_root!r} is not a '
                             'path')
    record = ClusterRound(
        path=path, version=version, round_id=round_id, sources=sources,
        epoch=meta['epoch'], variant=meta['variant'], config=meta['config'],
        paths=paths, data_root=data_root, gt_labels=optional('gt_labels'),
        classes=meta.get('classes'), windows=windows,
        metrics=meta['metrics'], agreement=meta['agreement'])
    record.missing = [name for name, absent in (
        ('paths', paths is None), ('labels', record.gt_labels is None),
        ('windows', windows is None)) if absent]
    return record


def _load_v2(path, arrays, meta):
    paths = arrays.get('paths_json')
    return _record(path, 2, arrays, meta,
                   None if paths is None else _decoded_paths(paths, path))


def _read_parts(path, meta):
    """The part files of a format-3 round, checked against its index."""
    num_parts = meta['num_parts']
    bounds = part_bounds(meta['num_clips'], num_parts)
    parts = []
    for p in range(num_parts):
        try:
            part = _open_arrays(part_path(path, p, num_parts))
        except RoundFileError as e:
            raise RoundFileError(f'{path}: incomplete round: part {p} of '
                                 f'{num_parts} is missing or unreadable '
                                 f'({e})') from e
        if (str(part.get('write_id')) != meta['write_id'] or
                part['rows'].tolist() != bounds[p:p + 2]):
            raise RoundFileError(
                f'{path}: part {p} of {num_parts} belongs to another write '
                'of this round (a run stopped while writing it again?)')
        parts.append(part)
    return parts


def _load_v3(path, arrays, meta):
    parts = _read_parts(path, meta)
    per_clip = set(parts[0]) - {'format_version', 'rows', 'write_id',
                                'paths_json'}
    arrays = dict(arrays, **{key: np.concatenate([p[key] for p in parts])
                             for key in per_clip})
    paths = None
    if 'paths_json' in parts[0]:
        paths = [clip for p in parts
                 for clip in _decoded_paths(p['paths_json'], path)]
    gt_labels = arrays.get('gt_labels')
    if gt_labels is not None and (gt_labels >= 0).any():
        for source in meta['sources']:
            stats = cluster_label_stats(
                arrays[f'{source}_labels'], gt_labels,
                len(arrays[f'{source}_centroids']))
            arrays.update(zip((f'{source}_label_counts', f'{source}_purity',
                               f'{source}_majority'), stats))
    return _record(path, 3, arrays, meta, paths)


def load_round(path):
    """Read a round of any format version -> ``ClusterRound`` (format 3:
    its index file ``path`` and its parts).

    Raises ``RoundFileError`` for a file that is not a round file, a round
    whose parts are missing or from another write, or a file written by a
    newer version of this code.
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
    load = _load_v2 if version == 2 else _load_v3
    try:
        return load(path, arrays, json.loads(str(arrays['meta'])))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise RoundFileError(f'{path}: incomplete round file (no {e})') from e
