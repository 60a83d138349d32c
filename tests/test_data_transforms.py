import pytest
import torch

from xdc_plugin.data.transforms import (AudioLogMel, PackAVInputs,
                                        SampleClip, VideoCrop, VideoFlip,
                                        VideoResize, build_pipeline,
                                        default_pipeline)
from xdc_plugin.registry import TRANSFORMS


def _video(t=8, h=60, w=80):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=g)


def test_resize_short_side_keeps_uint8_and_aspect():
    out = VideoResize(128)(dict(video=_video()))['video']
    assert out.dtype == torch.uint8 and out.shape == (8, 3, 128, 171)
    out = VideoResize(128)(dict(video=_video(h=300, w=200)))['video']
    assert out.shape == (8, 3, 192, 128)


def test_centre_crop_is_exact_and_deterministic():
    v = _video(h=128, w=171)
    out = VideoCrop(112, random=False)(dict(video=v))['video']
    assert torch.equal(out, v[..., 8:120, 29:141])


def test_random_crop_follows_the_torch_seed_and_varies():
    v = _video(h=128, w=171)
    crops = []
    for seed in (0, 0, 1, 2, 3):
        torch.manual_seed(seed)
        crops.append(VideoCrop(112)(dict(video=v))['video'])
    assert all(c.shape == (8, 3, 112, 112) for c in crops)
    assert torch.equal(crops[0], crops[1])
    assert any(not torch.equal(crops[0], c) for c in crops[2:])


def test_crop_larger_than_frame_raises():
    with pytest.raises(ValueError, match='smaller than'):
        VideoCrop(112)(dict(video=_video(), path='x.mp4'))


def test_flip():
    v = _video()
    assert torch.equal(VideoFlip(1.0)(dict(video=v))['video'], v.flip(-1))
    assert torch.equal(VideoFlip(0.0)(dict(video=v))['video'], v)


def test_sample_clip_random_and_centred():
    res = dict(duration=6.0, fps=10.0)
    assert SampleClip(8, None, random=False)(dict(res))['start_sec'] == \
        pytest.approx((6.0 - 0.8) / 2)
    starts = {SampleClip(8, 5, random=True)(dict(res))['start_sec']
              for _ in range(20)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 6.0 - 1.6


def test_log_mel_shape_and_floor():
    out = AudioLogMel()(dict(audio=torch.zeros(1, 32000)))['audio']
    assert out.shape == (1, 40, 201) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, torch.log(
        torch.tensor(1e-6)).item()))
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(32000) / 16000)
    mel = AudioLogMel()(dict(audio=tone[None]))['audio'][0]
    # energy concentrates in the band holding 1 kHz, not in the lowest one
    assert mel.mean(1).argmax() > 5 and mel.mean() > -10


def test_pack_layout():
    out = PackAVInputs()(dict(video=_video(), audio=torch.zeros(1, 40, 201),
                              index=3, label=-1, path='x'))
    assert set(out) == {'video', 'audio', 'index', 'label'}
    assert out['video'].shape == (3, 8, 60, 80)
    assert out['video'].is_contiguous()


def test_default_pipelines_and_registry():
    train = [t['type'] for t in default_pipeline('train')]
    extract = [t['type'] for t in default_pipeline('extract')]
    assert 'VideoFlip' in train and 'VideoFlip' not in extract
    assert default_pipeline('extract')[0]['random'] is False
    assert isinstance(TRANSFORMS.build(dict(type='VideoCrop', size=8)),
                      VideoCrop)
    pipe = build_pipeline([dict(type='VideoCrop', size=16, random=False),
                           dict(type='VideoFlip', prob=1.0)])
    v = _video(h=16, w=16)
    assert torch.equal(pipe(dict(video=v))['video'], v.flip(-1))
    with pytest.raises(ValueError):
        default_pipeline('test')
