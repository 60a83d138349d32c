"""xdc_plugin.atomic_write: whole files only, with a plain write's mode."""
import os

import pytest

from xdc_plugin.atomic_write import write_atomically


def test_atomic_write_replaces_whole_files_only(tmp_path, monkeypatch):
    path = tmp_path / 'sub' / 'epoch_1.pth'
    write_atomically(b'complete', path)
    assert path.read_bytes() == b'complete'

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'fsync', crash)  # killed mid-write
    with pytest.raises(KeyboardInterrupt):
        write_atomically(b'partial', path)
    assert path.read_bytes() == b'complete'
    assert sorted(os.listdir(path.parent)) == ['epoch_1.pth']


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_atomic_write_gives_the_mode_of_a_plain_write(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / 'plain', 'wb') as f:
            f.write(b'x')
        write_atomically(b'x', tmp_path / 'atomic')
    finally:
        os.umask(previous)
    plain_mode = os.stat(tmp_path / 'plain').st_mode & 0o777
    assert plain_mode == 0o666 & ~umask
    assert os.stat(tmp_path / 'atomic').st_mode & 0o777 == plain_mode


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / 'shared.pth'
    path.write_bytes(b'old')
    path.chmod(0o640)
    write_atomically(b'new', path)
    assert path.read_bytes() == b'new'
    assert os.stat(path).st_mode & 0o777 == 0o640
