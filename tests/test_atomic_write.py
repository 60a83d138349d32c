"""xdc_plugin.atomic_write: whole files only, with a plain write's mode,
never through a link; a failed write says which file and replaces nothing;
the temporary files of a killed writer are found and removed, nothing
else."""
import os
import stat
import subprocess
import sys

import pytest

from xdc_plugin.atomic_write import remove_orphan_temporaries, write_atomically

KILLED_WRITER = """
import os, sys
os.replace = lambda *args: os.kill(os.getpid(), 9)  # killed before renaming
from xdc_plugin.atomic_write import write_atomically
write_atomically(b'x' * 1000, sys.argv[1])
"""


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


def test_a_link_at_the_path_is_replaced_not_written_through(tmp_path):
    target = tmp_path / 'precious'
    target.write_bytes(b'keep me')
    target.chmod(0o600)
    for name in ('last_checkpoint', 'dangling'):
        link = tmp_path / 'work' / name
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target if name == 'last_checkpoint' else
                        tmp_path / 'created_through_the_link')
        write_atomically(b'new', link)
        assert not link.is_symlink() and link.read_bytes() == b'new'
        # The mode of a new file (0666 minus the umask), not the target's.
        assert stat.S_IMODE(os.stat(link).st_mode) != 0o600
    assert target.read_bytes() == b'keep me'
    assert not (tmp_path / 'created_through_the_link').exists()


def test_a_failed_write_names_the_path_and_replaces_nothing(tmp_path,
                                                            monkeypatch):
    import errno

    from xdc_plugin.atomic_write import WriteError
    path = tmp_path / 'epoch_1.pth'
    write_atomically(b'previous', path)

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(WriteError) as info:
        write_atomically(b'next', path)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (
        f'could not write {path}: No space left on device; nothing was '
        'replaced (the file there before, if any, is intact)')
    assert path.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['epoch_1.pth']


def test_the_temporary_file_of_a_killed_writer_is_removed(tmp_path):
    out = subprocess.run([sys.executable, '-c', KILLED_WRITER,
                          str(tmp_path / 'epoch_3.pth')], timeout=120)
    assert out.returncode == -9
    orphan, = os.listdir(tmp_path)
    assert orphan.startswith('.tmp-') and orphan.endswith('-epoch_3.pth')
    # Not ours, or not a plain file in this folder: kept.
    kept = ['.tmp-notours.pth', 'epoch_2.pth', 'notes.tmp-0123.pth']
    for name in kept:
        (tmp_path / name).write_bytes(b'keep')
    like_ours = '.tmp-' + '0' * 32 + '-'
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / (like_ours + 'epoch_1.pth')).write_bytes(b'below')
    (tmp_path / (like_ours + 'folder')).mkdir()
    (tmp_path / (like_ours + 'link')).symlink_to(tmp_path / 'epoch_2.pth')

    assert remove_orphan_temporaries(tmp_path) == [(orphan, 1000)]
    assert sorted(os.listdir(tmp_path)) == sorted(
        kept + ['sub', like_ours + 'folder', like_ours + 'link'])
    assert (tmp_path / 'epoch_2.pth').read_bytes() == b'keep'
    assert remove_orphan_temporaries(tmp_path / 'missing') == []
