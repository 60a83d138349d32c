"""The audio window of a clip: decoded from a ``MediaSource``, joined,
resampled to mono float32 and cut at the window (the rules are in
``decode.py``'s docstring)."""
import av
import numpy as np
import torch

from xdc_plugin.data.media_info import (AUDIO_SHORT_TOLERANCE, END_SLACK,
                                        DecodeError, stream_span)
from xdc_plugin.data.media_source import MediaSource

__all__ = ['decode_audio', 'audio_window']


def decode_audio(src: MediaSource, start, duration, sample_rate,
                 video_end=None, pad_short_audio=False, layout='mono'):
    """Float32 tensor (channels, round(duration * sample_rate)) from
    ``start`` (seconds from origin), zero-padded past the stream's end, in
    the channel ``layout`` ('mono', 'stereo', '5.1', ...).

    ``DecodeError`` ``truncated`` when the stream ends before its header
    says; ``audio_short`` when it ends more than ``AUDIO_SHORT_TOLERANCE``
    before ``video_end`` (the video's end) inside the window, unless
    ``pad_short_audio``."""
    container = src.container
    stream = container.streams.audio[0]  # decode_clips checked there is one
    # Header promise: the stream's own duration, else the container's (only
    # the longest stream's, hence the slack).
    _, promised = stream_span(container, stream)
    slack = 0.25 if stream.duration else END_SLACK
    n = int(round(duration * sample_rate))
    frames, times, first_t, have = [], [], None, 0.0
    for t, frame in src.frames('audio', start):
        if first_t is None:
            first_t = t
        frames.append(frame)
        times.append(t)
        have += frame.samples / frame.sample_rate
        if first_t + have >= start + duration + 0.05:
            break
    samples = _resample(frames, sample_rate, layout)  # (channels, S)
    have = samples.shape[1] / sample_rate
    offset = _window_offset(frames, times, start, sample_rate)
    if offset < 0:  # the audio stream starts after the window start
        samples = np.pad(samples, ((0, 0), (-offset, 0)))
        offset = 0
    end = start + max(samples.shape[1] - offset, 0) / sample_rate
    got = (f'audio ends at {first_t + have:.3f}s'
           if first_t is not None else f'no audio from {start:.3f}s')
    if end < min(start + duration, promised) - slack:
        raise DecodeError(src.path, f'{got}, header promises '
                          f'{promised:.3f}s', 'truncated')
    # Without its own duration, the video's end is the container's (the
    # longest stream's): as loose as the truncation check.
    video = container.streams.video[0] if container.streams.video else None
    short_slack = AUDIO_SHORT_TOLERANCE if video and video.duration else \
        max(AUDIO_SHORT_TOLERANCE, END_SLACK)
    if (video_end is not None and not pad_short_audio and
            end < min(start + duration, video_end) - short_slack):
        raise DecodeError(src.path, f'{got}, the video ends at '
                          f'{video_end:.3f}s', 'audio_short')
    window = samples[:, offset:offset + n]
    if window.shape[1] < n:  # file audio shorter than the window: pad
        window = np.pad(window, ((0, 0), (0, n - window.shape[1])))
    return torch.from_numpy(np.ascontiguousarray(window, np.float32))


def _window_offset(frames, times, start, sample_rate):
    """Sample (at ``sample_rate``) of the joined ``frames`` where the window
    at ``start`` begins: counted from the frame before the first one that
    starts after it, so that timestamps which jitter or skip (mov.mov of
    the decoding-robustness set: frames 120-1936 samples apart) do not move
    the window with the point where decoding began."""
    if not frames:
        return 0
    after = next((k for k, t in enumerate(times) if t > start), len(times))
    anchor = max(after - 1, 0)
    before = sum(f.samples for f in frames[:anchor]) * sample_rate / \
        frames[0].sample_rate
    return int(round(before + (start - times[anchor]) * sample_rate))


def _resample(frames, sample_rate, layout='mono'):
    """Float32 samples (channels, S) at ``sample_rate`` of consecutive
    decoded audio frames, in the channel ``layout``, resampled by
    libswresample as one contiguous stream (robust to non-monotonic
    timestamps, mkv.mkv). Mono float audio at that rate (avobjects' AAC)
    is only joined: setting up PyAV's resampler (a filter graph) costs as
    much as decoding the window."""
    channels = av.AudioLayout(layout).nb_channels
    if not frames:
        return np.zeros((channels, 0), np.float32)
    fmt, own, rate = (frames[0].format.name, frames[0].layout.name,
                      frames[0].sample_rate)
    if (rate, own, layout) == (sample_rate, 'mono', 'mono') and \
            fmt in ('flt', 'fltp'):
        # Read in place: ``to_ndarray`` stacks the planes, 5x slower.
        return np.concatenate([np.frombuffer(f.planes[0], np.float32,
                                             f.samples) for f in frames])[None]
    joined = np.concatenate([f.to_ndarray() for f in frames], axis=1)
    frame = av.AudioFrame.from_ndarray(joined, format=fmt, layout=own)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format='fltp', layout=layout,
                                  rate=sample_rate)
    out = resampler.resample(frame) + resampler.resample(None)  # + flush
    return np.concatenate([f.to_ndarray() for f in out], axis=1) if out \
        else np.zeros((channels, 0), np.float32)


def audio_window(centre, audio_duration, file_duration):
    """Start of the ``audio_duration`` window centred on ``centre`` and
    shifted inside ``[0, file_duration]`` (0 if the file is shorter)."""
    start = centre - audio_duration / 2
    return max(0.0, min(start, file_duration - audio_duration))
