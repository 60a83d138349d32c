"""Expected time of a run's epochs and clustering rounds, from throughputs
that are measured (``tools/gpu_check.py``'s JSON, or given on the command
line) or estimated (the config's ``throughput_estimate``: FLOPs counted on
the model at an assumed MFU). Every rate carries the text of its origin, so
that a printed time says whether it was measured, on what, or guessed.

The model assumes data loading keeps up unless a loader rate is given
(``bench/bench_data_pipeline.py`` measures one; it then caps training and
extraction), scales k-means linearly in rows x dimension x k and shards it
ideally (all-reduce time not counted). Rates measured on one kind of device
(``gpu_check`` on a GPU, or ``--cpu``) estimate a run on that kind only,
since the round's k-means runs where the encoders run.
"""
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from torch import nn

from xdc_plugin.models.flops import TRAIN_FORWARDS, forward_flops


@dataclass
class Rate:
    """A throughput (``unit`` per second per rank) and where it comes
    from."""
    value: float
    origin: str
    unit: str = 'clips'

    def __str__(self) -> str:
        # a CPU's k-means rate is a small fraction of a TFLOP/s
        value = (f'{self.value:,.0f}' if self.value >= 10 else
                 f'{self.value:.3g}')
        return f'{value} {self.unit}/s/rank ({self.origin})'


@dataclass
class Rates:
    train: Optional[Rate] = None
    extract: Optional[Rate] = None
    kmeans: Optional[Rate] = None  # effective TFLOP/s of k-means' distances
    data: Optional[Rate] = None  # the data loader's clips/s, when known
    notes: List[str] = field(default_factory=list)


def kmeans_flops(num_points: int, dim: int, num_clusters: int,
                 num_iters: int, max_points_per_centroid: Optional[int] = None,
                 num_redo: int = 1) -> int:
    """FLOPs of the distances of one fit: ``num_redo`` runs of ``num_iters``
    passes over the training rows (``k * max_points_per_centroid`` at most)
    and a final one over every row, 2 FLOPs per row x dim x cluster."""
    train_rows = num_points if max_points_per_centroid is None else min(
        num_points, num_clusters * max_points_per_centroid)
    return 2 * dim * num_clusters * (num_redo * num_iters * train_rows +
                                     num_points)


def _step_row(rows, audio_frames):
    """The measured step at ``audio_frames`` (else the first, with a
    note)."""
    for row in rows:
        if row['audio_shape'][-1] == audio_frames:
            return row, None
    return rows[0], (f'no step measured at {audio_frames} audio frames; '
                     f"used {rows[0]['audio_shape'][-1]}")


def rates_from_gpu_check(path: str, audio_frames: int,
                         run_device: Optional[str] = None) -> Rates:
    """Rates measured by ``tools/gpu_check.py`` (its ``--out`` JSON): the
    step at the config's audio size, the k-means of ``DistributedKMeans``
    (else ``TorchKMeans``, ``FaissKMeans``) as effective TFLOP/s over the
    iterations it ran. ``ValueError`` when ``run_device`` ('cuda' or 'cpu')
    is not the kind of device they were measured on."""
    with open(path) as f:
        report = json.load(f)
    measured_on = report['environment']['device']
    kind = 'cpu' if measured_on == 'cpu' else 'cuda'
    if run_device not in (None, kind):
        raise ValueError(
            f'{path} was measured on {measured_on}, but the run trains and '
            f'clusters on {run_device}: measure that device (tools/'
            f'gpu_check.py{" --cpu" if run_device == "cpu" else ""} --out '
            'FILE) or pass --device')
    where = f'measured on {measured_on} ({path})'
    rates = Rates()
    if report.get('train_step'):
        step, note = _step_row(report['train_step'], audio_frames)
        rates.train = Rate(step['clips_per_s'], where)
        rates.extract = Rate(step['extract_clips_per_s'], where)
        rates.notes += [note] if note else []
    timed = {r['method']: r for r in report.get('kmeans', ())
             if 'seconds' in r}
    for method in ('DistributedKMeans', 'TorchKMeans', 'FaissKMeans'):
        if method in timed:
            m = timed[method]
            flops = kmeans_flops(m['num_points'], m['dim'],
                                 m['num_clusters'],
                                 m.get('iterations_run', m['num_iters']))
            rates.kmeans = Rate(flops / m['seconds'] / 1e12,
                                f'{where}, {method}', 'TFLOP')
            break
    return rates


def rates_from_estimate(estimate: Mapping[str, Any], model: nn.Module,
                        video_shape: Sequence[int],
                        audio_shape: Sequence[int]) -> Rates:
    """Rates from the config's ``throughput_estimate``: ``mfu`` of
    ``peak_tflops`` spent on the FLOPs counted on ``model`` (training: 3
    forwards; extraction: 1), k-means at ``kmeans_tflops``; all labelled
    with its ``label``."""
    missing = {'label', 'peak_tflops', 'mfu', 'kmeans_tflops'} - set(
        estimate)
    if missing:
        raise ValueError(f'throughput_estimate lacks {sorted(missing)}')
    flops = forward_flops(model, video_shape, audio_shape)['total']
    budget = estimate['mfu'] * estimate['peak_tflops'] * 1e12
    origin = f"estimate: {estimate['label']}"
    return Rates(train=Rate(budget / (TRAIN_FORWARDS * flops), origin),
                 extract=Rate(budget / flops, origin),
                 kmeans=Rate(estimate['kmeans_tflops'], origin, 'TFLOP'))


def merge_rates(*sources: Rates) -> Rates:
    """The first rate each source gives, in order (command line first)."""
    merged = Rates()
    for rates in sources:
        for name in ('train', 'extract', 'kmeans', 'data'):
            if getattr(merged, name) is None:
                setattr(merged, name, getattr(rates, name))
        merged.notes += rates.notes
    return merged


def duration(seconds: float) -> str:
    """``'12.3 s'``, ``'4.56 h'`` or ``'7.8 days'``."""
    if seconds < 360:
        return f'{seconds:,.1f} s'
    if seconds < 72 * 3600:
        return f'{seconds / 3600:,.2f} h'
    return f'{seconds / 86400:,.1f} days'


def clustering_rounds(epochs: int, interval: int) -> int:
    """Rounds that refresh the pseudo-labels: one at every ``interval``-th
    epoch from epoch 0 (the final report's round not counted)."""
    return math.ceil(epochs / interval)


def run_times(num_clips: int, world_size: int, epochs: int, interval: int,
              sources: Mapping[str, Mapping[str, Any]], rates: Rates,
              final_round: bool = True) -> Dict[str, float]:
    """Seconds of an epoch, a round's extraction and k-means (on rank 0
    and sharded), its clustering (extraction + k-means), a round (the
    epochs it trains and its clustering) and the whole run, where the
    rates allow; the keys it cannot estimate are absent.

    Args:
        sources: per clustering source, a dict with ``dim``,
            ``num_clusters``, ``num_iters``, ``max_points_per_centroid``
            and optionally ``num_redo``.
    """
    times = {}
    train = rates.train and rates.train.value
    extract = rates.extract and rates.extract.value
    if rates.data:
        train = train and min(train, rates.data.value)
        extract = extract and min(extract, rates.data.value)
    if train:
        times['epoch'] = num_clips / (train * world_size)
    if extract:
        times['extract'] = num_clips / (extract * world_size)
    if rates.kmeans:
        flops = sum(kmeans_flops(num_clips, s['dim'], s['num_clusters'],
                                 s['num_iters'],
                                 s.get('max_points_per_centroid'),
                                 s.get('num_redo', 1))
                    for s in sources.values())
        times['kmeans on rank 0'] = flops / (rates.kmeans.value * 1e12)
        times['kmeans sharded'] = times['kmeans on rank 0'] / world_size
    if {'epoch', 'extract', 'kmeans sharded'} <= set(times):
        rounds = clustering_rounds(epochs, interval) + int(final_round)
        for path in ('on rank 0', 'sharded'):
            clustering = times['extract'] + times[f'kmeans {path}']
            times[f'clustering ({path})'] = clustering
            times[f'round ({path})'] = interval * times['epoch'] + clustering
            times[f'run ({path})'] = epochs * times['epoch'] + \
                rounds * clustering
    return times
