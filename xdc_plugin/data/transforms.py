"""Transforms on the results dict of ``AVClipDataset`` (mmengine style).

Keys: ``path``, ``index``, ``label``, ``duration`` and ``fps`` (from the
probe) come in; ``SampleClip`` adds ``start_sec``; ``DecodeAVClip`` adds
``video`` (uint8, (T, 3, H, W) while spatial transforms run) and ``audio``
(float32 (1, S) waveform); ``PackAVInputs`` leaves ``video`` (3, T, H, W),
``audio`` (1, n_mels, frames), ``index`` and ``label``.

Video stays uint8 on the CPU: normalisation is done by the model's data
preprocessor, on the device. All randomness uses torch's generator, which
the DataLoader seeds differently in every worker.
"""
import math

import torch
import torchaudio
from mmengine.dataset import Compose
from torchvision.transforms.v2 import functional as TF

from xdc_plugin.data.decode import clip_seconds, decode_clip
from xdc_plugin.registry import TRANSFORMS

__all__ = ['SampleClip', 'DecodeAVClip', 'VideoResize', 'VideoCrop',
           'VideoFlip', 'AudioLogMel', 'PackAVInputs', 'build_pipeline',
           'default_pipeline']


@TRANSFORMS.register_module()
class SampleClip:
    """Choose ``start_sec`` of a ``num_frames`` clip at ``frame_rate``.

    ``random=True`` (training): uniform over every start that keeps the clip
    inside the file (temporal jitter). ``random=False``: the clip centred in
    the file, so that extraction is deterministic.
    """

    def __init__(self, num_frames=8, frame_rate=None, random=True):
        self.num_frames, self.frame_rate, self.random = (num_frames,
                                                         frame_rate, random)

    def __call__(self, results):
        fps = float(self.frame_rate or results['fps'])
        slack = max(results['duration'] - clip_seconds(self.num_frames, fps),
                    0.0)
        u = torch.rand(()).item() if self.random else 0.5
        results['start_sec'] = u * slack
        results['frame_rate'] = fps
        return results


@TRANSFORMS.register_module()
class DecodeAVClip:
    """Decode ``video`` (uint8 (T, 3, H, W)) and ``audio`` (float32 (1, S)).

    Audio: ``audio_duration`` s (2 s) centred on the clip centre, 16 kHz
    mono (speech/environmental sound needs no more; XDC's audio encoder
    works on 40-band log-mel of such windows). See ``decode.py``.
    """

    def __init__(self, num_frames=8, audio_duration=2.0, sample_rate=16000):
        self.num_frames = num_frames
        self.audio_duration, self.sample_rate = audio_duration, sample_rate

    def __call__(self, results):
        video, audio = decode_clip(
            results['path'], results['start_sec'], self.num_frames,
            results.get('frame_rate'), self.audio_duration, self.sample_rate)
        results['video'] = video.permute(0, 3, 1, 2)  # (T, 3, H, W)
        results['audio'] = audio
        return results


@TRANSFORMS.register_module()
class VideoResize:
    """Resize so that the short side is ``short_side`` (bilinear with
    antialiasing, uint8 kept); the aspect ratio is preserved."""

    def __init__(self, short_side=128):
        self.short_side = short_side

    def __call__(self, results):
        video = results['video']
        h, w = video.shape[-2:]
        scale = self.short_side / min(h, w)
        size = [max(self.short_side, round(h * scale)),
                max(self.short_side, round(w * scale))]
        if [h, w] != size:
            results['video'] = TF.resize(video, size, antialias=True)
        return results


@TRANSFORMS.register_module()
class VideoCrop:
    """Square ``size`` crop, the same for every frame: at a random place
    (``random=True``, training) or in the centre (extraction)."""

    def __init__(self, size=112, random=True):
        self.size, self.random = size, random

    def __call__(self, results):
        video = results['video']
        h, w = video.shape[-2:]
        if h < self.size or w < self.size:
            raise ValueError(f'{results["path"]}: {h}x{w} frames are smaller '
                             f'than the {self.size} crop; resize first')
        if self.random:
            top = int(torch.randint(h - self.size + 1, ()))
            left = int(torch.randint(w - self.size + 1, ()))
        else:
            top, left = (h - self.size) // 2, (w - self.size) // 2
        results['video'] = video[..., top:top + self.size,
                                 left:left + self.size]
        return results


@TRANSFORMS.register_module()
class VideoFlip:
    """Horizontal flip of the whole clip with probability ``prob``."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, results):
        if self.prob > 0 and torch.rand(()).item() < self.prob:
            results['video'] = results['video'].flip(-1)
        return results


@TRANSFORMS.register_module()
class AudioLogMel:
    """``log(mel + 1e-6)`` of the waveform: (1, S) -> (1, n_mels, frames).

    40 mel bands, 25 ms Hann window, 10 ms hop (the usual speech/audio-event
    front end; XDC feeds such a log-mel spectrogram to its 2D ResNet), FFT
    size the next power of two of the window, centred frames so that a 2 s
    window at 16 kHz gives ``2 * 16000 // 160 + 1 = 201`` frames.
    """

    def __init__(self, sample_rate=16000, n_mels=40, hop_ms=10, win_ms=25):
        win = int(round(sample_rate * win_ms / 1000))
        hop = int(round(sample_rate * hop_ms / 1000))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=2 ** math.ceil(math.log2(win)),
            win_length=win, hop_length=hop, n_mels=n_mels, power=2.0)

    def __call__(self, results):
        with torch.no_grad():
            results['audio'] = torch.log(self.mel(results['audio']) + 1e-6)
        return results


@TRANSFORMS.register_module()
class PackAVInputs:
    """Keep ``video`` as contiguous uint8 (3, T, H, W), ``audio``, ``index``
    and ``label``; drop the bookkeeping keys."""

    keys = ('video', 'audio', 'index', 'label')

    def __call__(self, results):
        results['video'] = results['video'].permute(1, 0, 2, 3).contiguous()
        return {k: results[k] for k in self.keys}


def default_pipeline(mode='train', num_frames=8, frame_rate=None,
                     short_side=128, crop_size=112, audio_duration=2.0,
                     sample_rate=16000, n_mels=40, hop_ms=10, win_ms=25):
    """Config list of the default pipeline for ``'train'`` (random clip,
    random crop, flip) or ``'extract'`` (centred clip, centre crop)."""
    if mode not in ('train', 'extract'):
        raise ValueError(f"mode must be 'train' or 'extract', not {mode!r}")
    train = mode == 'train'
    pipeline = [
        dict(type='SampleClip', num_frames=num_frames, frame_rate=frame_rate,
             random=train),
        dict(type='DecodeAVClip', num_frames=num_frames,
             audio_duration=audio_duration, sample_rate=sample_rate),
        dict(type='VideoResize', short_side=short_side),
        dict(type='VideoCrop', size=crop_size, random=train),
    ]
    if train:
        pipeline.append(dict(type='VideoFlip', prob=0.5))
    pipeline += [
        dict(type='AudioLogMel', sample_rate=sample_rate, n_mels=n_mels,
             hop_ms=hop_ms, win_ms=win_ms),
        dict(type='PackAVInputs'),
    ]
    return pipeline


def build_pipeline(pipeline):
    """``Compose`` of config dicts (built from our TRANSFORMS registry, so
    ``type='VideoCrop'`` works without a default scope) or callables."""
    built = [TRANSFORMS.build(t) if isinstance(t, dict) else t
             for t in pipeline]
    return Compose(built)
