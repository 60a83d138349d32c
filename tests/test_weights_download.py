"""Downloads into torch.hub's cache, hash checks and the offline switch. No
network: the "release" is a local folder served via a ``file://`` URL and
the cache is a temporary torch.hub dir (conftest ``fake_release``)."""
import dataclasses
import hashlib
import os
import os.path as osp
import runpy

import pytest
import torch
from conftest import assert_same_encoder

from xdc_plugin import weights as W

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_download_tool_fetches_into_the_cache(fake_release, official,
                                              capsys):
    cfg, cache = fake_release
    tool = runpy.run_path(osp.join(REPO_DIR, 'tools', 'download_weights.py'))
    tool['main']([cfg.name])
    cached = cache / cfg.file_name
    assert cached.read_bytes() == open(official[1], 'rb').read()
    assert str(cached) in capsys.readouterr().out


def test_caffe2_pkl_is_fetched_and_hash_checked(fake_release, monkeypatch,
                                                tmp_path):
    cfg, cache = fake_release
    payload = b'caffe2 blobs'
    digest = hashlib.sha256(payload).hexdigest()
    cfg = dataclasses.replace(cfg, pkl_hash=digest[:8])
    monkeypatch.setitem(W.PRETRAINED_CFGS, cfg.name, cfg)
    release = tmp_path / 'release'
    release.mkdir()
    (release / cfg.pkl_file_name).write_bytes(payload)
    monkeypatch.setenv(W.BASE_URL_ENV, f'file://{release}/')
    path = W.download_pretrained(cfg.name, caffe2=True, progress=False)
    assert path == str(cache / cfg.pkl_file_name)
    (release / cfg.pkl_file_name).write_bytes(b'tampered')
    os.remove(path)
    with pytest.raises(W.IncompatibleWeightsError, match='hash'):
        W.download_pretrained(cfg.name, caffe2=True, progress=False)


def test_download_from_file_url_release(official, fake_release, monkeypatch):
    state_dict, _, _ = official
    cfg, checkpoints = fake_release
    model = W.xdc_video_encoder('fake_xdc', num_classes=10, progress=False)
    assert_same_encoder(model, state_dict)
    cached = checkpoints / cfg.file_name
    assert cached.is_file()  # torch.hub layout: <hub_dir>/checkpoints/<file>

    # Cache hit: no network at all, even with downloads allowed.
    def no_network(*args, **kwargs):
        raise AssertionError('download attempted despite the cache')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    monkeypatch.setenv(W.BASE_URL_ENV, 'http://unreachable.invalid/')
    model = W.xdc_video_encoder('fake_xdc', num_classes=10)
    assert_same_encoder(model, state_dict)
    monkeypatch.setenv(W.OFFLINE_ENV, '1')
    assert W.download_pretrained('fake_xdc') == str(cached)


def test_offline_without_cache_is_a_clear_error(fake_release, monkeypatch):
    monkeypatch.setenv(W.OFFLINE_ENV, '1')
    with pytest.raises(FileNotFoundError,
                       match="'fake_xdc' are not in the cache"):
        W.xdc_video_encoder('fake_xdc')
    monkeypatch.delenv(W.OFFLINE_ENV)
    with pytest.raises(FileNotFoundError, match='downloads are disabled'):
        W.download_pretrained('fake_xdc', offline=True)


def test_download_with_wrong_hash_refused(official, fake_release,
                                          monkeypatch):
    cfg, checkpoints = fake_release
    # The release folder holds the file under a name whose prefix lies.
    _, path, digest = official
    wrong = '0' * 8 if not digest.startswith('0') else '1' * 8
    lying = dataclasses.replace(cfg, name='lying', pth_hash=wrong)
    monkeypatch.setitem(W.PRETRAINED_CFGS, 'lying', lying)
    link = osp.join(osp.dirname(path), lying.file_name)
    if not osp.lexists(link):
        os.symlink(path, link)
    with pytest.raises(W.IncompatibleWeightsError, match='invalid hash'):
        W.download_pretrained('lying', progress=False)
    assert not (checkpoints / lying.file_name).exists()


def test_cached_file_with_wrong_hash_refused(official, fake_release):
    _, path, _ = official
    _, checkpoints = fake_release
    checkpoints.mkdir(parents=True)
    official_name = W.get_pretrained_cfg(W.DEFAULT_PRETRAINING).file_name
    os.symlink(path, checkpoints / official_name)
    with pytest.raises(W.IncompatibleWeightsError,
                       match="does not start with 'f24f6ffb'"):
        W.xdc_video_encoder(offline=True)


def test_hash_prefix_in_name():
    assert W.hash_prefix_in_name('/a/xdc-0badc0de.pth') == '0badc0de'
    assert W.hash_prefix_in_name('r2-3ece601e.pkl') == '3ece601e'
    # Too short to be a hash, or not a weights file: no check.
    assert W.hash_prefix_in_name('epoch-1.pth') is None
    assert W.hash_prefix_in_name('notes-0badc0de.txt') is None
