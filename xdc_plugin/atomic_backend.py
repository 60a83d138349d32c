"""An mmengine file backend whose writes are atomic, for the work dir.

mmengine's ``LocalBackend`` writes in place, so a run killed while saving
leaves a truncated checkpoint under its final name. ``AtomicLocalBackend``
writes through :func:`xdc_plugin.atomic_write.write_atomically` instead.
Nothing is replaced and nothing is registered at import: writers opt in with
``backend_args=atomic_backend_args(path)`` (our launcher does so for the
checkpoint hook, the preemption hook and the round files do too).
"""
import os
from typing import Optional

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio.backends import backends

from xdc_plugin.atomic_write import write_atomically

ATOMIC_LOCAL_BACKEND = 'xdc_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put``/``put_text`` replace the file whole."""

    def put(self, obj: bytes, filepath) -> None:
        write_atomically(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        write_atomically(obj.encode(encoding), filepath)


def register_atomic_local_backend() -> None:
    """Register ``AtomicLocalBackend`` as ``ATOMIC_LOCAL_BACKEND`` (once)."""
    if ATOMIC_LOCAL_BACKEND not in backends:
        register_backend(ATOMIC_LOCAL_BACKEND, AtomicLocalBackend)


def atomic_backend_args(path) -> Optional[dict]:
    """``backend_args`` that make mmengine's file I/O atomic for ``path``,
    or None for a remote URI (``s3://...``), left to its own backend."""
    if '://' in os.fspath(path):
        return None
    register_atomic_local_backend()
    return dict(backend=ATOMIC_LOCAL_BACKEND)


__all__ = ['ATOMIC_LOCAL_BACKEND', 'AtomicLocalBackend',
           'atomic_backend_args', 'register_atomic_local_backend']
