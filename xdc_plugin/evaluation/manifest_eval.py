"""Frozen-feature evaluation of an ENCODER on labelled manifests: what
``tools/evaluate.py`` runs.

One manifest: stratified k-fold over its labelled files. Two manifests
(train, test): the given split. Labels are checked before any feature is
extracted (a missing column, a single class or too few files per class for
the folds fail at once, not after the extraction).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from xdc_plugin import MODALITIES
from xdc_plugin.evaluation.encoder_sources import Encoders, load_encoders
from xdc_plugin.evaluation.eval_data import build_eval_dataset
from xdc_plugin.evaluation.features import (DEFAULT_NUM_CLIPS, FileFeatures,
                                            extract_file_features)
from xdc_plugin.probe.protocols import (PROTOCOLS, evaluate_features,
                                        labelled_rows, stratified_splits)


def manifest_features(encoders: Encoders, manifest: str,
                      label_column: Optional[str], *,
                      num_clips: int = DEFAULT_NUM_CLIPS,
                      check_labels: bool = True,
                      folds: Optional[int] = None, data_root: str = '',
                      classes=None, check_cache=True, batch_size: int = 4,
                      num_workers: int = 0, device: str = 'cpu',
                      progress: bool = True
                      ) -> Tuple[FileFeatures, Optional[tuple]]:
    """Per-file features of every loaded encoder on ``manifest``, and the
    class names of its string labels (None for integer labels).
    ``check_labels``: check first that the labels hold two classes or more
    (and, with ``folds``, enough files per class for ``folds``-fold)."""
    dataset = build_eval_dataset(manifest, label_column, encoders.settings,
                                 num_clips, encoders.modalities, data_root,
                                 classes=classes, check_cache=check_cache)
    labels = dataset.get_labels()
    if check_labels:
        keep = labelled_rows(labels)
        if folds is not None:
            stratified_splits(labels[keep], folds)
    features = extract_file_features(
        encoders, dataset, batch_size=batch_size, num_workers=num_workers,
        device=device, progress=progress, desc=manifest)
    return features, dataset.metainfo.get('classes')


def _relabel(labels: np.ndarray, names, union) -> np.ndarray:
    """Class indices of one manifest -> indices in the ``union`` list."""
    if names is None:
        return labels
    lut = np.array([union.index(n) for n in names] + [-1])
    return lut[labels]  # -1 stays -1 (the appended last entry)


def evaluate_manifest(encoder: str, label_column: str, *,
                      data: Optional[str] = None,
                      train_manifest: Optional[str] = None,
                      test_manifest: Optional[str] = None,
                      protocols: Sequence[str] = ('linear',),
                      modality: str = 'both', folds: int = 5, cfg=None,
                      trusted: bool = False,
                      input_overrides: Optional[Dict] = None,
                      num_clips: int = DEFAULT_NUM_CLIPS, seed: int = 0,
                      **extract_options) -> List[dict]:
    """Result records (see ``records.py``) of ``protocols`` on the frozen
    features of ``encoder`` (see ``encoder_sources.py``).

    Give ``data`` (k-fold) or both ``train_manifest`` and ``test_manifest``.
    ``input_overrides`` replace input settings (e.g. ``crop_size``);
    ``extract_options``: ``batch_size``, ``num_workers``, ``device``,
    ``progress``.
    """
    if (data is None) == (train_manifest is None or test_manifest is None):
        raise ValueError('give either data (k-fold) or both train_manifest '
                         'and test_manifest')
    if data is not None and (train_manifest or test_manifest):
        raise ValueError('data and train/test manifests exclude each other')
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f'unknown protocol(s) {unknown}; choose from '
                         f'{PROTOCOLS}')
    encoders = load_encoders(encoder, modality, cfg=cfg, trusted=trusted,
                             seed=seed)
    encoders.settings = encoders.settings.replace(**(input_overrides or {}))
    options = dict(num_clips=num_clips, **extract_options)
    if data is not None:
        result, _ = manifest_features(encoders, data, label_column,
                                      folds=folds, **options)
        labels, split = result.labels, dict(folds=folds)
    else:
        train, train_names = manifest_features(encoders, train_manifest,
                                               label_column, **options)
        # A test part may hold a single class; the training part may not.
        test, test_names = manifest_features(encoders, test_manifest,
                                             label_column, check_labels=False,
                                             **options)
        union = (sorted(set(train_names) | set(test_names))
                 if train_names and test_names else None)
        if (train_names is None) != (test_names is None):
            raise ValueError(f'{label_column!r} holds class names in one '
                             'manifest and integers in the other')
        labels = np.concatenate([_relabel(train.labels, train_names, union),
                                 _relabel(test.labels, test_names, union)])
        result = FileFeatures(
            features={m: np.concatenate([train.features[m],
                                         test.features[m]])
                      for m in encoders.modalities},
            labels=labels, indices=np.arange(len(labels)),
            paths=train.paths + test.paths,
            skipped=train.skipped + test.skipped)
        split = dict(is_test=np.r_[np.zeros(len(train.labels), bool),
                                   np.ones(len(test.labels), bool)])
    features = {m: result.features[m] for m in MODALITIES
                if m in result.features}
    records = evaluate_features(features, labels, protocols, seed=seed,
                                encoder=encoder, **split)
    for record in records:
        record['num_skipped'] = result.num_skipped
    return records
