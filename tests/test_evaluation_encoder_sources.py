"""Every ENCODER kind loads: random, release, exported pair, training
checkpoint (config from meta, from the work dir or --cfg); bad ones give
clear errors."""
import dataclasses
import hashlib
import os
import os.path as osp

import pytest
import torch
import yaml
from mmengine.logging import MessageHub

import xdc_plugin  # noqa: F401
from xdc_plugin import weights as W
from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.encoders import R2Plus1D18
from xdc_plugin.engine.runner.checkpoint import UntrustedCheckpointError
from xdc_plugin.engine.runner.config import load_config
from xdc_plugin.evaluation.encoder_sources import (CheckpointSource,
                                                   ExportedSource,
                                                   RandomSource,
                                                   ReleaseSource,
                                                   encoder_source,
                                                   load_encoders)
from xdc_plugin.evaluation.run_config import config_from_text, input_settings
from xdc_plugin.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
AVOBJECTS_CFG = osp.join(REPO, 'configs', 'xdc_avobjects.yaml')
VIDEO_IN = torch.rand(2, 3, 4, 32, 32)
AUDIO_IN = torch.randn(2, 1, 40, 50)


@pytest.fixture(scope='module')
def avobjects_cfg():
    return load_config(AVOBJECTS_CFG)


@pytest.fixture(scope='module')
def trained_model(avobjects_cfg):
    torch.manual_seed(1)
    model = MODELS.build(avobjects_cfg.model)
    model.train()
    with torch.no_grad():  # running statistics that differ from the init
        model.video_encoder(torch.rand(2, 3, 4, 32, 32) * 3)
        model.audio_encoder(torch.randn(2, 1, 40, 50) * 2)
    return model.eval()


def _checkpoint(path, model, meta):
    # mmengine's checkpoints hold a MessageHub, which weights_only refuses.
    torch.save({'meta': meta, 'state_dict': model.state_dict(),
                'message_hub': MessageHub.get_instance('eval_test')}, path)
    return str(path)


def _same_outputs(encoders, model):
    with torch.no_grad():
        assert torch.allclose(encoders.modules['video'](VIDEO_IN),
                              model.video_encoder(VIDEO_IN))
        assert torch.allclose(encoders.modules['audio'](AUDIO_IN),
                              model.audio_encoder(AUDIO_IN))


def test_random_is_seeded_and_built_from_cfg(avobjects_cfg):
    rng_before = torch.random.get_rng_state()
    first = load_encoders('random', 'both', cfg=AVOBJECTS_CFG, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    again = load_encoders('random', 'both', cfg=avobjects_cfg, seed=3)
    other = load_encoders('random', 'video', cfg=avobjects_cfg, seed=4)
    assert first.kind == 'random' and first.modalities == ('video', 'audio')
    assert other.modalities == ('video',)
    assert first.modules['video'].feat_dim == 128  # width 0.25
    for key, value in first.state_dict('video').items():
        assert torch.equal(value, again.state_dict('video')[key])
    assert not torch.equal(first.state_dict('video')['stem.0.weight'],
                           other.state_dict('video')['stem.0.weight'])
    assert not first.modules['audio'].training
    # The avobjects input: 48 crop of a 56 short side, 20 ms hop.
    assert first.settings == ClipSpec(short_side=56, crop_size=48, hop_ms=20)


def test_checkpoint_config_from_meta_and_trust(avobjects_cfg, trained_model,
                                               tmp_path):
    path = _checkpoint(tmp_path / 'epoch_2.pth', trained_model,
                       dict(cfg=avobjects_cfg.pretty_text, epoch=2))
    with pytest.raises(UntrustedCheckpointError, match='--trust-checkpoint'):
        load_encoders(path)
    encoders = load_encoders(path, trusted=True)
    assert encoders.kind == 'checkpoint'
    assert encoders.settings.crop_size == 48
    _same_outputs(encoders, trained_model)
    assert 'fc.weight' not in encoders.state_dict('video')
    # --cfg replaces the run's own config.
    other = load_encoders(path, 'audio', trusted=True,
                          cfg=dict(model=avobjects_cfg.to_dict()['model']))
    assert other.modalities == ('audio',) and other.settings.crop_size == 112


def test_checkpoint_config_from_work_dir(avobjects_cfg, trained_model,
                                         tmp_path):
    path = _checkpoint(tmp_path / 'epoch_1.pth', trained_model, {})
    with open(tmp_path / 'xdc_avobjects.yaml', 'w') as f:
        yaml.safe_dump(avobjects_cfg.to_dict(), f)
    encoders = load_encoders(path, trusted=True)
    assert encoders.settings.hop_ms == 20
    _same_outputs(encoders, trained_model)


def test_stored_config_is_parsed_never_run(tmp_path):
    assert config_from_text("a = dict(b=[1, -2.5], c=None, d={'e': 'f'})"
                            ) == {'a': {'b': [1, -2.5], 'c': None,
                                        'd': {'e': 'f'}}}
    marker = tmp_path / 'ran'
    for text in (f"import os\nx = os.system('touch {marker}')",
                 f"x = __import__('os').system('touch {marker}')",
                 f"x = dict(y=open('{marker}', 'w'))"):
        with pytest.raises(ValueError):
            config_from_text(text)
    assert not marker.exists()


def test_pipeline_arguments_give_input_settings():
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='Wrapper', dataset=dict(num_frames=4, pipeline=[
            dict(type='xdc.SampleClip', num_frames=16, frame_rate=15),
            dict(type='VideoCrop', size=96),
            dict(type='AudioLogMel', n_mels=64, hop_ms=5)]))))
    assert input_settings(cfg) == ClipSpec(
        num_frames=16, frame_rate=15, crop_size=96, n_mels=64, hop_ms=5)


def test_exported_pair_is_found_from_either_file(trained_model, tmp_path,
                                                 avobjects_cfg):
    paths = W.export_encoders(trained_model.state_dict(),
                              str(tmp_path / 'out'), 'xdc_epoch_4')
    for given in (paths['video'], paths['audio']):
        encoders = load_encoders(given, 'both', cfg=AVOBJECTS_CFG)
        assert encoders.kind == 'exported'
        _same_outputs(encoders, trained_model)
    # Without a config the widths come from the weights.
    assert load_encoders(paths['audio'], 'audio').modules[
        'audio'].feat_dim == 128
    os.remove(paths['audio'])
    with pytest.raises(ValueError, match='no audio encoder.*_audio-'):
        load_encoders(paths['video'], 'both')


@pytest.fixture
def fake_release(monkeypatch, tmp_path):
    torch.manual_seed(5)
    state_dict = R2Plus1D18(num_classes=0).state_dict()
    raw = tmp_path / 'raw.pth'
    torch.save(state_dict, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    os.replace(raw, tmp_path / f'fake_xdc-{digest[:8]}.pth')
    cfg = dataclasses.replace(W.PRETRAINED_CFGS[W.DEFAULT_PRETRAINING],
                              name='fake_xdc', pth_hash=digest[:8])
    monkeypatch.setitem(W.PRETRAINED_CFGS, 'fake_xdc', cfg)
    monkeypatch.setenv(W.BASE_URL_ENV, f'file://{tmp_path}/')
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    return state_dict


def test_release_is_video_only(fake_release):
    with pytest.raises(ValueError, match='only video encoders'):
        load_encoders('fake_xdc', 'both')
    encoders = load_encoders('xdc://fake_xdc', 'video', cfg=AVOBJECTS_CFG)
    assert encoders.kind == 'release'
    # The official architecture whatever the config's width; its input
    # settings are the config's.
    for key, value in fake_release.items():
        assert torch.equal(encoders.state_dict('video')[key], value), key
    assert encoders.settings.crop_size == 48


def test_unknown_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='release name.*random'):
        load_encoders(str(tmp_path / 'nothing.pth'))
    with pytest.raises(ValueError, match="'video', 'audio' or 'both'"):
        load_encoders('random', 'image')
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError):
        load_encoders(str(text), trusted=False)


# The demo's X3D recipe at a tiny width (the input settings are the demo's).
X3D_CFG = osp.join(REPO, 'configs', 'xdc_demo_x3d.yaml')
X3D_TINY = ['model.video_encoder.backbone.gamma_w=0.25',
            'model.video_encoder.backbone.gamma_d=0.5',
            'model.audio_encoder.width=0.125']


def test_host_backbone_encoders_from_every_source(tmp_path):
    cfg = load_config(X3D_CFG, X3D_TINY)
    random = load_encoders('random', 'video', cfg=cfg, seed=3)
    video = random.modules['video']
    assert type(video).__name__ == 'HostBackbone'
    assert random.settings.crop_size == 40
    # X3D's own init_weights ran, as in a training run: the last BN of
    # each block starts at 0 (zero_init_residual).
    assert not random.state_dict('video')['layer1.0.conv3.bn.weight'].any()
    again = load_encoders('random', 'video', cfg=cfg, seed=3)
    for key, value in random.state_dict('video').items():
        assert torch.equal(value, again.state_dict('video')[key]), key

    torch.manual_seed(1)
    model = MODELS.build(cfg.model).eval()
    clips = torch.rand(2, 3, 8, 40, 40)
    paths = W.export_encoders(model.state_dict(), str(tmp_path), 'x3d')
    exported = load_encoders(paths['video'], 'both', cfg=cfg)
    checkpoint = load_encoders(_checkpoint(tmp_path / 'epoch_1.pth', model, {
        'cfg': cfg.pretty_text}), 'both', trusted=True)
    for encoders in (exported, checkpoint):
        with torch.no_grad():
            assert torch.allclose(encoders.modules['video'](clips),
                                  model.video_encoder(clips))
            assert torch.allclose(encoders.modules['audio'](AUDIO_IN),
                                  model.audio_encoder(AUDIO_IN))
    with pytest.raises(ValueError, match=r'not our encoder.*--cfg'):
        load_encoders(paths['video'], 'video')


def test_each_encoder_string_is_dispatched_to_one_source(
        fake_release, trained_model, tmp_path):
    paths = W.export_encoders(trained_model.state_dict(),
                              str(tmp_path / 'out'), 'xdc_epoch_4')
    checkpoint = _checkpoint(tmp_path / 'epoch_4.pth', trained_model, {})
    official = tmp_path / 'official.pth'  # a video file not named by export
    torch.save(fake_release, official)
    expected = {'random': RandomSource, 'fake_xdc': ReleaseSource,
                'xdc://fake_xdc': ReleaseSource,
                paths['video']: ExportedSource,
                paths['audio']: ExportedSource,
                str(official): ExportedSource,
                checkpoint: CheckpointSource}
    for encoder, kind in expected.items():
        assert type(encoder_source(encoder)) is kind, encoder
    assert load_encoders(str(official), 'video').kind == 'exported'
    # Neither a file, a release nor random: one error naming the choices.
    for unknown in ('Random', 'xdc://no_such_release', str(tmp_path),
                    str(tmp_path / 'missing.pth')):
        with pytest.raises(FileNotFoundError,
                           match=r"not a file, a release name \(.*fake_xdc"
                                 r".*\) or 'random'"):
            encoder_source(unknown)
