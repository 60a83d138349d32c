import pytest
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from xdc_plugin.data.transforms import (AudioLogMel, DecodeAVClip,
                                        PackAVInputs, SampleClip, VideoCrop,
                                        VideoFlip, VideoResize)
from xdc_plugin.registry import TRANSFORMS


def _video(k=1, t=8, h=60, w=80):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (k, t, 3, h, w), dtype=torch.uint8,
                         generator=g)


def test_resize_short_side_keeps_uint8_and_aspect():
    out = VideoResize(128)(dict(video=_video()))['video']
    assert out.dtype == torch.uint8 and out.shape == (1, 8, 3, 128, 171)
    out = VideoResize(128)(dict(video=_video(h=300, w=200)))['video']
    assert out.shape == (1, 8, 3, 192, 128)


def test_resize_of_stacked_clips_is_per_clip():
    clips = _video(k=3)
    out = VideoResize(32)(dict(video=clips))['video']
    for k in range(3):
        alone = VideoResize(32)(dict(video=clips[k:k + 1]))['video']
        assert torch.equal(out[k:k + 1], alone)


def test_centre_crop_is_exact_and_deterministic():
    v = _video(h=128, w=171)
    out = VideoCrop(112, random=False)(dict(video=v))
    assert torch.equal(out['video'], v[..., 8:120, 29:141])
    assert out['crop_box'] == (8, 29, 112)


def test_random_crop_follows_the_torch_seed_and_varies():
    v = _video(k=2, h=128, w=171)
    crops = []
    for seed in (0, 0, 1, 2, 3):
        torch.manual_seed(seed)
        crops.append(VideoCrop(112)(dict(video=v)))
    assert all(c['video'].shape == (2, 8, 3, 112, 112) for c in crops)
    assert torch.equal(crops[0]['video'], crops[1]['video'])
    assert len({c['crop_box'] for c in crops}) > 1
    top, left, _ = crops[2]['crop_box']
    assert torch.equal(crops[2]['video'],
                       v[..., top:top + 112, left:left + 112])


def test_crop_larger_than_frame_raises():
    with pytest.raises(ValueError, match='smaller than'):
        VideoCrop(112)(dict(video=_video(), path='x.mp4'))


def test_flip():
    v = _video()
    out = VideoFlip(1.0)(dict(video=v))
    assert torch.equal(out['video'], v.flip(-1)) and out['flip'] is True
    out = VideoFlip(0.0)(dict(video=v))
    assert torch.equal(out['video'], v) and out['flip'] is False


def test_sample_clip_modes():
    res = dict(duration=6.0, fps=10.0, path='x.mp4')
    out = SampleClip(8, None, mode='center')(dict(res))
    assert out['clip_starts'] == [pytest.approx((6.0 - 0.8) / 2)]
    assert (out['clip_duration'], out['num_frames'], out['frame_rate'],
            out['num_clips']) == (pytest.approx(0.8), 8, 10.0, 1)
    starts = {SampleClip(8, 5)(dict(res))['clip_starts'][0]
              for _ in range(20)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 6.0 - 1.6
    # uniform: from the start to the end of the file; one clip: centred
    out = SampleClip(8, 5, num_clips=5, mode='uniform')(dict(res))
    assert out['clip_starts'] == pytest.approx([0.0, 1.1, 2.2, 3.3, 4.4])
    assert SampleClip(8, 5, mode='uniform')(dict(res))['clip_starts'] == \
        pytest.approx([2.2])
    torch.manual_seed(0)
    out = SampleClip(8, 5, num_clips=4)(dict(res))['clip_starts']
    assert len(set(out)) == 4 and all(0 <= s <= 4.4 for s in out)


def test_sample_clip_audio_windows_and_bad_arguments():
    res = dict(duration=5.0, fps=0.0, path='a.wav')
    out = SampleClip(clip_duration=2.0, num_clips=4, mode='uniform')(res)
    assert out['clip_starts'] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match='clip_duration'):
        SampleClip(8)(dict(duration=5.0, fps=0.0, path='a.wav'))
    with pytest.raises(ValueError, match='mode must be'):
        SampleClip(8, mode='middle')
    with pytest.raises(ValueError, match="'center' gives one clip"):
        SampleClip(8, num_clips=3, mode='center')


def test_log_mel_shape_floor_and_sample_rate_from_the_decoder():
    out = AudioLogMel()(dict(audio=torch.zeros(1, 1, 32000),
                             sample_rate=16000))['audio']
    assert out.shape == (1, 1, 40, 201) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, torch.log(
        torch.tensor(1e-6)).item()))
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(32000) / 16000)
    mel = AudioLogMel()(dict(audio=tone[None, None],
                             sample_rate=16000))['audio'][0, 0]
    # energy concentrates in the band holding 1 kHz, not in the lowest one
    assert mel.mean(1).argmax() > 5 and mel.mean() > -10
    # 8 kHz audio, 20 ms hop: 2 s -> 101 frames
    out = AudioLogMel(hop_ms=20)(dict(audio=torch.zeros(3, 1, 16000),
                                      sample_rate=8000))['audio']
    assert out.shape == (3, 1, 40, 101)


def test_pack_layout_one_and_several_clips():
    audio = torch.zeros(1, 1, 40, 201)
    out = PackAVInputs()(dict(video=_video(), audio=audio, index=3, label=-1,
                              path='x', num_clips=1))
    assert set(out) == {'video', 'audio', 'index', 'label'}
    assert out['video'].shape == (3, 8, 60, 80)
    assert out['video'].is_contiguous()
    assert out['audio'].shape == (1, 40, 201)
    assert torch.equal(out['video'][:, 2], _video()[0, 2])
    out = PackAVInputs()(dict(video=_video(k=4), audio=audio.repeat(4, 1, 1,
                                                                    1),
                              index=0, label=1, num_clips=4))
    assert out['video'].shape == (4, 3, 8, 60, 80)
    assert out['audio'].shape == (4, 1, 40, 201)
    out = PackAVInputs()(dict(audio=audio, index=0, label=1, num_clips=1))
    assert set(out) == {'audio', 'index', 'label'}


def test_decode_step_gives_stacked_clips(media_dir):
    res = dict(path=str(media_dir / 'timecode.mp4'), duration=6.0, fps=10.0)
    res = SampleClip(4, num_clips=3, mode='uniform')(res)
    res = DecodeAVClip(audio_duration=1.0, sample_rate=8000)(res)
    assert res['video'].shape == (3, 4, 3, 32, 32)
    assert res['audio'].shape == (3, 1, 8000) and res['sample_rate'] == 8000
    # frame i is grey 20 + 3 i: the clips start at frames 0, 28 and 56
    firsts = (res['video'][:, 0].float().mean(dim=(1, 2, 3)) - 20) / 3
    assert firsts.round().tolist() == [0, 28, 56]
    only_audio = DecodeAVClip(1.0)(dict(res, modalities=('audio', )))
    assert only_audio['audio'].shape == (3, 1, 16000)


def test_registered_base_transforms_compose_in_the_xdc_scope():
    for name in ('SampleClip', 'DecodeAVClip', 'VideoResize', 'VideoCrop',
                 'VideoFlip', 'AudioLogMel', 'PackAVInputs'):
        assert issubclass(TRANSFORMS.get(name), BaseTransform)
    with DefaultScope.overwrite_default_scope('xdc'):
        pipe = Compose([dict(type='VideoCrop', size=16, random=False),
                        dict(type='VideoFlip', prob=1.0)])
    v = _video(h=16, w=16)
    assert torch.equal(pipe(dict(video=v))['video'], v.flip(-1))
