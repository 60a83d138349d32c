"""The package's one way to write a file atomically (standard library only,
so the torch-only ``xdc_plugin.weights`` can use it too), and the removal of
the temporary files a killed writer leaves."""
import contextlib
import os
import os.path as osp
import re
import stat
import uuid

# ``.tmp-<uuid4 hex>-<final name>``: only write_atomically makes such names.
_TEMPORARY = re.compile(r'\.tmp-[0-9a-f]{32}-.')


class WriteError(OSError):
    """A write that failed (disk full, read-only folder, ...): nothing was
    replaced, the file that was there (if any) is intact. ``errno`` is the
    failure's; the message names the path."""

    def __str__(self):
        return self.strerror


def write_atomically(data: bytes, path) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same
    folder (created if needed) and ``os.replace``: a process killed while
    writing never leaves a truncated file under ``path``, and a symbolic
    link at ``path`` is replaced, never written through (the temporary file
    is created exclusively, so no link is followed there either). The file
    gets the permissions of a plain ``open`` (those of the file it
    replaces, else 0666 minus the umask), not ``mkstemp``'s 0600, so that
    colleagues on shared storage can read it.

    Raises ``WriteError`` (an ``OSError`` with the errno) naming the path
    when the write fails."""
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    tmp = osp.join(folder, f'.tmp-{uuid.uuid4().hex}-{osp.basename(path)}')
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, 'xb') as f:
            with contextlib.suppress(FileNotFoundError):  # as open(path)
                replaced = os.lstat(path)
                if stat.S_ISREG(replaced.st_mode):  # not a link's 0777
                    os.fchmod(f.fileno(), stat.S_IMODE(replaced.st_mode))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise WriteError(exc.errno, f'could not write {path}: '
                         f'{exc.strerror}; nothing was replaced (the file '
                         'there before, if any, is intact)') from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def remove_orphan_temporaries(folder):
    """Remove the temporary files of :func:`write_atomically` in ``folder``
    (not below it): those of a process killed while writing. Call only when
    no other process can be writing there (the work dir's lock). Returns
    ``[(name, bytes)]`` of the removed files; a symlink or anything but a
    regular file is left alone."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if _TEMPORARY.match(entry.name) and entry.is_file(
                follow_symlinks=False):
            size = entry.stat(follow_symlinks=False).st_size
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append((entry.name, size))
    return removed
