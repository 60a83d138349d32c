"""Released-weights loading: table, strict loader, cache/download, hub entry,
``xdc://`` scheme. No network: the "release" is a local folder served via a
``file://`` URL and the cache is a temporary torch.hub dir."""
import dataclasses
import hashlib
import os
import os.path as osp

import pytest
import torch

import xdc_plugin  # noqa: F401
from xdc_plugin.models import pretrained as P
from xdc_plugin.models.backbone import XDCBackbone
from xdc_plugin.models.video_resnet import R2Plus1D18

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _randomised_official_state_dict(seed=0):
    torch.manual_seed(seed)
    model = R2Plus1D18(num_classes=0)
    for name, buf in model.named_buffers():
        if name.endswith('running_mean'):
            buf.normal_()
        elif name.endswith('running_var'):
            buf.uniform_(0.5, 2.0)
    for name, p in model.named_parameters():
        if '.1.' in name or name.startswith('stem.1') or 'stem.4' in name:
            p.data.uniform_(0.5, 1.5)
    return model.state_dict()


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    """(state dict, path of a release-like file, its sha256)."""
    folder = tmp_path_factory.mktemp('release')
    state_dict = _randomised_official_state_dict()
    raw = folder / 'raw.pth'
    torch.save(state_dict, raw)
    digest = _sha256(raw)
    path = folder / f'fake_xdc-{digest[:8]}.pth'
    os.replace(raw, path)
    return state_dict, str(path), digest


@pytest.fixture
def fake_release(official, monkeypatch, tmp_path):
    """A release entry 'fake_xdc' served from a file:// folder, and an
    empty torch.hub dir."""
    _, path, digest = official
    cfg = P.PretrainedCfg('fake_xdc', 'test data', 1.0, 2.0, digest[:8],
                          '00000000')
    monkeypatch.setitem(P.PRETRAINED_CFGS, 'fake_xdc', cfg)
    monkeypatch.setenv(P.BASE_URL_ENV,
                       'file://' + osp.dirname(path) + '/')
    monkeypatch.delenv(P.OFFLINE_ENV, raising=False)
    hub_dir = tmp_path / 'hub'
    monkeypatch.setattr(torch.hub, '_hub_dir', str(hub_dir))
    return cfg, hub_dir / 'checkpoints'


def _assert_same_encoder(model, state_dict):
    loaded = model.state_dict()
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        assert torch.equal(loaded[key], value), key


def test_table_is_the_release():
    cfgs = P.PRETRAINED_CFGS
    assert list(cfgs)[0] == P.DEFAULT_PRETRAINING
    assert {c.name: (c.pth_hash, c.pkl_hash, c.ucf101, c.hmdb51)
            for c in cfgs.values()} == {
        'r2plus1d_18_xdc_ig65m_kinetics': ('f24f6ffb', '3ece601e', 95.5, 68.9),
        'r2plus1d_18_xdc_ig65m_random': ('189d23f4', 'dcd2dc42', 94.6, 66.5),
        'r2plus1d_18_xdc_audioset': ('f29ffe8f', '6508c8a5', 93.0, 63.7),
        'r2plus1d_18_fs_kinetics': ('622bdad9', '1b1f26af', 94.2, 65.1),
        'r2plus1d_18_fs_imagenet': ('ff446670', '0ee8b845', 84.0, 48.1)}
    cfg = cfgs[P.DEFAULT_PRETRAINING]
    assert cfg.url(P.BASE_URL) == (
        'https://github.com/HumamAlwassel/XDC/releases/download/'
        'model_weights/r2plus1d_18_xdc_ig65m_kinetics-f24f6ffb.pth')
    assert cfg.pkl_url(P.BASE_URL).endswith(
        'r2plus1d_18_xdc_ig65m_kinetics-3ece601e.pkl')
    text = P.list_pretrained()
    for c in cfgs.values():
        assert c.name in text and c.file_name in text
        assert c.pkl_file_name in text and f'{c.hmdb51:.1f}' in text
    with pytest.raises(KeyError, match='r2plus1d_18_fs_kinetics'):
        P.get_pretrained_cfg('r2plus1d_34')


def _download_tool():
    import runpy
    return runpy.run_path(osp.join(REPO_DIR, 'tools', 'download_weights.py'))


def test_download_tool_lists_the_table(capsys):
    _download_tool()['main'](['--list'])
    out = capsys.readouterr().out
    assert 'r2plus1d_18_fs_imagenet-ff446670.pth' in out and '84.0' in out


def test_download_tool_fetches_into_the_cache(fake_release, official,
                                              capsys):
    cfg, cache = fake_release
    _download_tool()['main']([cfg.name])
    cached = cache / cfg.file_name
    assert cached.read_bytes() == open(official[1], 'rb').read()
    assert str(cached) in capsys.readouterr().out


def test_caffe2_pkl_is_fetched_and_hash_checked(fake_release, monkeypatch,
                                                tmp_path):
    cfg, cache = fake_release
    payload = b'caffe2 blobs'
    digest = hashlib.sha256(payload).hexdigest()
    cfg = dataclasses.replace(cfg, pkl_hash=digest[:8])
    monkeypatch.setitem(P.PRETRAINED_CFGS, cfg.name, cfg)
    release = tmp_path / 'release'
    release.mkdir()
    (release / cfg.pkl_file_name).write_bytes(payload)
    monkeypatch.setenv(P.BASE_URL_ENV, f'file://{release}/')
    path = P.download_pretrained(cfg.name, caffe2=True, progress=False)
    assert path == str(cache / cfg.pkl_file_name)
    (release / cfg.pkl_file_name).write_bytes(b'tampered')
    os.remove(path)
    with pytest.raises(P.IncompatibleWeightsError, match='hash'):
        P.download_pretrained(cfg.name, caffe2=True, progress=False)


def test_official_layout_loads_strictly(official):
    state_dict, path, _ = official
    # R2Plus1D18(num_classes=0) has exactly the release's keys.
    assert not any(k.startswith('fc.') for k in state_dict)
    model = R2Plus1D18(num_classes=101)
    P.load_official_state_dict(model, state_dict)  # only fc missing
    _assert_same_encoder(model, state_dict)
    result = R2Plus1D18(num_classes=101).load_state_dict(state_dict,
                                                         strict=False)
    assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight']
    assert result.unexpected_keys == []
    # num_batches_tracked may be absent (older/other exporters).
    no_counters = {k: v for k, v in state_dict.items()
                   if not k.endswith('num_batches_tracked')}
    P.load_official_state_dict(R2Plus1D18(num_classes=5), no_counters)


def test_renamed_extra_and_shape_errors_name_the_key(official):
    state_dict, _, _ = official
    renamed = dict(state_dict)
    renamed['layer2.0.conv2.0.0.weights'] = renamed.pop(
        'layer2.0.conv2.0.0.weight')
    with pytest.raises(P.IncompatibleWeightsError) as err:
        P.load_official_state_dict(R2Plus1D18(num_classes=3), renamed)
    assert "'layer2.0.conv2.0.0.weights'" in str(err.value)  # unexpected
    assert "'layer2.0.conv2.0.0.weight'" in str(err.value)   # missing
    wrong = dict(state_dict)
    wrong['layer4.1.conv1.1.running_var'] = torch.ones(7)
    with pytest.raises(P.IncompatibleWeightsError,
                       match=r'layer4\.1\.conv1\.1\.running_var: file \(7,\) '
                             r'vs model \(512,\)'):
        P.load_official_state_dict(R2Plus1D18(num_classes=3), wrong)
    # torchvision's r2plus1d_18 mid widths differ: a clear shape error.
    assert state_dict['layer2.0.conv2.0.0.weight'].shape == (288, 128, 1, 3,
                                                             3)
    with pytest.raises(P.IncompatibleWeightsError, match='unexpected keys'):
        P.load_official_state_dict(
            R2Plus1D18(num_classes=3),
            {**state_dict, 'fc.weight': torch.zeros(400, 512)},
            allow_missing=('fc.weight', 'fc.bias'))
    with pytest.raises(P.IncompatibleWeightsError, match='export_encoder'):
        P.load_official_state_dict(
            R2Plus1D18(num_classes=3),
            {'video_encoder.' + k: v for k, v in state_dict.items()})


def test_wrapped_file_refused(official, tmp_path):
    state_dict, _, _ = official
    path = tmp_path / 'wrapped.pth'
    torch.save({'state_dict': {'stem.0.weight': torch.zeros(1)}}, path)
    with pytest.raises(P.IncompatibleWeightsError, match='export_encoder'):
        P.xdc_video_encoder(weights=str(path))


def test_local_file_fc_fresh_and_bn_momentum(official):
    state_dict, path, _ = official
    model = P.xdc_video_encoder(weights=path, num_classes=101)
    _assert_same_encoder(model, state_dict)
    assert model.fc.weight.shape == (101, 512)
    assert torch.all(model.fc.bias == 0)
    assert 0.005 < model.fc.weight.std().item() < 0.015
    momenta = {m.momentum for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm3d)}
    epsilons = {m.eps for m in model.modules()
                if isinstance(m, torch.nn.BatchNorm3d)}
    assert momenta == {0.1} and epsilons == {1e-3}
    official_like = P.xdc_video_encoder(weights=path, num_classes=0,
                                        bn_momentum=0.9)
    assert official_like.fc is None
    assert {m.momentum for m in official_like.modules()
            if isinstance(m, torch.nn.BatchNorm3d)} == {0.9}
    model.eval(), official_like.eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), official_like(x))


def test_local_file_with_wrong_hash_in_name_refused(official, tmp_path):
    _, path, digest = official
    bad = tmp_path / f'mine-{"0" * 8 if digest[0] != "0" else "1" * 8}.pth'
    os.symlink(path, bad)
    with pytest.raises(P.IncompatibleWeightsError, match='sha256'):
        P.xdc_video_encoder(weights=str(bad))


def test_download_from_file_url_release(official, fake_release, monkeypatch):
    state_dict, _, _ = official
    cfg, checkpoints = fake_release
    model = P.xdc_video_encoder('fake_xdc', num_classes=10, progress=False)
    _assert_same_encoder(model, state_dict)
    cached = checkpoints / cfg.file_name
    assert cached.is_file()  # torch.hub layout: <hub_dir>/checkpoints/<file>

    # Cache hit: no network at all, even with downloads allowed.
    def no_network(*args, **kwargs):
        raise AssertionError('download attempted despite the cache')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    monkeypatch.setenv(P.BASE_URL_ENV, 'http://unreachable.invalid/')
    model = P.xdc_video_encoder('fake_xdc', num_classes=10)
    _assert_same_encoder(model, state_dict)
    monkeypatch.setenv(P.OFFLINE_ENV, '1')
    assert P.download_pretrained('fake_xdc') == str(cached)


def test_offline_without_cache_is_a_clear_error(fake_release, monkeypatch):
    monkeypatch.setenv(P.OFFLINE_ENV, '1')
    with pytest.raises(FileNotFoundError, match='fake_xdc-.*not in the cache'
                       '|not in the cache'):
        P.xdc_video_encoder('fake_xdc')
    with pytest.raises(FileNotFoundError, match='downloads are disabled'):
        P.download_pretrained('fake_xdc', offline=True)


def test_download_with_wrong_hash_refused(official, fake_release,
                                          monkeypatch):
    cfg, checkpoints = fake_release
    # The release folder holds the file under a name whose prefix lies.
    _, path, digest = official
    wrong = '0' * 8 if not digest.startswith('0') else '1' * 8
    lying = dataclasses.replace(cfg, name='lying', pth_hash=wrong)
    monkeypatch.setitem(P.PRETRAINED_CFGS, 'lying', lying)
    os.symlink(path, osp.join(osp.dirname(path), lying.file_name))
    with pytest.raises(P.IncompatibleWeightsError, match='invalid hash'):
        P.download_pretrained('lying', progress=False)
    assert not (checkpoints / lying.file_name).exists()


def test_cached_file_with_wrong_hash_refused(official, fake_release):
    _, path, _ = official
    _, checkpoints = fake_release
    checkpoints.mkdir(parents=True)
    official_name = P.get_pretrained_cfg(P.DEFAULT_PRETRAINING).file_name
    os.symlink(path, checkpoints / official_name)
    with pytest.raises(P.IncompatibleWeightsError,
                       match="does not start with 'f24f6ffb'"):
        P.xdc_video_encoder(offline=True)


def test_torch_hub_load_local_repo(official):
    state_dict, path, _ = official
    model = torch.hub.load(REPO_DIR, 'xdc_video_encoder', source='local',
                           pretraining=P.DEFAULT_PRETRAINING, weights=path,
                           num_classes=7)
    assert isinstance(model, R2Plus1D18) and model.fc.out_features == 7
    _assert_same_encoder(model, state_dict)


def test_xdc_scheme_and_backbone_init_cfg(official, fake_release):
    from mmengine.runner import CheckpointLoader, load_checkpoint
    state_dict, _, _ = official
    loaded = CheckpointLoader.load_checkpoint('xdc://fake_xdc')
    assert set(loaded) == set(state_dict)
    backbone = XDCBackbone(init_cfg=dict(type='Pretrained',
                                         checkpoint='xdc://fake_xdc'))
    backbone.init_weights()
    _assert_same_encoder(backbone, state_dict)
    assert set(backbone.state_dict()) == set(state_dict)
    # mmengine's own load_checkpoint goes through the scheme too.
    other = XDCBackbone()
    load_checkpoint(other, 'xdc://fake_xdc', strict=True)
    _assert_same_encoder(other, state_dict)
    # In a list of init configs, Pretrained still loads strictly, last.
    listed = XDCBackbone(init_cfg=[
        dict(type='Pretrained', checkpoint='xdc://fake_xdc'),
        dict(type='Constant', layer='Conv3d', val=0.0)])
    listed.init_weights()
    _assert_same_encoder(listed, state_dict)
    # A backbone of another width is refused by name, not half-loaded.
    small = XDCBackbone(width=0.25, init_cfg=dict(
        type='Pretrained', checkpoint='xdc://fake_xdc'))
    with pytest.raises(P.IncompatibleWeightsError,
                       match=r'stem\.0\.weight: file \(45, 3, 1, 7, 7\)'):
        small.init_weights()


def test_backbone_feature_map_and_freezing():
    backbone = XDCBackbone(width=0.25, frozen_stages=1, norm_eval=True)
    backbone.train()
    out = backbone(torch.randn(2, 3, 8, 32, 32))
    assert out.shape == (2, 128, 1, 2, 2)
    assert not any(p.requires_grad for p in backbone.stem.parameters())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not any(m.training for m in backbone.modules()
                   if isinstance(m, torch.nn.BatchNorm3d))
