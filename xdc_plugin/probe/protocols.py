"""Frozen-feature protocols on arrays: a linear classifier and cosine kNN,
over stratified k-fold, predefined folds or a train/test split.

Pure numpy / scikit-learn (no torch): the clustering hook's per-round probe
calls these too.

* ``linear``: per split, features standardised and a multinomial logistic
  regression whose inverse regularisation ``C`` is chosen by a stratified
  inner cross-validation on the training part only (scaler and classifier
  are refitted inside every inner fold, so nothing of the held-out part, nor
  of the inner validation part, leaks into the choice). Metric ``top1``.
* ``knn``: rows L2-normalised, each test row's nearest training rows by
  cosine similarity. ``knn@k``: majority vote of the k nearest (ties go to
  the class with the larger summed similarity); ``recall@k``: the fraction
  of test rows with at least one same-label item among their k nearest
  training rows (the retrieval protocol of the video SSL literature). Only
  for k below the size of every training part: with k at or above it the
  "neighbours" are the whole training part (recall@k is then 1 for every
  class it holds), so such a k is left out, with a warning.

Rows labelled -1 (unknown) are left out and counted. Each protocol returns
``{metric: [score per split]}``; :func:`evaluate_features` turns them into
result records.
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from xdc_plugin.probe.records import make_record

logger = logging.getLogger(__name__)

PROTOCOLS = ('linear', 'knn')
#: Inverse regularisation strengths tried by the inner cross-validation.
DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
KNN_KS = (1, 10)
RECALL_KS = (1, 5, 10)
INNER_FOLDS = 3
Split = Tuple[np.ndarray, np.ndarray]


class LabelError(ValueError):
    """Labels that no protocol can be run on."""


def labelled_rows(labels) -> np.ndarray:
    """Boolean mask of the rows with a label (>= 0); checks that at least
    two classes are present."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise LabelError('labels must be a 1-D integer array (-1 = unknown), '
                         f'got {labels.dtype} {labels.shape}')
    mask = labels >= 0
    classes = np.unique(labels[mask])
    if len(classes) < 2:
        raise LabelError(
            f'{mask.sum()} labelled rows ({(~mask).sum()} unlabelled) hold '
            f'{len(classes)} class(es); classification needs at least 2. '
            'Is the label column the right one?')
    return mask


def _min_class_count(labels: np.ndarray) -> Tuple[int, int]:
    classes, counts = np.unique(labels, return_counts=True)
    return int(classes[counts.argmin()]), int(counts.min())


def stratified_splits(labels, folds: int = 5, seed: int = 0) -> List[Split]:
    """Stratified ``folds``-fold splits of labelled rows (all >= 0)."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f'folds must be >= 2, got {folds}')
    cls, count = _min_class_count(labels)
    if count < folds:
        raise LabelError(
            f'class {cls} has {count} labelled sample(s), fewer than the '
            f'{folds} folds: use fewer folds (--folds {max(count, 2)}), give '
            'a train/test split, or drop that class from the manifest.')
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def predefined_splits(fold_ids) -> List[Split]:
    """One split per fold id, that fold held out (ESC-50's 5 folds)."""
    fold_ids = np.asarray(fold_ids)
    everything = np.arange(len(fold_ids))
    return [(everything[fold_ids != f], everything[fold_ids == f])
            for f in np.unique(fold_ids)]


def train_test_split(is_test) -> List[Split]:
    """The single split of a given train/test partition."""
    is_test = np.asarray(is_test, bool)
    if is_test.all() or not is_test.any():
        raise LabelError('a train/test split needs labelled rows on both '
                         f'sides; got {int((~is_test).sum())} train and '
                         f'{int(is_test.sum())} test')
    everything = np.arange(len(is_test))
    return [(everything[~is_test], everything[is_test])]


def _check_split(labels, train, test):
    if len(np.unique(labels[train])) < 2:
        raise LabelError('a training part holds a single class')
    unseen = np.setdiff1d(labels[test], labels[train])
    if len(unseen):
        logger.warning('test classes %s have no training sample; their '
                       'rows count as errors', unseen.tolist())


def linear_probe(features, labels, splits: Sequence[Split],
                 cs: Sequence[float] = DEFAULT_CS, seed: int = 0,
                 n_jobs: Optional[int] = None) -> Dict[str, list]:
    """Top-1 accuracy of the linear classifier on each split's test part,
    and the ``C`` the inner cross-validation chose (``{'top1': [...],
    'C': [...]}``)."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    # One BLAS thread per fit: on probe-sized problems a threaded BLAS is
    # several times slower (7x measured on 240 x 32 with 2 cores); run
    # the fits in parallel with n_jobs instead.
    with threadpool_limits(1):
        return _linear_probe(features, labels, splits, cs, seed, n_jobs)


def _linear_probe(features, labels, splits, cs, seed, n_jobs):
    scores, chosen = [], []
    for train, test in splits:
        _check_split(labels, train, test)
        model = make_pipeline(StandardScaler(),
                              LogisticRegression(max_iter=1000))
        _, smallest = _min_class_count(labels[train])
        inner = min(INNER_FOLDS, smallest)
        if inner >= 2 and len(cs) > 1:
            model = GridSearchCV(
                model, {'logisticregression__C': list(cs)},
                cv=StratifiedKFold(inner, shuffle=True, random_state=seed),
                n_jobs=n_jobs)
        else:  # too few samples per class to validate: the middle C
            logger.warning('a training part has a class with %d sample(s): '
                           'no inner cross-validation, C=%g', smallest,
                           cs[len(cs) // 2])
            model.set_params(logisticregression__C=cs[len(cs) // 2])
        model.fit(features[train], labels[train])
        scores.append(float((model.predict(features[test]) ==
                             labels[test]).mean()))
        best = (model.best_params_['logisticregression__C']
                if isinstance(model, GridSearchCV)
                else model.get_params()['logisticregression__C'])
        chosen.append(float(best))
    return {'top1': scores, 'C': chosen}


def _normalised(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_probe(features, labels, splits: Sequence[Split],
              ks: Sequence[int] = KNN_KS,
              recall_ks: Sequence[int] = RECALL_KS) -> Dict[str, list]:
    """``knn@k`` accuracy and ``recall@k`` retrieval per split (cosine
    similarity of test rows to training rows), for the ``k`` below the
    smallest training part (the others are left out with a warning)."""
    ks, recall_ks = _ks_below_training_size(ks, recall_ks, splits)
    features = _normalised(features)
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    out = {f'knn@{k}': [] for k in ks}
    out.update({f'recall@{k}': [] for k in recall_ks})
    for train, test in splits:
        _check_split(labels, train, test)
        similarity = features[test] @ features[train].T
        # Training rows by decreasing similarity (stable: ties keep order).
        order = np.argsort(-similarity, axis=1, kind='stable')
        neighbour_labels = labels[train][order]
        truth = labels[test][:, None]
        rows = np.arange(len(test))[:, None]
        for k in ks:
            votes = np.zeros((len(test), num_classes))
            np.add.at(votes, (rows, neighbour_labels[:, :k]), 1.0)
            tie_break = np.zeros_like(votes)
            np.add.at(tie_break, (rows, neighbour_labels[:, :k]),
                      np.take_along_axis(similarity, order[:, :k], 1))
            # Similarities are in [-1, 1]: k * 4 keeps the count dominant.
            predicted = (votes * 4 * k + tie_break).argmax(1)
            out[f'knn@{k}'].append(float((predicted == truth[:, 0]).mean()))
        for k in recall_ks:
            hit = (neighbour_labels[:, :k] == truth).any(1)
            out[f'recall@{k}'].append(float(hit.mean()))
    return out


def _ks_below_training_size(ks, recall_ks, splits):
    """``ks`` and ``recall_ks`` less every k that is not below the size of
    the smallest training part (warned about)."""
    smallest = min(len(train) for train, _ in splits)
    dropped = [f'{name}@{k}' for name, values in (('knn', ks),
                                                  ('recall', recall_ks))
               for k in values if k >= smallest]
    if dropped:
        logger.warning('%s left out: a training part has %d rows, and k '
                       'must be below that (else the neighbours are the '
                       'whole training part)', ', '.join(dropped), smallest)
    return ([k for k in ks if k < smallest],
            [k for k in recall_ks if k < smallest])


def evaluate_features(features: Dict[str, np.ndarray], labels,
                      protocols: Sequence[str] = PROTOCOLS, *,
                      folds: int = 5, fold_ids=None, is_test=None,
                      seed: int = 0, encoder: str = '',
                      **protocol_options) -> List[dict]:
    """Result records of every protocol on every modality's features.

    Splits: ``is_test`` (a given train/test partition), else ``fold_ids``
    (predefined folds, each held out in turn), else stratified ``folds``-
    fold. Rows labelled -1 are left out (``num_unlabelled`` in the
    records). ``protocol_options`` go to the protocol that takes them
    (``cs``, ``n_jobs``: linear; ``ks``, ``recall_ks``: knn).
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f'unknown protocol(s) {unknown}; choose from '
                         f'{PROTOCOLS}')
    labels = np.asarray(labels)
    keep = labelled_rows(labels)
    kept_labels = labels[keep]
    if is_test is not None:
        splits = train_test_split(np.asarray(is_test, bool)[keep])
    elif fold_ids is not None:
        splits = predefined_splits(np.asarray(fold_ids)[keep])
    else:
        splits = stratified_splits(kept_labels, folds, seed)
    runners = {
        'linear': lambda x: linear_probe(x, kept_labels, splits, seed=seed,
                                         **_options(protocol_options,
                                                    ('cs', 'n_jobs'))),
        'knn': lambda x: knn_probe(x, kept_labels, splits,
                                   **_options(protocol_options,
                                              ('ks', 'recall_ks'))),
    }
    common = dict(encoder=encoder, num_samples=int(keep.sum()),
                  num_unlabelled=int((~keep).sum()),
                  num_classes=int(len(np.unique(kept_labels))))
    records = []
    for protocol in protocols:
        for modality, matrix in features.items():
            scores = runners[protocol](np.asarray(matrix)[keep])
            extra = {'C': scores.pop('C')} if 'C' in scores else {}
            for metric, per_split in scores.items():
                records.append(make_record(protocol, modality, metric,
                                           per_split, **common, **extra))
    return records


def _options(options, names):
    return {k: v for k, v in options.items() if k in names}
