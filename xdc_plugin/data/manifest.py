"""Check that every file of a manifest (or folder) gives clips with audio.

Each file is probed, then (``full_decode=True``) a clip at the start, the
middle and the end of the file is decoded with its audio window, which
finds the truncated files that the header probe alone lets through.
"""
import csv
import os.path as osp
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import List, Tuple

from xdc_plugin.data.dataset import read_file_list
from xdc_plugin.data.decode import (DecodeError, clip_seconds, decode_clip,
                                    probe_clip_source)

__all__ = ['check_file', 'check_manifest', 'ManifestReport', 'STATUSES']

STATUSES = ('ok', 'unreadable', 'no_audio', 'no_video', 'truncated',
            'too_short')


def check_file(path, num_frames=8, frame_rate=None, audio_duration=2.0,
               sample_rate=16000, full_decode=True):
    """``(status, detail)`` of one file; status is one of ``STATUSES``."""
    try:
        info = probe_clip_source(path, num_frames, frame_rate)
        if full_decode:
            last = info.duration - clip_seconds(num_frames,
                                                frame_rate or info.fps)
            for start in (0.0, last / 2, last):
                decode_clip(path, start, num_frames, frame_rate,
                            audio_duration, sample_rate)
    except DecodeError as e:
        return e.kind, e.reason
    return 'ok', ''


def _check(args):
    return check_file(*args[0], **args[1])


@dataclass
class ManifestReport:
    """Per-file results: ``rows`` of ``(path, status, detail)``."""
    rows: List[Tuple[str, str, str]] = field(default_factory=list)
    labels: list = field(default_factory=list)

    @property
    def counts(self):
        c = Counter(s for _, s, _ in self.rows)
        return {s: c.get(s, 0) for s in STATUSES}

    def paths(self, status):
        return [p for p, s, _ in self.rows if s == status]

    def table(self, max_paths=5):
        lines = [f'{"status":<11} {"count":>6}  paths',
                 f'{"-" * 11} {"-" * 6}  {"-" * 40}']
        for status, n in self.counts.items():
            shown = self.paths(status)[:max_paths] if status != 'ok' else []
            more = f' (+{n - len(shown)} more)' if shown and n > len(shown) \
                else ''
            lines.append(f'{status:<11} {n:>6}  {", ".join(shown)}{more}')
        lines.append(f'{"total":<11} {len(self.rows):>6}')
        return '\n'.join(lines)

    def write_clean(self, out_csv):
        """Write ``path,label`` for the ok files (paths relative to the
        output CSV's folder); return the number of rows."""
        folder = osp.dirname(osp.abspath(out_csv))
        n = 0
        with open(out_csv, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['path', 'label'])
            for (path, status, _), label in zip(self.rows, self.labels):
                if status == 'ok':
                    writer.writerow([osp.relpath(path, folder),
                                     '' if label is None else label])
                    n += 1
        return n


def check_manifest(source, data_root=None, label_column='label',
                   num_workers=0, full_decode=True, num_frames=8,
                   frame_rate=None, audio_duration=2.0, sample_rate=16000):
    """Check every file of ``source`` (a CSV manifest or a folder).

    ``num_workers > 0`` checks files in that many processes.
    """
    if osp.isdir(source):
        paths, labels = read_file_list(None, source)
    else:
        paths, labels = read_file_list(source, data_root, label_column)
    kwargs = dict(num_frames=num_frames, frame_rate=frame_rate,
                  audio_duration=audio_duration, sample_rate=sample_rate,
                  full_decode=full_decode)
    jobs = [((p,), kwargs) for p in paths]
    if num_workers > 0:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(pool.map(_check, jobs, chunksize=4))
    else:
        results = [_check(j) for j in jobs]
    return ManifestReport(
        rows=[(p, s, d) for p, (s, d) in zip(paths, results)],
        labels=labels)
