"""The training augmentations: shapes, one draw per sample, seeded."""
import pytest
import torch
from mmengine.dataset import Compose

from xdc_plugin.data.augment import (AudioGain, AudioMask, VideoColorJitter,
                                     VideoRandomResizedCrop)
from xdc_plugin.registry import TRANSFORMS


def clip_video(clips=2, frames=4, height=40, width=60):
    """A clip whose frames differ only by a constant, so a crop or colour
    change applied alike to every frame keeps their differences equal."""
    base = torch.randint(0, 200, (1, 1, 3, height, width), dtype=torch.uint8)
    offsets = torch.arange(clips * frames, dtype=torch.uint8).view(
        clips, frames, 1, 1, 1)
    return base + offsets


def test_random_resized_crop_is_one_box_for_every_frame():
    torch.manual_seed(0)
    video = clip_video()
    out = VideoRandomResizedCrop(size=24, scale=(0.3, 0.6))(
        {'video': video})
    assert out['video'].shape == (2, 4, 3, 24, 24)
    assert out['video'].dtype == torch.uint8
    top, left, height, width = out['crop_box']
    assert 0.3 * 40 * 60 * 0.9 <= height * width <= 0.6 * 40 * 60 * 1.1
    assert top + height <= 40 and left + width <= 60
    # Same box everywhere: the resized frames differ by the offsets only.
    frames = out['video'].view(8, 3, 24, 24).int()
    diffs = frames - frames[:1]
    assert torch.equal(diffs, torch.arange(8).view(8, 1, 1, 1).expand_as(
        diffs))


def test_random_resized_crop_follows_the_seed():
    video = clip_video()
    crop = VideoRandomResizedCrop(size=24)
    torch.manual_seed(3)
    first = crop({'video': video})['crop_box']
    torch.manual_seed(3)
    again = crop({'video': video})['crop_box']
    boxes = {crop({'video': video})['crop_box'] for _ in range(10)}
    assert first == again
    assert len(boxes) > 1


def test_color_jitter_greyscale_and_identity():
    video = clip_video()
    grey = VideoColorJitter(prob=0.0, grayscale_prob=1.0)({'video': video})
    channels = grey['video']
    assert channels.shape == video.shape and channels.dtype == torch.uint8
    assert (channels == channels[:, :, :1]).all()
    untouched = VideoColorJitter(prob=0.0, grayscale_prob=0.0)(
        {'video': video})
    assert torch.equal(untouched['video'], video)


def test_color_jitter_is_one_draw_for_the_sample():
    torch.manual_seed(1)
    frame = torch.randint(0, 200, (1, 1, 3, 40, 60), dtype=torch.uint8)
    video = frame.expand(2, 3, 3, 40, 60).clone()  # 2 clips x 3 frames
    out = VideoColorJitter(brightness=0.8, prob=1.0,
                           grayscale_prob=0.0)({'video': video})['video']
    assert not torch.equal(out, video)
    assert torch.equal(out[0, 0], out[0, 1])
    assert torch.equal(out[0, 1], out[0, 2])
    assert torch.equal(out[0, 0], out[1, 0])


def test_audio_gain_scales_by_the_drawn_decibels():
    torch.manual_seed(0)
    audio = torch.rand(2, 1, 1000) - 0.5
    out = AudioGain(db=(-6, 6))({'audio': audio.clone()})
    assert -6 <= out['gain_db'] <= 6
    assert torch.allclose(out['audio'], audio * 10 ** (out['gain_db'] / 20))
    with pytest.raises(ValueError, match='empty'):
        AudioGain(db=(3, -3))


def test_audio_mask_fills_bands_with_the_mean():
    torch.manual_seed(0)
    mel = torch.randn(1, 1, 40, 101)
    out = AudioMask(freq_width=40, time_width=101)({'audio': mel})['audio']
    assert out.shape == mel.shape
    masked = out != mel
    assert masked.any()
    assert torch.allclose(out[masked], mel.mean().expand(int(masked.sum())))
    same = AudioMask(freq_width=0, time_width=0)({'audio': mel})['audio']
    assert torch.equal(same, mel)


def test_augmentations_build_from_config():
    pipeline = Compose([
        TRANSFORMS.build(dict(type='VideoRandomResizedCrop', size=16)),
        TRANSFORMS.build(dict(type='VideoColorJitter')),
    ])
    out = pipeline({'video': clip_video()})
    assert out['video'].shape == (2, 4, 3, 16, 16)
