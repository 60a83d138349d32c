"""The release table and ``tools/download_weights.py --list``."""
import os.path as osp
import runpy

import pytest

from xdc_plugin import weights as W

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_table_is_the_release():
    cfgs = W.PRETRAINED_CFGS
    assert list(cfgs)[0] == W.DEFAULT_PRETRAINING
    assert {c.name: (c.pth_hash, c.pkl_hash, c.ucf101, c.hmdb51)
            for c in cfgs.values()} == {
        'r2plus1d_18_xdc_ig65m_kinetics': ('f24f6ffb', '3ece601e', 95.5, 68.9),
        'r2plus1d_18_xdc_ig65m_random': ('189d23f4', 'dcd2dc42', 94.6, 66.5),
        'r2plus1d_18_xdc_audioset': ('f29ffe8f', '6508c8a5', 93.0, 63.7),
        'r2plus1d_18_fs_kinetics': ('622bdad9', '1b1f26af', 94.2, 65.1),
        'r2plus1d_18_fs_imagenet': ('ff446670', '0ee8b845', 84.0, 48.1)}
    cfg = cfgs[W.DEFAULT_PRETRAINING]
    assert cfg.url(W.BASE_URL) == (
        'https://github.com/HumamAlwassel/XDC/releases/download/'
        'model_weights/r2plus1d_18_xdc_ig65m_kinetics-f24f6ffb.pth')
    assert cfg.pkl_url(W.BASE_URL).endswith(
        'r2plus1d_18_xdc_ig65m_kinetics-3ece601e.pkl')
    text = W.list_pretrained()
    for c in cfgs.values():
        assert c.name in text and c.file_name in text
        assert c.pkl_file_name in text and f'{c.hmdb51:.1f}' in text
    with pytest.raises(KeyError, match='r2plus1d_18_fs_kinetics'):
        W.get_pretrained_cfg('r2plus1d_34')
    assert W.get_pretrained_cfg('xdc://r2plus1d_18_xdc_audioset') is \
        cfgs['r2plus1d_18_xdc_audioset']


def test_base_url_env_moves_every_url(monkeypatch):
    monkeypatch.setenv(W.BASE_URL_ENV, 'file:///mirror/xdc')
    cfg = W.get_pretrained_cfg('r2plus1d_18_fs_imagenet')
    assert cfg.url() == ('file:///mirror/xdc/'
                         'r2plus1d_18_fs_imagenet-ff446670.pth')
    assert cfg.pkl_url() == ('file:///mirror/xdc/'
                             'r2plus1d_18_fs_imagenet-0ee8b845.pkl')
    assert 'base URL: file:///mirror/xdc' in W.list_pretrained()


def test_download_tool_lists_the_table(capsys):
    tool = runpy.run_path(osp.join(REPO_DIR, 'tools', 'download_weights.py'))
    tool['main'](['--list'])
    out = capsys.readouterr().out
    assert 'r2plus1d_18_fs_imagenet-ff446670.pth' in out and '84.0' in out
