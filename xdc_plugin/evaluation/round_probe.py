"""The per-round probe of pretraining: how linearly separable (and how
kNN-separable) the manifest's labels are in the features the clustering
hook has just extracted. No re-extraction; the hook logs the scalars.

It is an estimate, sized to be cheap beside a clustering round: at most
``max_samples`` labelled rows (a seeded random subset), ``folds``-fold
(fewer when the smallest class is smaller), a short ``C`` grid. Labels it
cannot use (none, one class, classes of a single sample) give no scalars
and a warning: the probe never stops training.
"""
import logging
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from xdc_plugin.evaluation.protocols import (LabelError, knn_probe,
                                             labelled_rows, linear_probe,
                                             stratified_splits)

logger = logging.getLogger(__name__)

PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0)
MAX_SAMPLES = 5000


def probe_round(features: Mapping[str, object], labels,
                seen: Optional[np.ndarray] = None, folds: int = 5,
                protocols: Sequence[str] = ('linear', 'knn'),
                max_samples: int = MAX_SAMPLES, cs: Sequence[float] = PROBE_CS,
                seed: int = 0) -> Dict[str, float]:
    """Mean k-fold scores per modality: ``{'<modality>_linear_top1': ...,
    '<modality>_knn_top1': ...}`` (0-1).

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
        return {}
    rng = np.random.default_rng(seed)
    if len(keep) > max_samples:
        keep = np.sort(rng.choice(keep, max_samples, replace=False))
    kept_labels = labels[keep]
    smallest = np.unique(kept_labels, return_counts=True)[1].min()
    if min(folds, smallest) < 2:
        logger.warning('per-round probe skipped: a class has a single '
                       'labelled sample')
        return {}
    splits = stratified_splits(kept_labels, min(folds, int(smallest)), seed)
    scalars = {}
    for modality, matrix in features.items():
        matrix = np.asarray(matrix)[keep]
        if 'linear' in protocols:
            scalars[f'{modality}_linear_top1'] = float(np.mean(linear_probe(
                matrix, kept_labels, splits, cs=cs, seed=seed)['top1']))
        if 'knn' in protocols:
            scalars[f'{modality}_knn_top1'] = float(np.mean(knn_probe(
                matrix, kept_labels, splits, ks=(1,), recall_ks=())[
                    'knn@1']))
    return scalars
