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

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from xdc_plugin.data.media_info import (AUDIO_SHORT_TOLERANCE, DecodeError,
                                        VideoInfo, container_origin,
                                        open_media, probe, read_info,
                                        stream_span)

__all__ = ['DecodeError', 'VideoInfo', 'probe', 'decode_clip',
           'decode_clips', 'audio_window', 'short_side_size']

# Seek this much before the wanted time: some demuxers (ogg, mpeg-ps) seek
# imprecisely and may land slightly after the requested timestamp.
_SEEK_MARGIN = 0.5
# Demuxers (``format.name`` parts) whose sample index lands a backward seek
# on the keyframe at or before the time asked: video needs no margin there
# (a third fewer frames decoded on avobjects' 1 s GOPs).
_EXACT_SEEK_FORMATS = frozenset(('mov', 'mp4'))
# Audio decoded before a window after an exact seek, so that the window's
# first samples come out as from an unbroken decode: AAC overlaps
# consecutive frames, MP3 has a bit reservoir, Opus a pre-roll of 80 ms.
_AUDIO_PRIMING = 0.2
# A stream may end this much before the header's duration without being
# called truncated: the last frame of a QuickTime file can be shown for
# ~1 s, and a Matroska header gives only the longest stream's duration.
_END_SLACK = 1.0
# Undecodable packets tolerated per read (after a seek, MPEG-2 rejects the
# packets before the next sequence header).
_MAX_BAD_PACKETS = 32
# FFmpeg's decoder threads pay off from about this frame size; below it
# (avobjects' 128x128) starting and stopping them costs more than they save
# (10 vs 15 ms a clip).
_THREADED_MIN_PIXELS = 640 * 360
# Pixel formats libswscale converts and scales in one pass without loss.
_SCALED_AS_IS = ('yuv', 'yuvj', 'nv', 'gray', 'rgb24', 'bgr24')


class _Source:
    """One file opened for decoding; reopened when a seek is impossible."""

    def __init__(self, path):
        self.path = path
        self.container = open_media(path)
        self.fresh = True  # positioned at the start of the file
        self.exact_seek = not _EXACT_SEEK_FORMATS.isdisjoint(
            self.container.format.name.split(','))

    def close(self):
        self.container.close()

    def _reopen(self):
        self.container.close()
        self.container = open_media(self.path)
        self.fresh = True

    def _seek(self, stream, t):
        """Seek to the keyframe at or before ``t`` less a margin (seconds
        from origin; see ``_SEEK_MARGIN``). Falls back to reopening (= the
        file start) for demuxers that refuse to seek (some avi/mkv files)."""
        if not self.exact_seek:
            t -= _SEEK_MARGIN
        elif stream.type == 'audio':
            t -= _AUDIO_PRIMING
        t = max(t, 0.0)
        if t == 0.0 and self.fresh:
            return False
        try:
            origin = container_origin(self.container)
            ts = int((t + origin) / stream.time_base)
            self.container.seek(ts, stream=stream, backward=True,
                                any_frame=False)
            return t > 0
        except av.FFmpegError:
            self._reopen()
            return False

    def frames(self, kind, t0):
        """Yield ``(time, frame)`` of the first ``kind`` stream from about
        ``t0`` on; times are seconds from the container origin.

        A frame without a pts gets one extrapolated from the previous
        frames. Up to ``_MAX_BAD_PACKETS`` packets the decoder rejects are
        skipped (after a seek, MPEG-2 rejects the packets before its next
        sequence header), as ffmpeg does. If the seek landed after
        ``t0`` (imprecise demuxers), decoding restarts from the file start.
        """
        seeked = self._seek(getattr(self.container.streams, kind)[0], t0)
        stream = getattr(self.container.streams, kind)[0]  # may be reopened
        origin = container_origin(self.container)
        while True:
            self.fresh = False
            last, step, late, bad = None, 0.0, False, 0
            for packet in self.container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.FFmpegError as e:
                    bad += 1
                    if bad > _MAX_BAD_PACKETS:
                        raise DecodeError(self.path, f'decoding failed: {e}',
                                          'truncated') from e
                    continue
                for frame in decoded:
                    if frame.time is not None:
                        t = frame.time - origin
                    else:
                        t = last + step if last is not None else (
                            t0 if seeked else 0.0)
                    if last is None and seeked and t > t0 + 1e-3:
                        late = True
                        break
                    if last is not None and t > last:
                        step = t - last
                    last = t
                    yield t, frame
                if late:
                    break
            if not late:
                return
            self._reopen()
            stream = getattr(self.container.streams, kind)[0]
            seeked = False


def short_side_size(height, width, short_side):
    """(height, width) with the short side ``short_side``, aspect kept."""
    scale = short_side / min(height, width)
    return (max(short_side, round(height * scale)),
            max(short_side, round(width * scale)))


def decode_video(src: _Source, start_sec, num_frames, fps, info: VideoInfo,
                 out):
    """``num_frames`` RGB frames at ``fps`` from ``start_sec`` into ``out``,
    uint8 (T, H, W, 3), scaled to its size (see the module doc)."""
    targets = start_sec + np.arange(num_frames) / fps
    picked, prev, k = [], None, 0
    for t, frame in src.frames('video', start_sec):
        # Each target takes the nearer of the two frames around it.
        while k < num_frames and t >= targets[k]:
            near_prev = prev is not None and targets[k] - prev[0] < \
                t - targets[k]
            picked.append(prev if near_prev else (t, frame))
            k += 1
        if k == num_frames:
            break
        prev = (t, frame)
    if k < num_frames:
        # End of stream: the remaining targets show the last frame, unless
        # the stream stopped well before the duration the header promised.
        if prev is None or prev[0] < info.duration - _END_SLACK - 2 / info.fps:
            got = 'no frame' if prev is None else f'the last at {prev[0]:.3f}s'
            raise DecodeError(
                src.path, f'frame at {targets[k]:.3f}s missing ({got}; header '
                f'duration {info.duration:.3f}s)', 'truncated')
        picked += [prev] * (num_frames - k)
    height, width = out.shape[1:3]
    # Convert each distinct frame once, with one reformatter (swscale
    # context) for the clip: ``frame.to_ndarray(format=...)`` builds a new
    # one per frame, ~50x slower on small frames.
    reformatter, row_of = VideoReformatter(), {}  # row of each frame's copy
    for row, (_, frame) in enumerate(picked):
        if id(frame) in row_of:
            out[row] = out[row_of[id(frame)]]
            continue
        row_of[id(frame)] = row
        if not frame.format.name.startswith(_SCALED_AS_IS):
            # Scaled directly, swscale drops the low bits of 5-bit RGB and
            # palette formats (rpza, msvideo1: up to 8 levels darker).
            frame = reformatter.reformat(frame, format='rgb24', threads=1)
        out[row] = reformatter.reformat(
            frame, width, height, format='rgb24', interpolation='BILINEAR',
            threads=1).to_ndarray()
    return out


def decode_audio(src: _Source, start, duration, sample_rate,
                 video_end=None, pad_short_audio=False):
    """Mono float32 tensor (1, round(duration * sample_rate)) from
    ``start`` (seconds from origin), zero-padded past the stream's end.

    ``DecodeError`` ``truncated`` when the stream ends before its header
    says; ``audio_short`` when it ends more than ``AUDIO_SHORT_TOLERANCE``
    before ``video_end`` (the video's end) inside the window, unless
    ``pad_short_audio``."""
    container = src.container
    if not container.streams.audio:
        raise DecodeError(src.path, 'the file has no audio stream',
                          'no_audio')
    stream = container.streams.audio[0]
    # Header promise: the stream's own duration, else the container's (only
    # the longest stream's, hence the slack).
    _, promised = stream_span(container, stream)
    slack = 0.25 if stream.duration else _END_SLACK
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
    samples = _resample(frames, sample_rate)
    have = len(samples) / sample_rate
    offset = _window_offset(frames, times, start, sample_rate)
    if offset < 0:  # the audio stream starts after the window start
        samples = np.concatenate([np.zeros(-offset, np.float32), samples])
        offset = 0
    end = start + max(len(samples) - offset, 0) / sample_rate
    got = (f'audio ends at {first_t + have:.3f}s'
           if first_t is not None else f'no audio from {start:.3f}s')
    if end < min(start + duration, promised) - slack:
        raise DecodeError(src.path, f'{got}, header promises '
                          f'{promised:.3f}s', 'truncated')
    # Without its own duration, the video's end is the container's (the
    # longest stream's): as loose as the truncation check.
    video = container.streams.video[0] if container.streams.video else None
    short_slack = AUDIO_SHORT_TOLERANCE if video and video.duration else \
        max(AUDIO_SHORT_TOLERANCE, _END_SLACK)
    if (video_end is not None and not pad_short_audio and
            end < min(start + duration, video_end) - short_slack):
        raise DecodeError(src.path, f'{got}, the video ends at '
                          f'{video_end:.3f}s', 'audio_short')
    window = samples[offset:offset + n]
    if len(window) < n:  # file audio shorter than the window: pad the end
        window = np.pad(window, (0, n - len(window)))
    return torch.from_numpy(np.ascontiguousarray(window, np.float32))[None]


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


def _resample(frames, sample_rate):
    """Mono float32 samples at ``sample_rate`` of consecutive decoded audio
    frames, resampled by libswresample as one contiguous stream (robust to
    non-monotonic timestamps, mkv.mkv). Mono float audio at that rate
    (avobjects' AAC) is only joined: setting up PyAV's resampler (a filter
    graph) costs as much as decoding the window."""
    if not frames:
        return np.zeros(0, np.float32)
    fmt, layout, rate = (frames[0].format.name, frames[0].layout.name,
                         frames[0].sample_rate)
    if (rate, layout) == (sample_rate, 'mono') and fmt in ('flt', 'fltp'):
        # Read in place: ``to_ndarray`` stacks the planes, 5x slower.
        return np.concatenate([np.frombuffer(f.planes[0], np.float32,
                                             f.samples) for f in frames])
    joined = np.concatenate([f.to_ndarray() for f in frames], axis=1)
    frame = av.AudioFrame.from_ndarray(joined, format=fmt, layout=layout)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format='flt', layout='mono',
                                  rate=sample_rate)
    out = resampler.resample(frame) + resampler.resample(None)  # + flush
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out]) \
        if out else np.zeros(0, np.float32)


def audio_window(centre, audio_duration, file_duration):
    """Start of the ``audio_duration`` window centred on ``centre`` and
    shifted inside ``[0, file_duration]`` (0 if the file is shorter)."""
    start = centre - audio_duration / 2
    return max(0.0, min(start, file_duration - audio_duration))


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
    src = _Source(path)
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
    except av.FFmpegError as e:  # demuxer errors on corrupt data
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
