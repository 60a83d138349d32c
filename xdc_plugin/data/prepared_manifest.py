"""The manifest of a prepared dataset (``tools/prepare_dataset.py``) and the
sidecar that lets a dataset build trust it without opening a media file.

The preparation writes ``manifest.csv`` with one row per prepared file
(``MANIFEST_COLUMNS``: the header values of the copy, which it decoded end
to end) and, beside it, ``manifest.csv.xdc-prepared.json``: the settings
the copies were made with, the number of rows and the SHA-256 of the
manifest's bytes. A dataset build that finds a sidecar whose digest matches
the manifest takes each file's duration and frame rate from its row
(``trusted_checks``) instead of probing it; a manifest edited after the
preparation no longer matches and is checked as any other.
"""
import csv
import hashlib
import io
import json
import logging
import os.path as osp
from typing import List, Optional

from mmengine.logging import print_log

from xdc_plugin.atomic_write import write_atomically
from xdc_plugin.data.file_check import CheckSettings, FileCheck

__all__ = ['MANIFEST_COLUMNS', 'SIDECAR_SUFFIX', 'sidecar_path',
           'write_prepared_manifest', 'read_sidecar', 'trusted_checks',
           'file_list_digest']

MANIFEST_COLUMNS = ('path', 'label', 'duration', 'fps', 'width', 'height',
                    'audio_sample_rate', 'num_frames', 'source_path')
SIDECAR_SUFFIX = '.xdc-prepared.json'
SIDECAR_FORMAT = 'xdc-prepared-manifest'
SIDECAR_VERSION = 1


def sidecar_path(manifest):
    return f'{manifest}{SIDECAR_SUFFIX}'


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def write_prepared_manifest(manifest, rows, settings):
    """Write ``rows`` (dicts with the ``MANIFEST_COLUMNS``; None is written
    as an empty value, and the label column only when a row has a label)
    to the CSV ``manifest``, then its sidecar with ``settings`` (a JSON-able
    dict) and the manifest's digest; both atomically. Returns the sidecar's
    path."""
    rows = list(rows)
    columns = [c for c in MANIFEST_COLUMNS if c != 'label' or
               any(row.get('label') is not None for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows({k: '' if row.get(k) is None else row[k]
                      for k in columns} for row in rows)
    data = buffer.getvalue().encode()
    write_atomically(data, manifest)
    sidecar = dict(format=SIDECAR_FORMAT, version=SIDECAR_VERSION,
                   manifest=osp.basename(manifest), rows=len(rows),
                   manifest_sha256=hashlib.sha256(data).hexdigest(),
                   settings=settings)
    path = sidecar_path(manifest)
    write_atomically((json.dumps(sidecar, indent=1, sort_keys=True) +
                      '\n').encode(), path)
    return path


def read_sidecar(manifest) -> Optional[dict]:
    """The sidecar of ``manifest`` when there is one and it describes the
    manifest as it is now; None otherwise (a sidecar that no longer matches
    is logged: the build then checks the files)."""
    path = sidecar_path(manifest)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            sidecar = json.load(f)
        if sidecar.get('format') != SIDECAR_FORMAT or \
                sidecar.get('version') != SIDECAR_VERSION:
            raise ValueError('not a prepared-manifest sidecar of version '
                             f'{SIDECAR_VERSION}')
        matches = sidecar['manifest_sha256'] == _sha256(manifest)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print_log(f'{path}: unreadable ({e}); checking the files of '
                  f'{manifest}', logger='current', level=logging.WARNING)
        return None
    if not matches:
        print_log(f'{manifest} changed since it was prepared (its digest '
                  f'differs from {path}): checking its files',
                  logger='current', level=logging.WARNING)
        return None
    return sidecar


def trusted_checks(rows, settings: CheckSettings) -> List[FileCheck]:
    """``FileCheck`` of each prepared manifest row from its own metadata,
    opening no file: ``too_short`` when the file is shorter than one clip
    of ``settings``, else ``ok`` (the preparation decoded the copy)."""
    checks = []
    for i, row in enumerate(rows):
        try:
            duration, fps = float(row['duration']), float(row['fps'])
            if not (duration >= 0 and fps > 0):
                raise ValueError(f'duration {duration}, fps {fps}')
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f'prepared manifest line {i + 2}: no valid '
                             f'duration and fps ({e})') from e
        span = settings.clip_span(fps)
        if duration < span:
            checks.append(FileCheck('too_short', f'{duration:.3f}s < clip '
                                    f'{span:.3f}s', duration, fps))
        else:
            checks.append(FileCheck('ok', '', duration, fps))
    return checks


def file_list_digest(paths, chunk=100_000):
    """SHA-1 of the ordered ``paths`` (hex): two processes with the same
    digest list the same files in the same order."""
    digest = hashlib.sha1(str(len(paths)).encode())
    for start in range(0, len(paths), chunk):
        digest.update(''.join(f'\n{p}' for p in paths[start:start + chunk])
                      .encode('utf-8', 'surrogateescape'))
    return digest.hexdigest()
