"""The fast decoding path gives what the previous one gave, on
``../shared/data/realclips`` and avobjects: frames resized while decoding
match full-size RGB frames resized by torchvision (within
``assert_resized_frames_close``'s tolerance); audio resampled in one call
equals the former per-frame resampling, sample for sample; seeking straight
to the keyframe before a clip (mov/mp4) gives the frames of the former
0.5 s-early seek and of decoding from the file start, bit for bit, and the
same log-mel."""
import csv
import glob
import math
import os.path as osp

import av
import numpy as np
import pytest
import torch
from conftest import assert_resized_frames_close
from torchvision.transforms.v2 import functional as TF

from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.data import decode_audio, media_source
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


def _per_frame_resampling(frames, sample_rate, layout='mono'):
    """The former audio path: each decoded frame through the resampler
    (mono, as (1, S))."""
    assert layout == 'mono'
    resampler = av.AudioResampler(format='flt', layout='mono',
                                  rate=sample_rate)
    out = []
    for frame in frames:
        frame.pts = None
        out += resampler.resample(frame)
    out += resampler.resample(None)
    return np.concatenate([o.to_ndarray().reshape(-1) for o in out])[None]


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
            patch.setattr(decode_audio, '_resample', _per_frame_resampling)
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


def _previous_seek(patch):
    """The seek before exact seeking: 0.5 s early in every container."""
    patch.setattr(media_source, '_EXACT_SEEK_FORMATS', frozenset())


def _starts(info):
    """Four clip starts over the file's first 12 s (decoding from the start
    stays cheap on the 3-minute file)."""
    last = min(max(info.duration - 9 / info.fps, 0), 12.0)
    return [float(s) for s in np.linspace(0, last, 4)]


def test_exact_seek_gives_the_frames_of_every_other_way(
        realclips_dir, avobjects_dir, monkeypatch):
    kwargs = dict(audio_duration=None, modalities=('video',), short_side=56)
    for path in _files(realclips_dir, avobjects_dir):
        starts = _starts(probe(path))
        video, _, _ = decode_clips(path, starts, 8, **kwargs)
        with monkeypatch.context() as patch:
            _previous_seek(patch)
            before, _, _ = decode_clips(path, starts, 8, **kwargs)
            patch.setattr(media_source, '_SEEK_MARGIN', math.inf)
            from_start, _, _ = decode_clips(path, starts, 8, **kwargs)
        assert torch.equal(video, before), path
        assert torch.equal(video, from_start), path


def test_exact_seek_decodes_from_the_keyframe_before_the_clip(
        avobjects_dir, monkeypatch):
    """avobjects' clips have a keyframe every second: a clip at 1.2 s was
    decoded from 0 s (0.5 s early lands before the 1 s keyframe), now from
    1 s."""
    path = sorted(glob.glob(osp.join(avobjects_dir, 'clips', '*',
                                     '*.mp4')))[0]
    frames = media_source.MediaSource.frames
    counted = []

    def counting(src, kind, t0):
        for item in frames(src, kind, t0):
            counted.append(kind)
            yield item

    monkeypatch.setattr(media_source.MediaSource, 'frames', counting)
    kwargs = dict(audio_duration=None, modalities=('video',))
    video, _, _ = decode_clips(path, [1.2, 2.2], 8, **kwargs)
    exact = len(counted)
    counted.clear()
    _previous_seek(monkeypatch)
    before, _, _ = decode_clips(path, [1.2, 2.2], 8, **kwargs)
    assert torch.equal(video, before)
    # At most 0.2 s x 15 fps + 8 frames + the one after, from each keyframe
    assert exact <= 2 * (3 + 8 + 1) and len(counted) >= 2 * exact


def test_primed_audio_equals_the_previous_seek(media_dir, monkeypatch):
    """A 440/1760 Hz tone (AAC): 0.2 s decoded before the window give it
    sample for sample; without them the AAC decoder's first frame lacks the
    previous one's overlap."""
    path = str(media_dir / 'timecode.mp4')
    starts = [1.3, 2.5, 4.1]
    _, audio, _ = decode_clips(path, starts, 8)
    with monkeypatch.context() as patch:
        _previous_seek(patch)
        _, before, _ = decode_clips(path, starts, 8)
    torch.testing.assert_close(audio, before, rtol=0, atol=1e-6)
    monkeypatch.setattr(media_source, '_AUDIO_PRIMING', 0.0)
    _, unprimed, _ = decode_clips(path, starts, 8)
    assert (unprimed - before).abs().max() > 0.01


def test_exact_seek_keeps_the_log_mel(realclips_dir, avobjects_dir,
                                      monkeypatch):
    """Samples can differ where the spectrum does not: AAC's (and QDM2's)
    noise substitution draws from a decoder state a seek does not reset,
    and resampling starts at another phase. Measured: mean absolute log-mel
    difference 0-0.13 (0.13: FakeSample.mov's QDM2; 0.06: mov.mov, whose
    audio timestamps jitter by up to 900 samples)."""
    logmel = AudioLogMel()
    for path in _files(realclips_dir, avobjects_dir):
        starts = _starts(probe(path))
        _, audio, _ = decode_clips(path, starts, 8)
        with monkeypatch.context() as patch:
            _previous_seek(patch)
            _, before, _ = decode_clips(path, starts, 8)
        mel = logmel(dict(audio=audio, sample_rate=SR))['audio']
        ref = logmel(dict(audio=before, sample_rate=SR))['audio']
        diff = (mel - ref).abs().mean(dim=(1, 2, 3))
        assert diff.max() <= 0.15, (path, diff)
