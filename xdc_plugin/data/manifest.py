"""The list of media files of a dataset: a CSV manifest or a folder scan.

A manifest is a CSV file with a ``path`` column (relative to the CSV's folder
or to ``data_root``, or absolute) and optional other columns, one of which
may hold labels (evaluation only). Parsing is forgiving where the intent is
clear and strict where it is not:

* a UTF-8 byte-order mark and spaces around header names and values are
  ignored (``path, label`` works);
* a label column that is asked for but absent is an error naming the
  columns that exist; without ``label_column``, a ``label`` column is used
  when there is one;
* an empty or NaN-like label (``''``, ``nan``, ``NA``, ``N/A``, ``null``,
  ``None``) means unlabelled;
* rows repeating an earlier row's path are reported as duplicates;
* a manifest or folder without any file is an error.

Every problem of the manifest itself (missing, not a regular file, not a
UTF-8 CSV, no ``path`` column, no row) is a ``ManifestError`` naming the
file, raised before any listed file is opened.
"""
import contextlib
import csv
import os
import os.path as osp
import random
import stat
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

__all__ = ['FileList', 'ManifestError', 'read_file_list', 'extensions_for',
           'ManifestSummary', 'summarize_manifest', 'VIDEO_EXTENSIONS',
           'AUDIO_EXTENSIONS']

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.ogv',
                    '.mpeg', '.mpg', '.flv', '.3gp', '.wmv')
AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.oga', '.mp3', '.m4a', '.aac',
                    '.opus')


def extensions_for(modalities):
    """File endings a folder scan picks up for data of ``modalities``."""
    if 'video' in modalities:
        return VIDEO_EXTENSIONS
    return AUDIO_EXTENSIONS + VIDEO_EXTENSIONS


class ManifestError(ValueError):
    """A manifest (or folder) that cannot list a dataset; the message names
    the file and what is wrong with it."""


# Label values that mean "no label" (compared lower-cased).
MISSING_LABELS = frozenset({'', 'nan', 'na', 'n/a', 'null', 'none', '<na>'})


@dataclass
class FileList:
    """Files of a dataset in manifest order.

    ``paths``: full paths; ``labels``: the raw label strings (None when
    unlabelled, or all None without a label column); ``rows``: the
    manifest's rows as read (header names stripped); ``duplicates``: pairs
    ``(row, first_row)`` of rows whose path an earlier row already has.
    """
    source: str
    paths: List[str]
    labels: List[Optional[str]]
    columns: List[str] = field(default_factory=lambda: ['path'])
    label_column: Optional[str] = None
    rows: List[dict] = field(default_factory=list)
    duplicates: List[Tuple[int, int]] = field(default_factory=list)

    @property
    def num_unlabelled(self):
        """Rows without a label, when there is a label column."""
        if self.label_column is None:
            return 0
        return sum(label is None for label in self.labels)

    def summary(self):
        """One line on duplicates and unlabelled rows ('' when neither)."""
        notes = []
        if self.duplicates:
            shown = ', '.join(f'line {r + 2} repeats line {f + 2}'
                              for r, f in self.duplicates[:3])
            notes.append(f'{len(self.duplicates)} duplicate rows ({shown})')
        if self.num_unlabelled:
            notes.append(f'{self.num_unlabelled} rows without a '
                         f'{self.label_column!r} value (unlabelled: -1, '
                         'left out of the cluster-quality metrics)')
        return f'{self.source}: ' + '; '.join(notes) if notes else ''


def _missing(value):
    return value is None or value.strip().lower() in MISSING_LABELS


@contextlib.contextmanager
def _csv_reader(ann_file):
    """A ``csv.reader`` of ``ann_file``; a missing file, a FIFO or device
    (its open would block) or a file that is not UTF-8 CSV text (a video
    given as manifest) is a ``ManifestError`` naming it."""
    try:
        mode = os.stat(ann_file).st_mode
    except OSError as e:
        raise ManifestError(f'manifest {ann_file}: {e.strerror}') from None
    if not stat.S_ISREG(mode):
        raise ManifestError(f'manifest {ann_file} is not a regular file')
    try:
        # utf-8-sig drops a byte-order mark (Excel writes one).
        with open(ann_file, newline='', encoding='utf-8-sig') as f:
            yield csv.reader(f, skipinitialspace=True)
    except UnicodeDecodeError:
        raise ManifestError(
            f'manifest {ann_file} is not UTF-8 CSV text (a media file?): '
            'give the CSV file that lists the media files') from None
    except csv.Error as e:
        raise ManifestError(f'manifest {ann_file} is not a CSV file: '
                            f'{e}') from None


def _shown(header, most=8):
    """The header names for a message: at most ``most``, each shortened."""
    names = [n if len(n) <= 40 else n[:37] + '...' for n in header[:most]]
    return names + ['...'] if len(header) > most else names


def _header(reader, ann_file, label_column):
    """``(header, label column or None)`` read from ``reader``: a
    ``path`` column is required, a requested label column too."""
    header = [name.strip() for name in next(reader, [])]
    if 'path' not in header:
        raise ManifestError(f'{ann_file} has no "path" column (columns: '
                            f'{_shown(header)})')
    if label_column is None:
        label_column = 'label' if 'label' in header else None
    elif label_column not in header:
        raise ManifestError(f'{ann_file} has no {label_column!r} column; '
                            f'its columns are {_shown(header)}')
    return header, label_column


def _rows(reader):
    """The non-blank rows of ``reader`` as stripped value lists."""
    for values in reader:
        if any(v.strip() for v in values):
            yield [v.strip() for v in values]


def _root(ann_file, data_root):
    """The folder the manifest's relative paths start from."""
    return data_root or osp.dirname(osp.abspath(ann_file))


def _read_csv(ann_file, data_root, label_column):
    with _csv_reader(ann_file) as reader:
        header, label_column = _header(reader, ann_file, label_column)
        rows = [dict(zip(header, values)) for values in _rows(reader)]
    if not rows:
        raise ManifestError(f'{ann_file} lists no file')
    root = _root(ann_file, data_root)
    paths, labels, first_row, duplicates = [], [], {}, []
    for i, row in enumerate(rows):
        if not row.get('path'):
            raise ManifestError(f'{ann_file}: line {i + 2} has no path')
        path = osp.normpath(osp.join(root, row['path']))
        if path in first_row:
            duplicates.append((i, first_row[path]))
        first_row.setdefault(path, i)
        paths.append(path)
        value = row.get(label_column) if label_column else None
        labels.append(None if _missing(value) else value)
    return FileList(str(ann_file), paths, labels, header, label_column,
                    rows, duplicates)


def _scan(folder, extensions):
    paths = sorted(
        osp.join(d, f) for d, _, files in os.walk(folder)
        for f in files if f.lower().endswith(extensions))
    if not paths:
        raise ManifestError(f'{folder} holds no file ending in '
                            f'{extensions}')
    return FileList(str(folder), paths, [None] * len(paths),
                    rows=[dict(path=osp.relpath(p, folder)) for p in paths])


def read_file_list(ann_file=None, data_root=None, label_column=None,
                   extensions=VIDEO_EXTENSIONS):
    """The ``FileList`` of a CSV manifest ``ann_file`` (paths relative to
    ``data_root``, else to the CSV's folder) or, without ``ann_file``, of
    a recursive sorted scan of the folder ``data_root`` for files ending in
    one of ``extensions`` (no labels)."""
    if ann_file:
        return _read_csv(ann_file, data_root, label_column)
    if not data_root or not osp.isdir(data_root):
        raise ManifestError(f'give ann_file or an existing data_root folder '
                            f'(got {data_root!r})')
    if label_column is not None:
        raise ManifestError(f'label_column={label_column!r} needs a '
                            'manifest; a folder scan has no labels')
    return _scan(data_root, tuple(extensions))


@dataclass
class ManifestSummary:
    """What ``summarize_manifest`` found: the header, the number of rows,
    and which of a random sample of listed files are missing."""
    source: str
    columns: List[str]
    label_column: Optional[str]
    num_rows: int
    num_sampled: int
    missing: List[str]

    @property
    def estimated_missing(self):
        """Missing files in the whole manifest, extrapolated from the
        sample."""
        return round(len(self.missing) / max(self.num_sampled, 1) *
                     self.num_rows)


def summarize_manifest(ann_file, data_root=None, label_column=None,
                       sample_size=200, seed=0):
    """Check a CSV manifest without reading every row into memory (a 65M
    row manifest streams in about a minute): its header (as
    ``read_file_list`` does), its non-blank rows counted, and the existence
    of ``sample_size`` files drawn uniformly (reservoir sampling seeded by
    ``seed``). Raises ``ManifestError`` for a manifest that is missing, not
    a CSV file, without ``path`` column or empty."""
    rng = random.Random(seed)
    sample, count = [], 0
    with _csv_reader(ann_file) as reader:
        header, label_column = _header(reader, ann_file, label_column)
        path_at = header.index('path')
        for count, values in enumerate(_rows(reader), 1):
            path = values[path_at] if path_at < len(values) else ''
            if not path:
                raise ManifestError(f'{ann_file}: line {count + 1} has no '
                                    'path')
            if len(sample) < sample_size:
                sample.append(path)
            elif (slot := rng.randrange(count)) < sample_size:
                sample[slot] = path
    if not count:
        raise ManifestError(f'{ann_file} lists no file')
    root = _root(ann_file, data_root)
    missing = [p for p in (osp.normpath(osp.join(root, s)) for s in sample)
               if not osp.isfile(p)]
    return ManifestSummary(str(ann_file), header, label_column, count,
                           len(sample), missing)
