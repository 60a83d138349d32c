"""Results of ``check_file`` kept between runs, so that a dataset is decoded
end to end once, not at every build.

One JSON file per (file list, check settings), beside the manifest (or in
the scanned folder): ``<manifest>.xdc-check-<settings digest>.json``. When
that folder is not writable, the file goes to the user cache folder
(``$XDG_CACHE_HOME/xdc_plugin/file_checks``, ``~/.cache/...`` by default).
An entry is used only while its file has the same size and modification
time; the settings and ``CHECK_VERSION`` are in the digest. A cache file
that is not a regular file, not JSON or not of the expected shape is
ignored with a warning (the check then runs and writes a good one); it is
written atomically and never through a symlink.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import stat

from mmengine.logging import print_log

from xdc_plugin.atomic_write import write_atomically
from xdc_plugin.data.file_check import STATUSES, FileCheck

__all__ = ['CheckCache', 'user_cache_dir']


def user_cache_dir():
    root = os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache')
    return osp.join(root, 'xdc_plugin', 'file_checks')


def _stat_key(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_table(path):
    """The entries of the cache file ``path``; ``OSError`` or ``ValueError``
    saying why it cannot be used."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block
        raise ValueError('not a regular file')
    with open(path, encoding='utf-8') as f:
        table = json.load(f)
    if not isinstance(table, dict):
        raise ValueError(f'a JSON {type(table).__name__}, not an object of '
                         'file entries')
    fields = set(FileCheck.__dataclass_fields__)
    for path_key, entry in table.items():
        if not (isinstance(entry, dict) and isinstance(entry.get('stat'), list)
                and isinstance(entry.get('full_decode'), bool)
                and isinstance(entry.get('result'), dict)
                and set(entry['result']) <= fields
                and entry['result'].get('status') in STATUSES):
            raise ValueError(f'the entry of {path_key!r} is not a check '
                             'result')
    return table


class CheckCache:
    """The cache of one ``source`` (manifest file or scanned folder) under
    one ``CheckSettings``; ``folder`` overrides where it is kept."""

    def __init__(self, source, settings, folder=None):
        source = osp.abspath(source)
        name = f'xdc-check-{settings.digest()}.json'
        if osp.isdir(source):
            beside = osp.join(source, '.' + name)
        else:
            beside = f'{source}.{name}'
        tag = hashlib.sha1(source.encode()).hexdigest()[:12]
        fallback = osp.join(user_cache_dir(), f'{tag}-{name}')
        if folder is not None:
            self.candidates = [osp.join(folder, f'{tag}-{name}')]
        else:
            self.candidates = [beside, fallback]
        self.path = None  # where ``store`` last wrote

    def _load(self):
        tables = []
        for candidate in self.candidates:
            try:
                tables.append(_read_table(candidate))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                print_log(f'ignoring the check cache {candidate}: {e}',
                          logger='current', level=logging.WARNING)
        return tables

    def lookup(self, paths, full_decode):
        """``{index: (FileCheck, decoded end to end)}`` of the paths whose
        file is unchanged since a cache file (beside the source first)
        recorded it, and was decoded end to end if ``full_decode``."""
        tables = self._load()
        known = {}
        for i, path in enumerate(paths):
            key = _stat_key(path)
            for entries in tables:
                entry = entries.get(osp.abspath(path))
                if entry is not None and entry['stat'] == key and (
                        entry['full_decode'] or not full_decode):
                    known[i] = (FileCheck(**entry['result']),
                                entry['full_decode'])
                    break
        return known

    def store(self, paths, results, full_decode):
        """Write the results (and whether each file was decoded end to end)
        of the files that exist, atomically, beside the source if possible,
        else in the user cache folder."""
        entries = {}
        for path, result, full in zip(paths, results, full_decode):
            key = _stat_key(path)
            if key is not None:
                entries[osp.abspath(path)] = dict(
                    stat=key, full_decode=full, result=vars(result))
        data = json.dumps(entries).encode()
        for candidate in self.candidates:
            try:
                write_atomically(data, candidate)
            except OSError:
                continue
            self.path = candidate
            return candidate
        print_log(f'could not write the check cache to any of '
                  f'{self.candidates}', logger='current',
                  level=logging.WARNING)
        return None
