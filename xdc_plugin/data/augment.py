"""Training augmentations, registered transforms for config pipelines.

Small datasets are memorised quickly by clustering-based pretraining: a
background, a colour or a loudness identifies a clip as well as its content
does. These transforms take such shortcuts away. They work on the keys
``DecodeAVClip`` writes (video uint8 (K, T, 3, H, W), audio waveforms
(K, 1, S)) or ``AudioLogMel`` writes (audio (K, 1, n_mels, frames)), apply
one draw to every frame and clip of a sample (a clip stays temporally
consistent) and, like the other transforms, draw from torch's global
generator, which ``AVClipDataset`` seeds per sample and epoch.
"""
import torch
from torchvision.transforms import v2

from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.data.transforms import Augmentation
from xdc_plugin.registry import TRANSFORMS

__all__ = ['VideoRandomResizedCrop', 'VideoColorJitter', 'AudioGain',
           'AudioMask']


@TRANSFORMS.register_module()
class VideoRandomResizedCrop(Augmentation):
    """A random area (``scale`` of the frame, aspect ``ratio``) resized to
    ``size`` x ``size``: replaces ``VideoResize`` + ``VideoCrop`` in a
    training pipeline. Records ``crop_box = (top, left, height, width)`` in
    the decoded frame. Feature extraction resizes the short side to
    ``size`` and takes the centre crop instead."""

    def __init__(self, size=ClipSpec.crop_size, scale=(0.35, 1.0),
                 ratio=(3 / 4, 4 / 3)):
        self.size = size
        self.crop = v2.RandomResizedCrop(size, scale=scale, ratio=ratio,
                                         antialias=True)

    @staticmethod
    def centred(cfg):
        size = cfg.get('size', ClipSpec.crop_size)
        return [dict(type='VideoResize', short_side=size),
                dict(type='VideoCrop', size=size, random=False)]

    def transform(self, results):
        video = results['video']
        box = self.crop.make_params([video])
        top, left, height, width = (box[key] for key in
                                    ('top', 'left', 'height', 'width'))
        results['video'] = v2.functional.resized_crop(
            video, top, left, height, width, [self.size, self.size],
            antialias=True)
        results['crop_box'] = (top, left, height, width)
        return results

    def __repr__(self):
        return f'{type(self).__name__}(size={self.size}, crop={self.crop})'


@TRANSFORMS.register_module()
class VideoColorJitter(Augmentation):
    """With probability ``prob``, torchvision's colour jitter (brightness,
    contrast, saturation, hue); then greyscale with probability
    ``grayscale_prob``. One draw for the whole sample."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                 prob=0.8, grayscale_prob=0.2):
        self.jitter = v2.ColorJitter(brightness, contrast, saturation, hue)
        self.prob, self.grayscale_prob = prob, grayscale_prob

    def transform(self, results):
        video = results['video']  # (K, T, 3, H, W): v2 treats K, T as batch
        if torch.rand(()).item() < self.prob:
            video = self.jitter(video)
        if torch.rand(()).item() < self.grayscale_prob:
            video = v2.functional.rgb_to_grayscale(video,
                                                   num_output_channels=3)
        results['video'] = video
        return results

    def __repr__(self):
        return (f'{type(self).__name__}({self.jitter}, prob={self.prob}, '
                f'grayscale_prob={self.grayscale_prob})')


@TRANSFORMS.register_module()
class AudioGain(Augmentation):
    """Scales the waveforms by a gain drawn uniformly in ``db`` (decibels):
    loudness alone should not identify a clip. Before ``AudioLogMel``."""

    def __init__(self, db=(-6.0, 6.0)):
        low, high = db
        if low > high:
            raise ValueError(f'AudioGain: db range {db} is empty')
        self.db = (float(low), float(high))

    def transform(self, results):
        low, high = self.db
        gain_db = low + (high - low) * torch.rand(()).item()
        results['audio'] = results['audio'] * 10.0 ** (gain_db / 20.0)
        results['gain_db'] = gain_db
        return results

    def __repr__(self):
        return f'{type(self).__name__}(db={self.db})'


@TRANSFORMS.register_module()
class AudioMask(Augmentation):
    """SpecAugment-style masks on the log-mel (after ``AudioLogMel``):
    ``num_masks`` bands of up to ``freq_width`` mel bins and as many spans
    of up to ``time_width`` frames, set to the sample's mean value."""

    def __init__(self, freq_width=8, time_width=20, num_masks=1):
        self.freq_width, self.time_width = freq_width, time_width
        self.num_masks = num_masks

    @staticmethod
    def _span(length, max_width):
        width = int(torch.randint(min(max_width, length) + 1, ()))
        start = int(torch.randint(length - width + 1, ()))
        return slice(start, start + width)

    def transform(self, results):
        mel = results['audio'].clone()  # (K, 1, n_mels, frames)
        fill = mel.mean()
        for _ in range(self.num_masks):
            mel[..., self._span(mel.shape[-2], self.freq_width), :] = fill
            mel[..., self._span(mel.shape[-1], self.time_width)] = fill
        results['audio'] = mel
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(freq_width={self.freq_width}, '
                f'time_width={self.time_width}, num_masks={self.num_masks})')
