"""The per-round probe of pretraining: how linearly separable (and how
kNN-separable) the manifest's labels are in the features the clustering
hook has just extracted. No re-extraction; the hook logs the scalars.

It is an estimate, sized to be cheap beside a clustering round: at most
``max_samples`` labelled rows (a seeded random subset), ``folds``-fold
(fewer when the smallest class is smaller), a short ``C`` grid. Labels it
cannot use (none, one class, classes of a single sample) give no scalars
and a warning: the probe never stops training.

The work is a list of independent jobs, one per (protocol, modality,
fold) (``probe_jobs``), so that several ranks can share it
(``engine.round.round_probe_sample``); each scalar is the mean of its jobs'
scores, in job order, whoever ran them.
"""
import functools
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from xdc_plugin.probe.protocols import (LabelError, knn_probe, labelled_rows,
                                        linear_probe, stratified_splits)

logger = logging.getLogger(__name__)

PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0)
MAX_SAMPLES = 5000


def probe_round(features: Mapping[str, object], labels,
                **kwargs) -> Dict[str, float]:
    """Mean k-fold scores per modality: ``{'<modality>_linear_top1': ...,
    '<modality>_knn_top1': ...}`` (0-1); every job of ``probe_jobs``
    (same arguments) run here."""
    jobs = probe_jobs(features, labels, **kwargs)
    return mean_scores([(name, job()) for name, job in jobs])


def probe_jobs(features: Mapping[str, object], labels,
               seen: Optional[np.ndarray] = None, folds: int = 5,
               protocols: Sequence[str] = ('linear', 'knn'),
               max_samples: int = MAX_SAMPLES,
               cs: Sequence[float] = PROBE_CS,
               seed: int = 0) -> List[Tuple[str, object]]:
    """The probe as ``(scalar name, job)`` pairs, ``job()`` giving the top-1
    of one fold (0-1); the linear jobs (the costly ones) first. Empty, with
    a warning, when the labels cannot be probed.

    Args:
        features: modality -> ``(N, D)`` array or CPU tensor, row i = dataset
            index i.
        labels: ``(N,)`` ints, -1 unknown (the manifest's labels).
        seen: ``(N,)`` bool, rows that were extracted (others are ignored).
    """
    labels = np.asarray(labels, np.int64).copy()
    if seen is not None:
        labels[~np.asarray(seen, bool)] = -1
    try:
        keep = np.flatnonzero(labelled_rows(labels))
    except LabelError as exc:
        logger.warning('per-round probe skipped: %s', exc)
        return []
    rng = np.random.default_rng(seed)
    if len(keep) > max_samples:
        keep = np.sort(rng.choice(keep, max_samples, replace=False))
    kept_labels = labels[keep]
    smallest = np.unique(kept_labels, return_counts=True)[1].min()
    if min(folds, smallest) < 2:
        logger.warning('per-round probe skipped: a class has a single '
                       'labelled sample')
        return []
    splits = stratified_splits(kept_labels, min(folds, int(smallest)), seed)
    matrices = {m: np.asarray(x)[keep] for m, x in features.items()}
    fold_scores = dict(linear=functools.partial(_linear_fold, cs=cs,
                                                seed=seed),
                       knn=_knn_fold)
    return [(f'{modality}_{protocol}_top1',
             functools.partial(fold_scores[protocol], matrix, kept_labels,
                               split))
            for protocol in ('linear', 'knn') if protocol in protocols
            for modality, matrix in matrices.items() for split in splits]


def _linear_fold(matrix, labels, split, cs, seed):
    return linear_probe(matrix, labels, [split], cs=cs, seed=seed)['top1'][0]


def _knn_fold(matrix, labels, split):
    return knn_probe(matrix, labels, [split], ks=(1, ),
                     recall_ks=())['knn@1'][0]


def mean_scores(scored):
    """``{name: mean score}`` of ``(name, score)`` pairs (in their
    order)."""
    scores = {}
    for name, score in scored:
        scores.setdefault(name, []).append(score)
    return {name: float(np.mean(values)) for name, values in scores.items()}
