"""Results of ``check_file`` kept between runs, so that a dataset is decoded
end to end once, not at every build.

One JSON file per (file list, check settings), beside the manifest (or in
the scanned folder): ``<manifest>.xdc-check-<settings digest>.json``. When
that folder is not writable, the file goes to the user cache folder
(``$XDG_CACHE_HOME/xdc_plugin/file_checks``, ``~/.cache/...`` by default).
An entry is used only while its file has the same size and modification
time; the settings and ``CHECK_VERSION`` are in the digest.
"""
import hashlib
import json
import logging
import os
import os.path as osp

from mmengine.logging import print_log

from xdc_plugin.data.file_check import FileCheck

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
                with open(candidate) as f:
                    tables.append(json.load(f))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                print_log(f'ignoring the unreadable check cache {candidate}: '
                          f'{e}', logger='current', level=logging.WARNING)
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
        text = json.dumps(entries)
        for candidate in self.candidates:
            tmp = f'{candidate}.{os.getpid()}.tmp'
            try:
                os.makedirs(osp.dirname(candidate), exist_ok=True)
                with open(tmp, 'w') as f:  # the umask's permissions
                    f.write(text)
                os.replace(tmp, candidate)
            except OSError:
                if osp.exists(tmp):
                    os.remove(tmp)
                continue
            self.path = candidate
            return candidate
        print_log(f'could not write the check cache to any of '
                  f'{self.candidates}', logger='current',
                  level=logging.WARNING)
        return None
