"""Audio benchmarks on frozen audio-encoder features: ESC-50 and DCASE2014.

Features are the audio encoder's pooled output averaged over
``num_windows`` (10) windows of the encoder's ``audio_duration`` spread
uniformly over each recording; the classifier is the ``linear`` protocol
(standardised features, logistic regression, ``C`` by inner
cross-validation on the training part). Each benchmark reads the official
release as it unpacks:

``esc50`` (github.com/karolpiczak/ESC-50)
    ``<root>/meta/esc50.csv`` (columns ``filename, fold, target, category,
    esc10, src_file, take``) and ``<root>/audio/<filename>``: 2,000 5-s
    clips, 50 classes (``target`` 0-49). The 5 official folds are each held
    out in turn; the records hold the accuracy on every fold and the mean.

``dcase2014`` (the scene classification task of the IEEE AASP challenge
DCASE 2013, which AVTS, XDC and their peers call "DCASE2014")
    ``<root>/scenes_stereo/`` (the public development set,
    ``scenes_stereo.zip``: the training part) and
    ``<root>/scenes_stereo_testset/`` (the private evaluation set released
    afterwards, ``scenes_stereo_testset.zip``: the test part), each 100
    30-s stereo WAV files named ``<class><two digits>.wav``, 10 per class
    of 10 scenes; the files may sit in a nested folder of the same name.
    One train/test split: the records hold the test accuracy.

``run_audio_benchmark(name, encoder, data_root, **options)`` is what
``tools/benchmark.py esc50|dcase2014`` calls.
"""
import csv
import dataclasses
import glob
import os.path as osp
import tempfile
from typing import Callable, Dict, List, Optional

import numpy as np

from xdc_plugin.evaluation.encoder_sources import load_encoders
from xdc_plugin.evaluation.manifest_eval import manifest_features
from xdc_plugin.probe.protocols import evaluate_features

ESC50_COLUMNS = ('filename', 'fold', 'target', 'category', 'esc10',
                 'src_file', 'take')
DCASE2014_CLASSES = ('bus', 'busystreet', 'office', 'openairmarket', 'park',
                     'quietstreet', 'restaurant', 'supermarket', 'tube',
                     'tubestation')
DCASE2014_PARTS = (('scenes_stereo', False), ('scenes_stereo_testset', True))
DEFAULT_NUM_WINDOWS = 10


@dataclasses.dataclass
class BenchmarkFiles:
    """The files of a benchmark with their class index and their split:
    ``fold_ids`` (each fold held out in turn) or ``is_test``."""
    paths: List[str]
    labels: np.ndarray
    classes: tuple
    fold_ids: Optional[np.ndarray] = None
    is_test: Optional[np.ndarray] = None


def esc50_files(data_root: str) -> BenchmarkFiles:
    """ESC-50's clips, classes (``target``) and official folds."""
    meta = osp.join(data_root, 'meta', 'esc50.csv')
    if not osp.isfile(meta):
        raise FileNotFoundError(
            f'{data_root} is not the ESC-50 release: no meta/esc50.csv (the '
            'release has meta/esc50.csv and audio/*.wav)')
    with open(meta, newline='') as f:
        reader = csv.DictReader(f)
        missing = [c for c in ('filename', 'fold', 'target', 'category')
                   if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f'{meta} lacks the columns {missing} (ESC-50 '
                             f'has {", ".join(ESC50_COLUMNS)})')
        rows = list(reader)
    if not rows:
        raise ValueError(f'{meta} lists no clip')
    names = {int(r['target']): r['category'] for r in rows}
    return BenchmarkFiles(
        paths=[osp.join(data_root, 'audio', r['filename']) for r in rows],
        labels=np.array([int(r['target']) for r in rows], np.int64),
        classes=tuple(names.get(i, str(i)) for i in range(max(names) + 1)),
        fold_ids=np.array([int(r['fold']) for r in rows]))


def _scene_label(path: str) -> int:
    stem = osp.splitext(osp.basename(path))[0]
    name, number = stem[:-2], stem[-2:]
    if not number.isdigit() or name not in DCASE2014_CLASSES:
        raise ValueError(f'{path}: DCASE scene files are named '
                         f'<class><two digits>.wav with a class among '
                         f'{DCASE2014_CLASSES}')
    return DCASE2014_CLASSES.index(name)


def dcase2014_files(data_root: str) -> BenchmarkFiles:
    """DCASE2014 scenes: development set for training, evaluation set for
    testing (see the module docstring)."""
    paths, is_test = [], []
    for folder, test in DCASE2014_PARTS:
        found = sorted(glob.glob(osp.join(data_root, folder, '**', '*.wav'),
                                 recursive=True))
        if not found:
            raise FileNotFoundError(
                f'no {folder}/**/*.wav under {data_root}: unpack '
                f'{folder}.zip there (DCASE 2013 scene classification: '
                'scenes_stereo.zip for training, scenes_stereo_testset.zip '
                'for testing)')
        paths += found
        is_test += [test] * len(found)
    return BenchmarkFiles(
        paths=paths, labels=np.array([_scene_label(p) for p in paths]),
        classes=DCASE2014_CLASSES, is_test=np.array(is_test))


BENCHMARKS: Dict[str, Callable[[str], BenchmarkFiles]] = {
    'esc50': esc50_files, 'dcase2014': dcase2014_files}


def _write_manifest(files: BenchmarkFiles, path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'label'])
        writer.writerows(zip((osp.abspath(p) for p in files.paths),
                             files.labels.tolist()))


def run_audio_benchmark(name: str, encoder: str, data_root: str, *,
                        cfg=None, trusted: bool = False,
                        num_windows: int = DEFAULT_NUM_WINDOWS,
                        seed: int = 0, batch_size: int = 8,
                        num_workers: int = 0, device: str = 'cpu',
                        progress: bool = True,
                        **protocol_options) -> List[dict]:
    """Records (``protocol='linear'``, ``modality='audio'``, ``metric=
    'top1'``, ``benchmark=name``, per-split ``folds``) of the benchmark
    ``name`` (``'esc50'`` or ``'dcase2014'``) for ``encoder``'s audio
    encoder. ``protocol_options``: ``cs``, ``n_jobs`` of the classifier."""
    if name not in BENCHMARKS:
        raise ValueError(f'unknown audio benchmark {name!r}; choose from '
                         f'{sorted(BENCHMARKS)}')
    files = BENCHMARKS[name](data_root)
    encoders = load_encoders(encoder, 'audio', cfg=cfg, trusted=trusted,
                             seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        manifest = osp.join(folder, f'{name}.csv')
        _write_manifest(files, manifest)
        result, _ = manifest_features(
            encoders, manifest, 'label', num_clips=num_windows,
            batch_size=batch_size, num_workers=num_workers, device=device,
            progress=progress, check_cache=False)
    # The manifest rows of the files that decoded: their label and split.
    row_of = {osp.abspath(p): i for i, p in enumerate(files.paths)}
    rows = np.array([row_of[osp.abspath(p)] for p in result.paths])
    split = (dict(fold_ids=files.fold_ids[rows]) if files.fold_ids is not None
             else dict(is_test=files.is_test[rows]))
    records = evaluate_features({'audio': result.features['audio']},
                                files.labels[rows], ('linear',), seed=seed,
                                encoder=encoder, **split, **protocol_options)
    for record in records:
        record.update(benchmark=name, num_skipped=result.num_skipped,
                      num_classes=len(files.classes))
    return records
