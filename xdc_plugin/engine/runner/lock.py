"""One run per work_dir: an advisory lock held for the run's lifetime.

A POSIX record lock (``fcntl.lockf``) on ``<work_dir>/run.lock``: it belongs
to the holding process alone, so the kernel releases it when that process
exits or dies (kill -9 included) even while its DataLoader workers, forked
with the file open, are still shutting down (an ``flock`` would be shared
with them and outlive the run); NFS propagates it to other hosts. A stale
lock file never blocks anyone. The file names the holder (PID, host,
command) for the error a second run gets. Closing any descriptor of the
file releases a POSIX lock, so the holder reads it only through its own.

Taking the lock is also the run's first write: a work_dir that cannot be
written, or a ``run.lock`` that is a symbolic link (never written through),
stops the run there with a ``WorkDirError``.
"""
import errno
import fcntl
import json
import os
import os.path as osp
import shlex
import socket
import sys
import time
from typing import Any, Callable, Dict, Optional

LOCK_NAME = 'run.lock'


class WorkDirBusyError(RuntimeError):
    """Another run holds the work_dir's lock."""


class WorkDirError(RuntimeError):
    """The work_dir cannot hold a run: not writable, or its lock file is a
    symbolic link."""


def _describe(holder):
    if not holder:
        return 'another run (it has not written its details yet)'
    return (f"run PID {holder.get('pid')} on host {holder.get('host')}, "
            f"started {holder.get('started')}: {holder.get('command')}")


class WorkDirLock:
    """Context manager: hold ``work_dir``'s lock, or raise
    :class:`WorkDirBusyError` naming the run that holds it.

    With ``force=True`` a held lock is shared deliberately: ``on_force``
    (e.g. a logger's ``warning``) is told who holds it, and this run goes on
    without the lock.
    """

    def __init__(self, work_dir: str, force: bool = False,
                 on_force: Callable[[str], object] = print) -> None:
        self.path = osp.join(work_dir, LOCK_NAME)
        self.force = force
        self.on_force = on_force
        self._fd = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (False when sharing it with
        ``force``)."""
        return self._fd is not None

    def holder(self) -> Optional[Dict[str, Any]]:
        """The details the holding run wrote, or None."""
        try:
            if self._fd is not None:
                text = os.pread(self._fd, 1 << 16, 0).decode()
            else:
                with open(self.path) as f:
                    text = f.read()
            return json.loads(text or 'null')
        except (OSError, ValueError):
            return None

    def _open(self):
        """The lock file's descriptor, created if needed, never through a
        link; ``WorkDirError`` when the work_dir cannot be written."""
        folder = osp.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                           0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise WorkDirError(
                    f'{self.path} is a symbolic link; the run writes its '
                    'lock there and never through a link: remove it') \
                    from None
            raise WorkDirError(f'cannot write in the work_dir {folder}: '
                               f'{exc.strerror}') from None

    def __enter__(self) -> 'WorkDirLock':
        fd = self._open()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            message = (f'{osp.dirname(self.path)} is in use by '
                       f'{_describe(self.holder())}.')
            if not self.force:
                raise WorkDirBusyError(
                    message + ' Two runs in one work_dir overwrite each '
                    "other's checkpoints: choose another --work-dir, or pass "
                    '--force to share it deliberately.') from None
            self.on_force(message + ' Sharing it (--force).')
            return self
        details = dict(pid=os.getpid(), host=socket.gethostname(),
                       started=time.strftime('%Y-%m-%d %H:%M:%S'),
                       command=shlex.join([sys.executable] + sys.argv))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(details).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        return False
