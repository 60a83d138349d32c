"""The fast decoding path gives what the previous one gave: frames resized
while decoding match full-size RGB frames resized by torchvision (within
``assert_resized_frames_close``'s tolerance), and audio resampled in one
call equals the former per-frame resampling, sample for sample, on
``../shared/data/realclips`` and avobjects."""
import csv
import glob
import os.path as osp

import av
import numpy as np
import pytest
import torch
from conftest import assert_resized_frames_close
from torchvision.transforms.v2 import functional as TF

from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.data import decode
from xdc_plugin.data.decode import (decode_clip, decode_clips, probe,
                                    short_side_size)
from xdc_plugin.data.transforms import AudioLogMel, DecodeAVClip, VideoResize

SR = 16000


def _files(realclips_dir, avobjects_dir):
    with open(osp.join(realclips_dir, 'manifest.csv')) as f:
        paths = [osp.join(realclips_dir, r['path']) for r in csv.DictReader(f)]
    clips = sorted(glob.glob(osp.join(avobjects_dir, 'clips', '*', '*.mp4')))
    assert len(paths) == 24 and len(clips) == 240
    return paths + clips[::60]


def _centre(info):
    return max(info.duration - 8 / info.fps, 0) / 2


def _per_frame_resampling(frames, sample_rate):
    """The former audio path: each decoded frame through the resampler."""
    resampler = av.AudioResampler(format='flt', layout='mono',
                                  rate=sample_rate)
    out = []
    for frame in frames:
        frame.pts = None
        out += resampler.resample(frame)
    out += resampler.resample(None)
    return np.concatenate([o.to_ndarray().reshape(-1) for o in out])


def test_resize_while_decoding_matches_torchvision(realclips_dir,
                                                   avobjects_dir):
    for path in _files(realclips_dir, avobjects_dir):
        info = probe(path)
        full, _ = decode_clip(path, _centre(info), 8, None, None)
        for short_side in (56, 128):
            size = short_side_size(info.height, info.width, short_side)
            ref = TF.resize(full.permute(0, 3, 1, 2), list(size),
                            antialias=True)
            video, _, _ = decode_clips(path, [_centre(info)], 8,
                                       audio_duration=None,
                                       modalities=('video',),
                                       short_side=short_side)
            assert_resized_frames_close(video[0].permute(0, 3, 1, 2), ref,
                                        (path, short_side))


def test_audio_and_log_mel_equal_per_frame_resampling(
        realclips_dir, avobjects_dir, monkeypatch):
    logmel = AudioLogMel()
    for path in _files(realclips_dir, avobjects_dir):
        start = _centre(probe(path))
        _, audio = decode_clip(path, start, 8, None, 2.0, SR)
        with monkeypatch.context() as patch:
            patch.setattr(decode, '_resample', _per_frame_resampling)
            _, ref = decode_clip(path, start, 8, None, 2.0, SR)
        torch.testing.assert_close(audio, ref, rtol=0, atol=1e-6, msg=path)
        mel = logmel(dict(audio=audio[None], sample_rate=SR))['audio']
        ref_mel = logmel(dict(audio=ref[None], sample_rate=SR))['audio']
        torch.testing.assert_close(mel, ref_mel, rtol=1e-5, atol=1e-4)


def test_without_resize_frames_are_full_size(media_dir):
    path = str(media_dir / 'timecode.mp4')
    video, _, info = decode_clips(path, [1.0], 8, audio_duration=None,
                                  modalities=('video',))
    assert video.shape == (1, 8, info.height, info.width, 3)
    wide, _, _ = decode_clips(path, [1.0], 8, audio_duration=None,
                              modalities=('video',), short_side=48)
    assert wide.shape == (1, 8, 48, 48, 3)


def _pipeline(between=()):
    return [dict(type='SampleClip', num_frames=8, mode='center'),
            dict(type='DecodeAVClip'), *between,
            dict(type='VideoResize', short_side=24),
            dict(type='PackAVInputs')]


def test_dataset_resizes_in_the_decoder_only_when_resize_follows(media_dir):
    common = dict(data_root=str(media_dir / 'mixed'), check_cache=False)
    fused = AVClipDataset(pipeline=_pipeline(), **common)
    decode, resize = fused.pipeline.transforms[1:3]
    assert isinstance(decode, DecodeAVClip) and decode.short_side == 24
    assert isinstance(resize, VideoResize)
    apart = AVClipDataset(pipeline=_pipeline(
        [dict(type='VideoFlip', prob=0.0)]), **common)
    assert apart.pipeline.transforms[1].short_side is None
    # Either way: 24x24 frames, nearly equal (only the resize differs).
    assert fused[0]['video'].shape == apart[0]['video'].shape == (
        3, 8, 24, 24)
    assert_resized_frames_close(fused[0]['video'], apart[0]['video'])


@pytest.mark.parametrize('name', ['FakeSample.mov', 'play116.mkv'])
def test_rgb_and_palette_codecs_keep_their_levels(realclips_dir, name):
    """Scaled straight from 5-bit RGB, swscale lost up to 8 levels."""
    path, = glob.glob(osp.join(realclips_dir, 'files', '*', name))
    info = probe(path)
    full, _ = decode_clip(path, _centre(info), 8, None, None)
    video, _, _ = decode_clips(path, [_centre(info)], 8, audio_duration=None,
                               modalities=('video',), short_side=128)
    ref = TF.resize(full.permute(0, 3, 1, 2), list(short_side_size(
        info.height, info.width, 128)), antialias=True)
    diff = (video[0].permute(0, 3, 1, 2).float() - ref.float()).abs()
    assert diff.mean() < 0.2
