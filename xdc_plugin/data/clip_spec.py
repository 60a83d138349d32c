"""``ClipSpec``: what one clip of a pipeline is (frames, frame rate, short
side, crop, audio window, log-mel settings), read from the pipeline in one
place.

``PIPELINE_ARGS`` is the one table of which transform argument holds which
setting: ``ClipSpec.from_pipeline`` reads a pipeline (transform configs or
built transforms) through it, and ``ClipSpec.transform_args`` writes a
pipeline's arguments through it. The dataset's file check, the clustering
round's record of the clip windows, the dry run's clip shapes and the
evaluation's pipeline all get the clip from here; the transforms take
their defaults and the log-mel frame arithmetic from it. A new clip
argument is a field here and a row of the table.
"""
import dataclasses
import math
from typing import FrozenSet, Iterable, Mapping, Optional, Tuple

__all__ = ['ClipSpec', 'PIPELINE_ARGS', 'stft_samples']

# {transform type: {argument: ClipSpec field}}.
PIPELINE_ARGS = {
    'SampleClip': {'num_frames': 'num_frames', 'frame_rate': 'frame_rate',
                   'clip_duration': 'clip_duration'},
    'DecodeAVClip': {'audio_duration': 'audio_duration',
                     'sample_rate': 'sample_rate'},
    'VideoResize': {'short_side': 'short_side'},
    'VideoCrop': {'size': 'crop_size'},
    'VideoRandomResizedCrop': {'size': 'crop_size'},
    'AudioLogMel': {'n_mels': 'n_mels', 'hop_ms': 'hop_ms',
                    'win_ms': 'win_ms'},
}


def stft_samples(sample_rate: int, win_ms: float,
                 hop_ms: float) -> Tuple[int, int, int]:
    """``(window, hop, n_fft)`` in samples of a log-mel at ``sample_rate``:
    the window and hop rounded to samples, the FFT the next power of two
    of the window."""
    win = int(round(sample_rate * win_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    return win, hop, 2 ** math.ceil(math.log2(win))


def _type_name(transform) -> str:
    """``'SampleClip'`` of a config (``xdc.SampleClip`` too) or a built
    transform."""
    if isinstance(transform, Mapping):
        return str(transform.get('type', '')).split('.')[-1]
    return type(transform).__name__


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """One clip: ``num_frames`` frames at ``frame_rate`` fps (None: the
    file's rate) or, for audio-only data, ``clip_duration`` seconds;
    frames resized to ``short_side`` and cropped to ``crop_size`` squares;
    ``audio_duration`` s of ``sample_rate`` Hz audio centred on the clip, as
    an ``n_mels``-band log-mel of ``win_ms`` windows every ``hop_ms``.

    The defaults are the transforms' (XDC's inputs: 8 frames, short side
    128, 112 crops, 2 s of 16 kHz audio, 40 bands, 10 ms hop).
    ``transforms`` names the clip transforms the pipeline it was read from
    has (settings of the others are defaults); it takes no part in
    equality."""
    num_frames: int = 8
    frame_rate: Optional[float] = None
    clip_duration: Optional[float] = None
    short_side: int = 128
    crop_size: int = 112
    audio_duration: float = 2.0
    sample_rate: int = 16000
    n_mels: int = 40
    hop_ms: float = 10
    win_ms: float = 25
    transforms: FrozenSet[str] = dataclasses.field(
        default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_pipeline(cls, pipeline: Iterable, **given) -> 'ClipSpec':
        """The spec of ``pipeline`` (transform configs or built
        transforms): ``given`` settings, then the arguments of its clip
        transforms (which win); the rest keep their defaults."""
        values, found = dict(given), set()
        for transform in pipeline or ():
            kind = _type_name(transform)
            if kind not in PIPELINE_ARGS:
                continue
            found.add(kind)
            for arg, name in PIPELINE_ARGS[kind].items():
                if isinstance(transform, Mapping):
                    if arg in transform:
                        values[name] = transform[arg]
                else:
                    values[name] = getattr(transform, arg)
        return cls(**values, transforms=frozenset(found))

    def replace(self, **changes) -> 'ClipSpec':
        """A copy with the given fields changed (None values ignored)."""
        return dataclasses.replace(
            self, **{k: v for k, v in changes.items() if v is not None})

    def transform_args(self, kind: str) -> dict:
        """The arguments of transform ``kind`` that give this clip."""
        return {arg: getattr(self, name)
                for arg, name in PIPELINE_ARGS[kind].items()}

    @property
    def logmel_frames(self) -> int:
        """Frames of the log-mel of one audio window: centred STFT frames,
        as torchaudio's ``MelSpectrogram`` gives (2 s at 16 kHz, 10 ms hop:
        201)."""
        _, hop, _ = stft_samples(self.sample_rate, self.win_ms, self.hop_ms)
        return round(self.audio_duration * self.sample_rate) // hop + 1

    @property
    def video_shape(self) -> Tuple[int, int, int, int]:
        """``(3, T, H, W)`` of one packed video clip."""
        return (3, self.num_frames, self.crop_size, self.crop_size)

    @property
    def audio_shape(self) -> Tuple[int, int, int]:
        """``(1, n_mels, frames)`` of one packed log-mel."""
        return (1, self.n_mels, self.logmel_frames)

    def window_record(self) -> dict:
        """What a clustering round records to cut a clip's window again:
        the frames, the audio window and the log-mel settings."""
        return dict(num_frames=self.num_frames,
                    audio_duration=self.audio_duration,
                    sample_rate=self.sample_rate, n_mels=self.n_mels,
                    hop_ms=self.hop_ms, win_ms=self.win_ms)
