"""Check every file of a manifest (or folder) and report, as
``tools/check_manifest.py`` prints it: the same check and cache as the
dataset build, so that what is reported bad here is what training skips.
"""
import csv
import os.path as osp
from collections import Counter
from dataclasses import dataclass
from typing import List

from xdc_plugin.data.check_cache import CheckCache
from xdc_plugin.data.file_check import (STATUSES, CheckSettings, FileCheck,
                                        check_files)
from xdc_plugin.data.manifest import FileList, extensions_for, read_file_list

__all__ = ['check_manifest', 'ManifestReport']


@dataclass
class ManifestReport:
    """The file list and one ``FileCheck`` per file."""
    files: FileList
    results: List[FileCheck]

    @property
    def rows(self):
        """``(path, status, detail)`` per file, in manifest order."""
        return [(p, r.status, r.detail)
                for p, r in zip(self.files.paths, self.results)]

    @property
    def counts(self):
        c = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def clean(self):
        """Every file is ok and no row repeats another."""
        return self.counts['ok'] == len(self.results) and \
            not self.files.duplicates

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
        if self.files.summary():
            lines.append(self.files.summary())
        return '\n'.join(lines)

    def write_clean(self, out_csv):
        """Write the rows of the ok files, each path once, with every
        column of the manifest (paths made relative to the output CSV's
        folder); return the number of rows written."""
        folder = osp.dirname(osp.abspath(out_csv))
        repeated = {row for row, _ in self.files.duplicates}
        n = 0
        with open(out_csv, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.files.columns)
            writer.writeheader()
            for i, (row, path, result) in enumerate(zip(
                    self.files.rows, self.files.paths, self.results)):
                if result.status == 'ok' and i not in repeated:
                    writer.writerow(dict(row, path=osp.relpath(path, folder)))
                    n += 1
        return n


def check_manifest(source, data_root=None, label_column=None,
                   num_workers=None, progress=False, cache=True,
                   **settings) -> ManifestReport:
    """Check every file of ``source`` (a CSV manifest or a folder).

    ``settings`` are ``CheckSettings`` fields (``num_frames``,
    ``frame_rate``, ``audio_duration``, ``full_decode``, ``modalities``,
    ...); ``num_workers`` threads check files (None: one per core);
    ``cache`` reuses and fills the check cache the dataset build reads.
    """
    settings = CheckSettings(**settings)
    if osp.isdir(source):
        files = read_file_list(None, source, label_column,
                               extensions_for(settings.modalities))
    else:
        files = read_file_list(source, data_root, label_column)
    store = CheckCache(source, settings) if cache else None
    results = check_files(files.paths, settings, num_workers, progress,
                          store)
    return ManifestReport(files, results)
