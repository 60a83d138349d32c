"""Decode a video clip and its time-aligned audio window from one file.

Everything goes through PyAV (FFmpeg). Video and audio share one time
origin: the container's ``start_time`` (the presentation time FFmpeg gives
the start of the file), so A/V sync follows the file's own timestamps even
when a stream starts late (MPEG-PS, AVI).

Clip sampling:
    frame ``k`` of a clip is the decoded frame whose timestamp is nearest to
    ``start_sec + k / frame_rate``. ``frame_rate=None`` uses the file's
    average rate, i.e. consecutive frames.
Audio window:
    ``audio_duration`` seconds centred on the clip centre
    ``start_sec + num_frames / (2 * frame_rate)``, shifted (not shrunk) to
    lie inside ``[0, duration]``. Resampled by libswresample to mono float32
    at ``sample_rate``. When the file is shorter than the window, the window
    starts at 0 and the missing tail is zero-padded; the few samples missing
    when an audio stream starts after the container start are zero-filled at
    the front so that the window stays aligned with the video.
Audio shorter than video:
    an audio track that ends more than ``AUDIO_SHORT_TOLERANCE`` before the
    video is a decode failure of kind ``audio_short`` (the windows past its
    end would be silence), unless ``pad_short_audio=True`` asks for zeros.
Audio-only files (``modalities=('audio',)``): the "clip" is a window of
    ``clip_duration`` seconds; the file's duration is its audio stream's.
Resize while decoding (``short_side``): libswscale scales the frame while it
    converts it from YUV to RGB (bilinear, averaging over the source pixels
    when shrinking), instead of converting the full frame and resizing it
    afterwards; same size rule as ``VideoResize``.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from av import FFmpegError
from av.video.reformatter import VideoReformatter

from xdc_plugin.data.decode_audio import audio_window, decode_audio
from xdc_plugin.data.media_info import (END_SLACK, DecodeError, VideoInfo,
                                        probe, read_info)
from xdc_plugin.data.media_source import MediaSource

__all__ = ['DecodeError', 'VideoInfo', 'probe', 'decode_clip',
           'decode_clips', 'audio_window', 'short_side_size', 'frames_at',
           'scale_frame']

# FFmpeg's decoder threads pay off from about this frame size; below it
# (avobjects' 128x128) starting and stopping them costs more than they save
# (10 vs 15 ms a clip).
_THREADED_MIN_PIXELS = 640 * 360
# Pixel formats libswscale converts and scales in one pass without loss.
_SCALED_AS_IS = ('yuv', 'yuvj', 'nv', 'gray', 'rgb24', 'bgr24')


def short_side_size(height, width, short_side):
    """(height, width) with the short side ``short_side``, aspect kept."""
    scale = short_side / min(height, width)
    return (max(short_side, round(height * scale)),
            max(short_side, round(width * scale)))


def frames_at(src: MediaSource, targets, info: VideoInfo):
    """Yield, for each time of ``targets`` (increasing, seconds from
    origin), ``(time, frame)`` of the decoded video frame nearest to it;
    a frame that is nearest to several targets comes that many times in a
    row. Decodes lazily: a whole file's targets hold two decoded frames at
    a time.

    Past the end of the stream the remaining targets get the last frame,
    unless the stream stopped well before the duration the header promised
    (``DecodeError`` ``truncated``)."""
    targets = np.asarray(targets, np.float64)
    prev, k = None, 0
    for t, frame in src.frames('video', float(targets[0]) if len(targets)
                               else 0.0):
        # Each target takes the nearer of the two frames around it.
        while k < len(targets) and t >= targets[k]:
            near_prev = prev is not None and targets[k] - prev[0] < \
                t - targets[k]
            yield prev if near_prev else (t, frame)
            k += 1
        if k == len(targets):
            return
        prev = (t, frame)
    if k < len(targets) and (
            prev is None or
            prev[0] < info.duration - END_SLACK - 2 / info.fps):
        got = 'no frame' if prev is None else f'the last at {prev[0]:.3f}s'
        raise DecodeError(
            src.path, f'frame at {targets[k]:.3f}s missing ({got}; header '
            f'duration {info.duration:.3f}s)', 'truncated')
    for _ in range(k, len(targets)):
        yield prev


def scale_frame(reformatter, frame, width, height, format='rgb24',
                **colour):
    """``frame`` converted to ``format`` at ``width`` x ``height`` by
    libswscale (bilinear) in one pass, through full-size RGB first where a
    direct scale would lose bits (see ``_SCALED_AS_IS``); ``colour``: the
    ``dst_colorspace`` and ``dst_color_range`` of ``reformat``. One
    ``VideoReformatter`` (swscale context) serves a whole clip:
    ``frame.to_ndarray(format=...)`` builds a new one per frame, ~50x
    slower on small frames."""
    if not frame.format.name.startswith(_SCALED_AS_IS):
        # Scaled directly, swscale drops the low bits of 5-bit RGB and
        # palette formats (rpza, msvideo1: up to 8 levels darker).
        frame = reformatter.reformat(frame, format='rgb24', threads=1)
    return reformatter.reformat(frame, width, height, format=format,
                                interpolation='BILINEAR', threads=1,
                                **colour)


def decode_video(src: MediaSource, start_sec, num_frames, fps, info: VideoInfo,
                 out):
    """``num_frames`` RGB frames at ``fps`` from ``start_sec`` into ``out``,
    uint8 (T, H, W, 3), scaled to its size (see the module doc)."""
    targets = start_sec + np.arange(num_frames) / fps
    height, width = out.shape[1:3]
    reformatter, last = VideoReformatter(), None
    for row, (_, frame) in enumerate(frames_at(src, targets, info)):
        # A repeated frame comes right after its first copy: converted once.
        if frame is last:
            out[row] = out[row - 1]
        else:
            out[row] = scale_frame(reformatter, frame, width,
                                   height).to_ndarray()
        last = frame
    return out


def decode_clips(path, starts: Sequence[float], num_frames: int = 8,
                 frame_rate: Optional[float] = None,
                 clip_duration: Optional[float] = None,
                 audio_duration: Optional[float] = 2.0,
                 sample_rate: int = 16000,
                 modalities: Sequence[str] = ('video', 'audio'),
                 pad_short_audio: bool = False,
                 short_side: Optional[int] = None):
    """Decode one clip per start (s) of ``path``, opening the file once.

    A clip spans ``clip_duration`` seconds, or (None) ``num_frames`` frames
    at ``frame_rate`` (None: the file's rate). Video: ``num_frames`` frames
    from each start; audio: an ``audio_duration`` window centred on each
    clip (see the module doc). ``modalities`` says which to decode;
    ``('audio',)`` accepts audio-only files (then give ``clip_duration``).
    ``short_side``: frames resized while decoding (see the module doc).

    Returns ``(video, audio, info)``: uint8 (K, T, H, W, 3) or None,
    float32 (K, 1, S) or None, and the file's ``VideoInfo``.
    """
    want_video = 'video' in modalities
    want_audio = 'audio' in modalities and audio_duration is not None
    src = MediaSource(path)
    try:
        info = read_info(src.container, path, require_video=want_video)
        fps = float(frame_rate or info.fps)
        span = clip_duration if clip_duration is not None else \
            num_frames / fps
        # The last clip may end one frame after the last frame's start.
        tolerance = 1.0 / info.fps if info.has_video else 1e-3
        for start in starts:
            if start < 0 or start + span > info.duration + tolerance:
                raise DecodeError(
                    path, f'clip [{start:.3f}, {start + span:.3f}]s is '
                    f'outside the file ({info.duration:.3f}s)', 'too_short')
        if want_audio and not info.has_audio:
            raise DecodeError(path, 'the file has no audio stream',
                              'no_audio')
        video = audio = None
        if want_video:
            if info.width * info.height >= _THREADED_MIN_PIXELS:
                src.container.streams.video[0].thread_type = 'AUTO'
            height, width = (info.height, info.width) if short_side is None \
                else short_side_size(info.height, info.width, short_side)
            video = np.empty((len(starts), num_frames, height, width, 3),
                             np.uint8)
            for k, s in enumerate(starts):
                decode_video(src, s, num_frames, fps, info, video[k])
            video = torch.from_numpy(video)
        if want_audio:
            video_end = info.duration if info.has_video else None
            audio = torch.stack([decode_audio(
                src, audio_window(s + span / 2, audio_duration,
                                  info.container_duration),
                audio_duration, sample_rate, video_end, pad_short_audio)
                for s in starts])
    except FFmpegError as e:  # demuxer errors on corrupt data
        raise DecodeError(path, f'decoding failed: {e}', 'truncated') from e
    finally:
        src.close()
    return video, audio, info


def decode_clip(path, start_sec: float = 0.0, num_frames: int = 8,
                frame_rate: Optional[float] = None,
                audio_duration: Optional[float] = 2.0,
                sample_rate: int = 16000, pad_short_audio: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Decode a clip and its centred audio window from ``path``.

    Returns ``(video, audio)``: uint8 (T, H, W, 3) RGB and float32 (1, S)
    with ``S = round(audio_duration * sample_rate)`` (``audio`` is None when
    ``audio_duration`` is None). Raises ``DecodeError``.
    """
    video, audio, _ = decode_clips(
        path, [start_sec], num_frames, frame_rate,
        audio_duration=audio_duration, sample_rate=sample_rate,
        pad_short_audio=pad_short_audio)
    return video[0], None if audio is None else audio[0]
