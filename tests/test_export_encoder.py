"""tools/export_encoder.py: our training checkpoint -> release-layout video
encoder + audio encoder, hash-named, reloadable by the hub entry point."""
import os.path as osp
import re
import runpy

import pytest
import torch
from torch import nn

from xdc_plugin import weights as W
from xdc_plugin.encoders import R2Plus1D18
from xdc_plugin.engine.runner.checkpoint import UntrustedCheckpointError

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = runpy.run_path(osp.join(REPO_DIR, 'tools', 'export_encoder.py'))


def _audio_stand_in():
    # Any module: the release has no audio layout, only the prefix matters.
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))


def _training_state_dict(video):
    state_dict = {}
    for prefix, module in (('video_encoder.', video),
                           ('audio_encoder.', _audio_stand_in())):
        state_dict.update({prefix + k: v for k, v in
                           module.state_dict().items()})
    state_dict.update({
        'heads.video.fc.weight': torch.zeros(8, video.feat_dim),
        'heads.audio.fc.weight': torch.zeros(8, 512),
        'pseudo_labels': torch.zeros(10, dtype=torch.long),
        'data_preprocessor.mean': torch.zeros(3)})
    return state_dict


@pytest.fixture(scope='module')
def trained_video():
    torch.manual_seed(3)
    video = R2Plus1D18(num_classes=0)
    video.train()
    with torch.no_grad():  # non-trivial BN statistics
        video(torch.randn(2, 3, 4, 32, 32))
    return video


def _check_hash_name(path, stem):
    assert re.fullmatch(stem + r'-[0-9a-f]{8}\.pth', osp.basename(path))
    assert W.sha256_of(path)[:8] == path[-12:-4]


def test_export_roundtrip_through_hub(trained_video, tmp_path, capsys):
    state_dict = _training_state_dict(trained_video)
    ckpt = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': state_dict, 'meta': {'epoch': 3}}, ckpt)
    paths = TOOL['main']([str(ckpt), str(tmp_path / 'out')])
    printed = capsys.readouterr().out
    assert paths['video'] in printed and paths['audio'] in printed
    _check_hash_name(paths['video'], 'xdc_epoch_3_video')
    _check_hash_name(paths['audio'], 'xdc_epoch_3_audio')

    video_sd = torch.load(paths['video'], weights_only=True)
    assert set(video_sd) == set(R2Plus1D18(num_classes=0).state_dict())
    audio_sd = torch.load(paths['audio'], weights_only=True)
    assert set(audio_sd) == set(_audio_stand_in().state_dict())
    assert torch.equal(audio_sd['0.weight'],
                       state_dict['audio_encoder.0.weight'])

    # The official loader's semantics: R2Plus1D18(400) + strict=False.
    official = R2Plus1D18(num_classes=400, bn_momentum=0.9)
    result = official.load_state_dict(video_sd, strict=False)
    assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight']
    assert result.unexpected_keys == []

    # Ours, through torch.hub: identical features in eval mode.
    model = torch.hub.load(REPO_DIR, 'xdc_video_encoder', source='local',
                           weights=paths['video'], num_classes=101)
    x = torch.randn(2, 3, 4, 32, 32,
                    generator=torch.Generator().manual_seed(0))
    trained_video.eval(), model.eval(), official.eval()
    with torch.no_grad():
        expected = trained_video(x)
        assert torch.equal(model.forward_features(x), expected)
        assert torch.equal(official.forward_features(x), expected)


def test_plain_mmengine_checkpoint_needs_trust(trained_video, tmp_path):
    # Plain mmengine saves HistoryBuffers, whose pickle holds functions;
    # ours are saved as tensors (WeightsOnlyCheckpointHook).
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('xdc_export_test')
    hub.update_scalar('train/loss', 1.5)
    ckpt = tmp_path / 'iter_10.pth'
    torch.save({'state_dict': _training_state_dict(trained_video),
                'meta': {'iter': 10}, 'message_hub': hub.state_dict()}, ckpt)
    with pytest.raises(UntrustedCheckpointError,
                       match='HistoryBuffer.*--trust-checkpoint'):
        TOOL['export'](str(ckpt), str(tmp_path / 'out'))
    paths = TOOL['main']([str(ckpt), str(tmp_path / 'out'),
                          '--trust-checkpoint', '--name', 'mine'])
    _check_hash_name(paths['video'], 'mine_video')


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling it creates the marker file
        return open, (self.marker, 'w')


def test_hostile_checkpoint_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {}, 'x': _Hostile(str(marker))}, ckpt)
    with pytest.raises(SystemExit) as exit_info:
        TOOL['main']([str(ckpt), str(tmp_path / 'out')])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert 'io.open' in error and '--trust-checkpoint' in error
    assert not marker.exists()
    assert not (tmp_path / 'out').exists()


def test_small_width_exports_but_is_not_the_release(tmp_path):
    video = R2Plus1D18(num_classes=0, width=0.25)
    ckpt = tmp_path / 'small.pth'
    state_dict = {k: v for k, v in _training_state_dict(video).items()
                  if not k.startswith('audio_encoder.')}
    torch.save({'state_dict': state_dict}, ckpt)
    paths = TOOL['export'](str(ckpt), str(tmp_path / 'out'))
    assert paths['audio'] is None
    loaded = R2Plus1D18(num_classes=5, width=0.25)
    W.load_pretrained_weights(loaded, paths['video'])
    with pytest.raises(W.IncompatibleWeightsError, match='stem.0.weight'):
        W.xdc_video_encoder(weights=paths['video'])


def test_not_a_training_checkpoint(tmp_path):
    ckpt = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'backbone.stem.0.weight': torch.zeros(1)}},
               ckpt)
    with pytest.raises(W.IncompatibleWeightsError, match='video_encoder'):
        TOOL['export'](str(ckpt), str(tmp_path / 'out'))
    torch.save({'stem.0.weight': torch.zeros(1)}, ckpt)
    with pytest.raises(W.IncompatibleWeightsError, match='state_dict'):
        TOOL['export'](str(ckpt), str(tmp_path / 'out'))
