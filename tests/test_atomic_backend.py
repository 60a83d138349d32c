"""The atomic mmengine file backend: opt-in through ``backend_args``, its
writes replace the file whole, a remote URI keeps its own backend."""
import pytest
from mmengine import fileio

from xdc_plugin import atomic_write
from xdc_plugin.atomic_backend import atomic_backend_args


def test_atomic_backend_is_opt_in_through_backend_args(tmp_path):
    args = atomic_backend_args(str(tmp_path))
    backend = fileio.get_file_backend(str(tmp_path), backend_args=args)
    assert type(backend).__name__ == 'AtomicLocalBackend'
    fileio.put_text('hello', str(tmp_path / 'a.txt'), backend_args=args)
    assert (tmp_path / 'a.txt').read_text() == 'hello'
    fileio.put(b'\x00\x01', str(tmp_path / 'b.bin'), backend_args=args)
    assert (tmp_path / 'b.bin').read_bytes() == b'\x00\x01'
    assert atomic_backend_args('s3://bucket/run') is None
    assert type(fileio.get_file_backend(str(tmp_path))).__name__ == \
        'LocalBackend'


def test_a_failed_put_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'old')

    def fail(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(atomic_write.os, 'fsync', fail)
    with pytest.raises(atomic_write.WriteError, match='nothing was replaced'):
        fileio.put(b'new', str(target),
                   backend_args=atomic_backend_args(str(tmp_path)))
    assert target.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['epoch_1.pth']
