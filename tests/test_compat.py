"""The host fixes in xdc_plugin.compat, each against the breakage it fixes."""
import os
import socket
import subprocess
import sys

import pytest
import torch

import xdc_plugin  # noqa: F401  (applies the fixes)
from xdc_plugin import compat


def test_pytorchvideo_transforms_import():
    from pytorchvideo.transforms import ShortSideScale
    clip = torch.rand(3, 2, 20, 40)
    assert ShortSideScale(10)(clip).shape == (3, 2, 10, 20)


def test_package_utils_work_without_pkg_resources():
    from mmengine.utils import get_installed_path, is_installed
    assert is_installed('mmaction2')
    assert not is_installed('surely-not-an-installed-package')
    assert os.path.isfile(os.path.join(get_installed_path('mmaction2'),
                                       '__init__.py'))


def test_mmaction_models_import_and_drn_explains_itself():
    import mmaction.models  # noqa: F401
    from mmaction.models.localizers.drn.drn import DRN
    from mmaction.registry import MODELS
    assert MODELS.get('Recognizer3D') is not None
    with pytest.raises(ImportError, match='mmaction2#2714'):
        DRN()


def test_local_writes_are_atomic(tmp_path, monkeypatch):
    from mmengine.fileio.backends.local_backend import LocalBackend
    path = tmp_path / 'sub' / 'epoch_1.pth'
    LocalBackend().put(b'complete', path)
    assert path.read_bytes() == b'complete'

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'fsync', crash)  # killed mid-write
    with pytest.raises(KeyboardInterrupt):
        LocalBackend().put(b'partial', path)
    assert path.read_bytes() == b'complete'
    assert sorted(os.listdir(path.parent)) == ['epoch_1.pth']


def test_trusted_torch_load_is_scoped(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'ckpt.pth'
    buffer = HistoryBuffer()
    buffer.update(1.0)
    buffer.update(2.0)
    torch.save({'buffer': buffer}, path)
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path)  # torch >= 2.6 refuses by default
    with compat.trusted_torch_load():
        assert torch.load(path)['buffer'].mean() == 1.5
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_pytorch_launcher_initialises_gloo_on_cpu():
    env = dict(os.environ, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()),
               CUDA_VISIBLE_DEVICES='')
    code = ('import xdc_plugin, torch.distributed as d\n'
            'from mmengine.dist import init_dist\n'
            "init_dist('pytorch', backend='gloo')\n"
            'print(d.get_backend(), d.get_world_size())\n')
    out = subprocess.run([sys.executable, '-c', code], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('gloo 1')
