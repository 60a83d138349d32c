"""Registered transforms on the results dict of ``AVClipDataset`` (mmcv
``BaseTransform``: dict in, dict out), written as pipelines in configs.

Keys: ``path``, ``index``, ``label``, ``duration``, ``fps``, ``modalities``
and ``pad_short_audio`` come from the dataset; ``SampleClip`` adds
``clip_starts``, ``clip_duration``, ``num_frames``, ``frame_rate`` and
``num_clips``; ``DecodeAVClip`` adds ``video`` (uint8 (K, T, 3, H, W) while
the spatial transforms run) and ``audio`` (float32 (K, 1, S) waveforms) and
``sample_rate``; ``PackAVInputs`` leaves ``video`` (3, T, H, W), ``audio``
(1, n_mels, frames), ``index`` and ``label``, with a leading clip dimension
K when ``num_clips > 1``.

Video stays uint8 on the CPU: the model's data preprocessor normalises it on
the device. Every random choice draws from torch's global generator, which
``AVClipDataset`` seeds per sample and epoch.

Each transform says what it becomes in the feature-extraction pipeline
(``centred``: the same, centred or none; ``centred_pipeline`` applies them
to a training pipeline); the clip settings default to ``ClipSpec``'s.
"""
import torch
import torchaudio
from mmcv.transforms import BaseTransform
from mmengine.registry import DefaultScope
from torchvision.transforms.v2 import functional as TF

from xdc_plugin.data.clip_spec import ClipSpec, stft_samples
from xdc_plugin.data.decode import decode_clips, short_side_size
from xdc_plugin.registry import SCOPE, TRANSFORMS

__all__ = ['ClipTransform', 'Augmentation', 'SampleClip', 'DecodeAVClip',
           'VideoResize', 'VideoCrop', 'VideoFlip', 'AudioLogMel',
           'PackAVInputs', 'resize_in_decoder', 'centred_pipeline']

SAMPLING_MODES = ('random', 'center', 'uniform')
# The clip settings the transforms default to.
_CLIP = ClipSpec()


class ClipTransform(BaseTransform):
    """A transform of our pipelines. ``centred(cfg)`` gives the transform
    configs that replace its config ``cfg`` in the feature-extraction
    pipeline (``centred_pipeline``): the same config for a transform that
    draws nothing at random."""

    @staticmethod
    def centred(cfg):
        return [cfg]


class Augmentation(ClipTransform):
    """A training-only transform: none in feature extraction."""

    @staticmethod
    def centred(cfg):
        return []


def centred_pipeline(pipeline):
    """The feature-extraction pipeline of a training ``pipeline``
    (transform configs): the same clip settings, decoding and resizing,
    with one clip centred in each file, centre crops and no augmentation,
    as each transform's ``centred`` rule says. A transform of another
    library has no rule: ``ValueError`` (give the hook's
    ``extract_dataloader.dataset.pipeline`` instead)."""
    centred = []
    with DefaultScope.overwrite_default_scope(SCOPE):
        for cfg in pipeline:
            kind = TRANSFORMS.get(cfg['type'])
            if not (isinstance(kind, type) and
                    issubclass(kind, ClipTransform)):
                raise ValueError(
                    f'{cfg["type"]} of the train pipeline has no centred '
                    'form for feature extraction: give the clustering '
                    "hook's extract_dataloader.dataset.pipeline")
            centred += kind.centred(dict(cfg))
    return centred


@TRANSFORMS.register_module()
class SampleClip(ClipTransform):
    """Choose the start (s) of ``num_clips`` clips of the file.

    A clip is ``num_frames`` frames at ``frame_rate`` fps (None: the file's
    own rate, i.e. consecutive frames), or ``clip_duration`` seconds when
    given (audio-only data, whose audio windows are the clips).

    Modes: ``'random'``: each start uniform over the starts that keep the
    clip inside the file (temporal jitter, training); ``'center'``: one
    clip centred in the file; ``'uniform'``: ``num_clips`` starts evenly
    spread from the file's start to its end (one clip: centred).
    """

    def __init__(self, num_frames=_CLIP.num_frames,
                 frame_rate=_CLIP.frame_rate, num_clips=1, mode='random',
                 clip_duration=_CLIP.clip_duration):
        if mode not in SAMPLING_MODES:
            raise ValueError(f'mode must be one of {SAMPLING_MODES}, not '
                             f'{mode!r}')
        if num_clips < 1 or (mode == 'center' and num_clips != 1):
            raise ValueError(f"num_clips={num_clips} with mode={mode!r}: "
                             "'center' gives one clip, others one or more")
        self.num_frames, self.frame_rate = num_frames, frame_rate
        self.num_clips, self.mode = num_clips, mode
        self.clip_duration = clip_duration

    @staticmethod
    def centred(cfg):
        """One clip centred in the file."""
        cfg.pop('num_clips', None)
        return [dict(cfg, mode='center')]

    def transform(self, results):
        fps = float(self.frame_rate or results['fps'])
        if self.clip_duration is not None:
            span = float(self.clip_duration)
        elif fps > 0:
            span = self.num_frames / fps
        else:
            raise ValueError(f'{results["path"]} has no video frame rate: '
                             'give SampleClip a clip_duration (audio-only '
                             'data)')
        slack = max(results['duration'] - span, 0.0)
        if self.mode == 'random':
            where = torch.rand(self.num_clips).tolist()
        elif self.num_clips == 1:
            where = [0.5]
        else:
            where = torch.linspace(0, 1, self.num_clips).tolist()
        results.update(clip_starts=[u * slack for u in where],
                       clip_duration=span, num_frames=self.num_frames,
                       frame_rate=fps, num_clips=self.num_clips)
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(num_frames={self.num_frames}, '
                f'frame_rate={self.frame_rate}, num_clips={self.num_clips}, '
                f'mode={self.mode!r}, clip_duration={self.clip_duration})')


@TRANSFORMS.register_module()
class DecodeAVClip(ClipTransform):
    """Decode every sampled clip of the file, opening it once: ``video``
    uint8 (K, T, 3, H, W) and ``audio`` float32 (K, 1, S), each when in the
    dataset's ``modalities``.

    Audio: ``audio_duration`` s (2 s) centred on each clip, mono at
    ``sample_rate`` (16 kHz: speech and environmental sound need no more;
    XDC's audio encoder works on 40-band log-mel of such windows). See
    ``decode.py`` for the alignment rules and ``audio_short`` files.

    ``short_side``: resize the frames while converting them to RGB (FFmpeg
    scales the YUV frame in the same pass; much cheaper on large video than
    a ``VideoResize`` of full-size RGB frames). ``AVClipDataset`` sets it
    from a ``VideoResize`` that directly follows (``resize_in_decoder``).
    """

    def __init__(self, audio_duration=_CLIP.audio_duration,
                 sample_rate=_CLIP.sample_rate, short_side=None):
        self.audio_duration, self.sample_rate = audio_duration, sample_rate
        self.short_side = short_side

    def transform(self, results):
        video, audio, _ = decode_clips(
            results['path'], results['clip_starts'], results['num_frames'],
            results['frame_rate'], results['clip_duration'],
            self.audio_duration, self.sample_rate,
            results.get('modalities', ('video', 'audio')),
            results.get('pad_short_audio', False), self.short_side)
        if video is not None:
            results['video'] = video.permute(0, 1, 4, 2, 3)  # K, T, 3, H, W
        if audio is not None:
            results['audio'] = audio
            results['sample_rate'] = self.sample_rate
        return results


@TRANSFORMS.register_module()
class VideoResize(ClipTransform):
    """Resize so that the short side is ``short_side`` (bilinear with
    antialiasing, uint8 kept); the aspect ratio is preserved."""

    def __init__(self, short_side=_CLIP.short_side):
        self.short_side = short_side

    def transform(self, results):
        video = results['video']
        size = list(short_side_size(*video.shape[-2:], self.short_side))
        if list(video.shape[-2:]) != size:  # not resized while decoding
            results['video'] = TF.resize(video, size, antialias=True)
        return results


def resize_in_decoder(transforms):
    """Give each ``DecodeAVClip`` directly followed by a ``VideoResize`` the
    resize's short side, so that FFmpeg resizes while decoding; the
    ``VideoResize`` stays, with nothing left to do. Frames differ from a
    resize of full-size RGB frames by about one grey level on average
    (libswscale's bilinear filter against torchvision's)."""
    for decode, resize in zip(transforms, transforms[1:]):
        if (isinstance(decode, DecodeAVClip) and decode.short_side is None
                and isinstance(resize, VideoResize)):
            decode.short_side = resize.short_side
    return transforms


@TRANSFORMS.register_module()
class VideoCrop(ClipTransform):
    """Square ``size`` crop, the same for every frame and clip: at a random
    place (``random=True``, training) or in the centre. Records
    ``crop_box = (top, left, size)``."""

    def __init__(self, size=_CLIP.crop_size, random=True):
        self.size, self.random = size, random

    @staticmethod
    def centred(cfg):
        return [dict(cfg, random=False)]

    def transform(self, results):
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
        results['crop_box'] = (top, left, self.size)
        return results


@TRANSFORMS.register_module()
class VideoFlip(Augmentation):
    """Horizontal flip of the whole clip with probability ``prob``; records
    ``flip``."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def transform(self, results):
        flip = self.prob > 0 and torch.rand(()).item() < self.prob
        if flip:
            results['video'] = results['video'].flip(-1)
        results['flip'] = flip
        return results


@TRANSFORMS.register_module()
class AudioLogMel(ClipTransform):
    """``log(mel + 1e-6)`` of the waveforms: (K, 1, S) -> (K, 1, n_mels,
    frames), at the ``sample_rate`` the decoder used.

    40 mel bands, 25 ms Hann window, 10 ms hop (the usual speech/audio-event
    front end; XDC feeds such a log-mel spectrogram to its 2D ResNet), FFT
    size the next power of two of the window (``clip_spec.stft_samples``),
    centred frames so that a 2 s window at 16 kHz gives
    ``2 * 16000 // 160 + 1 = 201`` frames (``ClipSpec.logmel_frames``).
    """

    def __init__(self, n_mels=_CLIP.n_mels, hop_ms=_CLIP.hop_ms,
                 win_ms=_CLIP.win_ms):
        self.n_mels, self.hop_ms, self.win_ms = n_mels, hop_ms, win_ms
        self._mel = {}  # one filter bank per sample rate

    def _mel_of(self, sample_rate):
        if sample_rate not in self._mel:
            win, hop, n_fft = stft_samples(sample_rate, self.win_ms,
                                           self.hop_ms)
            self._mel[sample_rate] = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft,
                win_length=win, hop_length=hop, n_mels=self.n_mels,
                power=2.0)
        return self._mel[sample_rate]

    def transform(self, results):
        mel = self._mel_of(results['sample_rate'])
        with torch.no_grad():
            results['audio'] = torch.log(mel(results['audio']) + 1e-6)
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(n_mels={self.n_mels}, hop_ms='
                f'{self.hop_ms}, win_ms={self.win_ms})')


@TRANSFORMS.register_module()
class PackAVInputs(ClipTransform):
    """Keep ``video`` as contiguous uint8 (3, T, H, W), ``audio``
    (1, n_mels, frames), ``index`` and ``label`` (each modality when
    decoded); with ``num_clips > 1`` the clips stay stacked first:
    (K, 3, T, H, W) and (K, 1, n_mels, frames)."""

    def transform(self, results):
        single = results['num_clips'] == 1
        packed = dict(index=results['index'], label=results['label'])
        if 'video' in results:
            video = results['video'].permute(0, 2, 1, 3, 4)  # K, 3, T, H, W
            packed['video'] = (video[0] if single else video).contiguous()
        if 'audio' in results:
            audio = results['audio']
            packed['audio'] = audio[0] if single else audio
        return packed
