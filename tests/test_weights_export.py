"""Writing weights files: hash-named, atomic, with the umask's permissions."""
import os
import stat

import pytest
import torch

from xdc_plugin import weights as W


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_hash_named_file_is_readable_by_colleagues(tmp_path, umask_022):
    state_dict = {'w': torch.arange(4.0)}
    path = W.save_hash_named(state_dict, str(tmp_path / 'new' / 'dir'),
                             'mine')
    assert W.sha256_of(path).startswith(W.hash_prefix_in_name(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert torch.equal(torch.load(path, weights_only=True)['w'],
                       state_dict['w'])
    with pytest.raises(ValueError, match='no "-" in the name'):
        W.save_hash_named(state_dict, str(tmp_path), 'my-model')


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / 'out.pth'
    target.write_bytes(b'previous')

    def crash(src, dst):
        raise KeyboardInterrupt  # killed between write and rename
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(KeyboardInterrupt):
        W.save_state_dict({'w': torch.zeros(2)}, str(target))
    assert os.listdir(tmp_path) == ['out.pth']  # no temporary left
    assert target.read_bytes() == b'previous'
    with pytest.raises(FileNotFoundError, match='No folder'):
        W.save_state_dict({}, str(tmp_path / 'missing' / 'out.pth'))
