"""The official UCF101 and HMDB51 train/test splits as mmaction2
``VideoDataset`` annotation files (``<relative path> <label>`` lines).

What the official archives unpack to:

* UCF101 (crcv.ucf.edu): ``UCF101.rar`` gives ``UCF-101/<Class>/*.avi``;
  ``UCF101TrainTestSplits-RecognitionTask.zip`` gives ``ucfTrainTestlist/``
  with ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based), ``trainlist0N.txt``
  (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and ``testlist0N.txt``
  (the path only), with Windows line endings. Paths are used as listed: the
  folder ``HandstandPushups`` holds ``v_HandStandPushups_*`` files.
* HMDB51 (serre-lab.clps.brown.edu): ``hmdb51_org.rar`` holds one
  ``<class>.rar`` per class, each unpacking to ``<class>/*.avi``;
  ``test_train_splits.rar`` gives ``testTrainMulti_7030_splits/`` with
  ``<class>_test_split<N>.txt`` files of ``<video>.avi <0|1|2>`` lines
  (1 train, 2 test, 0 unused).

mmaction2's download scripts put the same files in ``annotations/`` and
``videos/``; :func:`find_release` accepts both layouts.

Class indices are 0-based: UCF101 in ``classInd.txt`` order, HMDB51 in
sorted class-name order (as mmaction2's ``build_file_list.py``).
"""
import dataclasses
import logging
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.logging import print_log

DATASETS = ('ucf101', 'hmdb51')
SPLITS = (1, 2, 3)
# Where each archive unpacks, then mmaction2's layout.
_SPLIT_DIRS = {'ucf101': ('ucfTrainTestlist', 'annotations'),
               'hmdb51': ('testTrainMulti_7030_splits', 'annotations')}
_VIDEO_DIRS = {'ucf101': ('UCF-101', 'videos', '.'),
               'hmdb51': ('hmdb51_org', 'videos', '.')}
_HMDB_SPLIT_FILE = re.compile(r'^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$')
_HMDB_MARKERS = {'1': 'train', '2': 'test', '0': None}
_EXAMPLES = 5

Entry = Tuple[str, int]  # (path relative to the video folder, class index)


class SplitFormatError(ValueError):
    """A split file that does not follow the release's format."""


class MissingVideosError(FileNotFoundError):
    """Videos listed by a split file are not in the video folder."""


@dataclasses.dataclass(frozen=True)
class VideoSplit:
    """One official split: class names in index order, train and test
    ``(relative path, class index)`` entries."""
    dataset: str
    split: int
    classes: Tuple[str, ...]
    train: Tuple[Entry, ...]
    test: Tuple[Entry, ...]


@dataclasses.dataclass(frozen=True)
class ReleaseLayout:
    split_dir: str
    video_dir: str


def _check_choice(dataset: str, split: int) -> None:
    if dataset not in DATASETS:
        raise ValueError(f'dataset must be one of {DATASETS}, got '
                         f'{dataset!r}')
    if split not in SPLITS:
        raise ValueError(f'{dataset} has the official splits {SPLITS}, '
                         f'got {split!r}')


def _read_lines(path: str) -> List[Tuple[int, List[str]]]:
    """``(line number, fields)`` of the non-blank lines (any line ending)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Split file {path} is missing')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    return [(number, line.split())
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def _ucf101_classes(split_dir: str) -> Dict[str, int]:
    path = osp.join(split_dir, 'classInd.txt')
    names = {}
    for number, fields in _read_lines(path):
        if len(fields) != 2 or not fields[0].isdigit():
            raise SplitFormatError(
                f'{path}:{number}: expected "<index> <ClassName>", got '
                f'{" ".join(fields)!r}')
        names[int(fields[0])] = fields[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise SplitFormatError(f'{path}: class indices are not 1..'
                               f'{len(names)}: {sorted(names)}')
    return {names[i]: i - 1 for i in sorted(names)}


def _ucf101_entries(path: str, classes: Dict[str, int]) -> List[Entry]:
    entries = []
    for number, fields in _read_lines(path):
        where = f'{path}:{number}'
        if len(fields) not in (1, 2) or '/' not in fields[0]:
            raise SplitFormatError(
                f'{where}: expected "<Class>/<video>.avi [<index>]", got '
                f'{" ".join(fields)!r}')
        folder = fields[0].split('/')[0]
        if folder not in classes:
            raise SplitFormatError(
                f'{where}: unknown class {folder!r} (not in classInd.txt)')
        label = classes[folder]
        if len(fields) == 2 and fields[1] != str(label + 1):
            raise SplitFormatError(
                f'{where}: label {fields[1]} but classInd.txt gives '
                f'{folder!r} the index {label + 1}')
        entries.append((fields[0], label))
    return entries


def read_ucf101_split(split_dir: str, split: int) -> VideoSplit:
    """UCF101 split ``split`` from ``classInd.txt``, ``trainlist0N.txt``
    and ``testlist0N.txt`` in ``split_dir``."""
    _check_choice('ucf101', split)
    classes = _ucf101_classes(split_dir)
    train, test = (
        _ucf101_entries(osp.join(split_dir, f'{part}list{split:02d}.txt'),
                        classes) for part in ('train', 'test'))
    return VideoSplit('ucf101', split, tuple(classes), tuple(train),
                      tuple(test))


def _hmdb51_split_files(split_dir: str) -> Dict[int, Dict[str, str]]:
    """``{split: {class: file}}`` of the ``<class>_test_split<N>.txt``."""
    if not osp.isdir(split_dir):
        raise FileNotFoundError(f'HMDB51 split folder {split_dir} is missing')
    found: Dict[int, Dict[str, str]] = {}
    for name in sorted(os.listdir(split_dir)):
        match = _HMDB_SPLIT_FILE.match(name)
        if match:
            found.setdefault(int(match['split']), {})[match['cls']] = (
                osp.join(split_dir, name))
    return found


def read_hmdb51_split(split_dir: str, split: int) -> VideoSplit:
    """HMDB51 split ``split`` from the ``<class>_test_split<N>.txt`` files
    in ``split_dir``; the classes are those named by any split file."""
    _check_choice('hmdb51', split)
    files = _hmdb51_split_files(split_dir)
    classes = sorted({c for per_split in files.values() for c in per_split})
    if not classes:
        raise FileNotFoundError(
            f'No <class>_test_split<N>.txt files in {split_dir}')
    missing = [c for c in classes if c not in files.get(split, {})]
    if missing:
        raise FileNotFoundError(
            f'{split_dir}: no {missing[0]}_test_split{split}.txt: split '
            f'{split} lacks {len(missing)} of the {len(classes)} classes '
            f'({", ".join(missing[:_EXAMPLES])})')
    parts: Dict[str, List[Entry]] = {'train': [], 'test': []}
    for label, cls in enumerate(classes):
        path = files[split][cls]
        for number, fields in _read_lines(path):
            if len(fields) != 2 or fields[1] not in _HMDB_MARKERS:
                raise SplitFormatError(
                    f'{path}:{number}: expected "<video>.avi <0|1|2>", got '
                    f'{" ".join(fields)!r}')
            part = _HMDB_MARKERS[fields[1]]
            if part:
                parts[part].append((f'{cls}/{fields[0]}', label))
    return VideoSplit('hmdb51', split, tuple(classes), tuple(parts['train']),
                      tuple(parts['test']))


def read_split(dataset: str, split_dir: str, split: int) -> VideoSplit:
    _check_choice(dataset, split)
    reader = read_ucf101_split if dataset == 'ucf101' else read_hmdb51_split
    return reader(split_dir, split)


def find_release(dataset: str, data_root: str) -> ReleaseLayout:
    """The split and video folders under ``data_root``: the unpacked
    official archives (``ucfTrainTestlist/`` + ``UCF-101/``;
    ``testTrainMulti_7030_splits/`` + class folders in ``hmdb51_org/`` or
    ``data_root``) or mmaction2's ``annotations/`` + ``videos/``."""
    _check_choice(dataset, SPLITS[0])
    split_dir = next((osp.join(data_root, d) for d in _SPLIT_DIRS[dataset]
                      if osp.isdir(osp.join(data_root, d))), None)
    if split_dir is None:
        raise FileNotFoundError(
            f'{data_root} has none of the {dataset} split folders '
            f'{_SPLIT_DIRS[dataset]} (unpack the official split archive '
            'there)')
    first_class = read_split(dataset, split_dir, SPLITS[0]).classes[0]
    for folder in _VIDEO_DIRS[dataset]:
        video_dir = osp.normpath(osp.join(data_root, folder))
        if osp.isdir(osp.join(video_dir, first_class)):
            return ReleaseLayout(split_dir, video_dir)
    raise FileNotFoundError(
        f'No {dataset} class folder {first_class!r} in any of '
        f'{[osp.join(data_root, d) for d in _VIDEO_DIRS[dataset]]} (unpack '
        'the official video archive there)')


def drop_missing_videos(video_split: VideoSplit, video_dir: str,
                        skip_missing: bool = False) -> VideoSplit:
    """``video_split`` without the entries whose file is absent from
    ``video_dir``: an error naming some of them, or with ``skip_missing`` a
    logged warning with their count."""
    kept, missing = {}, []
    for part in ('train', 'test'):
        kept[part] = []
        for path, label in getattr(video_split, part):
            if any(c.isspace() for c in path):
                raise SplitFormatError(
                    f'{path!r}: mmaction2 annotation files are split on '
                    'spaces; rename the file')
            if osp.isfile(osp.join(video_dir, path)):
                kept[part].append((path, label))
            else:
                missing.append(path)
    if missing:
        total = len(video_split.train) + len(video_split.test)
        message = (f'{video_split.dataset} split {video_split.split}: '
                   f'{len(missing)} of {total} listed videos are not in '
                   f'{video_dir}, e.g. {missing[:_EXAMPLES]}')
        if not skip_missing:
            raise MissingVideosError(
                message + '. Unpack the full release there, or skip them '
                '(--skip-missing).')
        print_log(message + '; skipped.', logger='current',
                  level=logging.WARNING)
    return dataclasses.replace(video_split, train=tuple(kept['train']),
                               test=tuple(kept['test']))


def annotation_paths(dataset: str, split: int, out_dir: str
                     ) -> Dict[str, str]:
    """mmaction2's file names: ``<dataset>_{train,val}_split_<N>_videos.txt``
    and the class names, one a line, in ``<dataset>_classes.txt``."""
    name = osp.join(out_dir, f'{dataset}_{{}}_split_{split}_videos.txt')
    return {'train': name.format('train'), 'test': name.format('val'),
            'classes': osp.join(out_dir, f'{dataset}_classes.txt')}


def _write_if_changed(path: str, lines: Sequence[str]) -> None:
    text = ''.join(f'{line}\n' for line in lines)
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, path)


def write_annotations(video_split: VideoSplit, out_dir: str
                      ) -> Dict[str, str]:
    """Write the split's train / test annotation files and class list into
    ``out_dir`` (unchanged files are left alone); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = annotation_paths(video_split.dataset, video_split.split, out_dir)
    for part in ('train', 'test'):
        _write_if_changed(paths[part], [
            f'{path} {label}' for path, label in getattr(video_split, part)])
    _write_if_changed(paths['classes'], video_split.classes)
    return paths


def convert_split(dataset: str, data_root: str, out_dir: str, split: int,
                  skip_missing: bool = False,
                  layout: Optional[ReleaseLayout] = None) -> dict:
    """Official split ``split`` of the release under ``data_root`` ->
    annotation files in ``out_dir``. Returns their paths (``train``,
    ``test``, ``classes``), ``video_dir``, ``num_classes`` and the entry
    counts ``num_train``, ``num_test``."""
    layout = layout or find_release(dataset, data_root)
    video_split = drop_missing_videos(
        read_split(dataset, layout.split_dir, split), layout.video_dir,
        skip_missing)
    for part in ('train', 'test'):
        if not getattr(video_split, part):
            raise MissingVideosError(
                f'{dataset} split {split} has no {part} video left')
    paths = write_annotations(video_split, out_dir)
    return dict(paths, video_dir=layout.video_dir,
                num_classes=len(video_split.classes),
                num_train=len(video_split.train),
                num_test=len(video_split.test))


__all__ = ['DATASETS', 'SPLITS', 'MissingVideosError', 'ReleaseLayout',
           'SplitFormatError', 'VideoSplit', 'annotation_paths',
           'convert_split', 'drop_missing_videos', 'find_release',
           'read_hmdb51_split', 'read_split', 'read_ucf101_split',
           'write_annotations']
