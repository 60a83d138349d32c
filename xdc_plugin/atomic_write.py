"""The package's one way to write a file atomically (standard library only,
so the torch-only ``xdc_plugin.weights`` can use it too)."""
import contextlib
import os
import os.path as osp
import stat
import uuid


def write_atomically(data: bytes, path) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same
    folder (created if needed) and ``os.replace``: a process killed while
    writing never leaves a truncated file under ``path``. The file gets the
    permissions of a plain ``open`` (those of the file it replaces, else
    0666 minus the umask), not ``mkstemp``'s 0600, so that colleagues on
    shared storage can read it."""
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.tmp-{uuid.uuid4().hex}-{osp.basename(path)}')
    try:
        with open(tmp, 'xb') as f:
            with contextlib.suppress(FileNotFoundError):  # as open(path)
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(path).st_mode))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
