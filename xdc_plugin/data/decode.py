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
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

__all__ = ['DecodeError', 'VideoInfo', 'probe', 'decode_video',
           'decode_audio', 'decode_clip', 'clip_seconds', 'probe_clip_source']

# Seek this much before the wanted time: some demuxers (ogg, mpeg-ps) seek
# imprecisely and may land slightly after the requested timestamp.
_SEEK_MARGIN = 0.5
# A stream may end this much before the header's duration without being
# called truncated: the last frame of a QuickTime file can be shown for
# ~1 s, and a Matroska header gives only the longest stream's duration.
_END_SLACK = 1.0
# Undecodable packets tolerated per read (after a seek, MPEG-2 rejects the
# packets before the next sequence header).
_MAX_BAD_PACKETS = 32


class DecodeError(RuntimeError):
    """A file that cannot give the requested clip.

    ``kind`` is one of ``'unreadable'``, ``'no_video'``, ``'no_audio'``,
    ``'truncated'``, ``'too_short'``; ``reason`` is a human message.
    """

    KINDS = ('unreadable', 'no_video', 'no_audio', 'truncated', 'too_short')

    def __init__(self, path, reason, kind='unreadable'):
        assert kind in self.KINDS, kind
        self.path, self.reason, self.kind = str(path), reason, kind
        super().__init__(f'cannot decode {self.path!r}: {kind}: {reason}')

    def __reduce__(self):  # picklable across DataLoader workers
        return DecodeError, (self.path, self.reason, self.kind)


@dataclass
class VideoInfo:
    """Header information; times in seconds from the container start."""
    path: str
    duration: float          # of the video stream (container if unknown)
    fps: float               # average frame rate of the video stream
    width: int
    height: int
    has_audio: bool
    audio_sample_rate: int = 0
    audio_channels: int = 0
    container_duration: float = 0.0


def clip_seconds(num_frames, fps):
    """Span of a clip of ``num_frames`` frames at ``fps``."""
    return num_frames / fps


def _open(path):
    try:
        return av.open(str(path), metadata_errors='ignore')
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DecodeError(path, f'cannot open: {e}') from e


def _origin(container):
    return container.start_time / 1e6 if container.start_time else 0.0


def _stream_span(container, stream):
    """(start, end) of ``stream`` in seconds from the container origin."""
    origin = _origin(container)
    start = (float(stream.start_time * stream.time_base) - origin
             if stream.start_time is not None else 0.0)
    if stream.duration:
        return start, start + float(stream.duration * stream.time_base)
    if container.duration:
        return start, container.duration / 1e6
    return start, math.nan


def _info(container, path):
    if not container.streams.video:
        raise DecodeError(path, 'the file has no video stream', 'no_video')
    vs = container.streams.video[0]
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    if not rate:
        raise DecodeError(path, 'the video stream has no frame rate')
    _, vend = _stream_span(container, vs)
    cdur = container.duration / 1e6 if container.duration else vend
    if not cdur or math.isnan(cdur) or cdur <= 0:
        raise DecodeError(path, 'the header gives no duration')
    aud = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        path=str(path), duration=float(min(vend, cdur)
                                       if not math.isnan(vend) else cdur),
        fps=float(rate), width=vs.codec_context.width,
        height=vs.codec_context.height, has_audio=aud is not None,
        audio_sample_rate=aud.codec_context.sample_rate if aud else 0,
        audio_channels=aud.codec_context.channels if aud else 0,
        container_duration=float(cdur))


def probe(path) -> VideoInfo:
    """Read the headers only (no frame is decoded by us).

    Raises ``DecodeError`` (``unreadable`` or ``no_video``); a file without
    audio is reported with ``has_audio=False``.
    """
    with _open(path) as container:
        return _info(container, path)


def probe_clip_source(path, num_frames, frame_rate=None) -> VideoInfo:
    """``probe``, then refuse a file that cannot give a ``num_frames`` clip
    at ``frame_rate`` (None: its own) with audio: ``DecodeError`` of kind
    ``no_audio`` or ``too_short`` (or ``probe``'s own)."""
    info = probe(path)
    if not info.has_audio:
        raise DecodeError(path, 'the file has no audio stream', 'no_audio')
    span = clip_seconds(num_frames, frame_rate or info.fps)
    if info.duration < span:
        raise DecodeError(path, f'{info.duration:.3f}s < clip {span:.3f}s',
                          'too_short')
    return info


class _Source:
    """One file opened for decoding; reopened when a seek is impossible."""

    def __init__(self, path):
        self.path = path
        self.container = _open(path)
        self.fresh = True  # positioned at the start of the file

    def close(self):
        self.container.close()

    def _reopen(self):
        self.container.close()
        self.container = _open(self.path)
        self.fresh = True

    def _seek(self, stream, t):
        """Seek to the keyframe at or before ``t - _SEEK_MARGIN`` (seconds
        from origin). Falls back to reopening (= the file start) for
        demuxers that refuse to seek (some avi/mkv files)."""
        t = max(t - _SEEK_MARGIN, 0.0)
        if t == 0.0 and self.fresh:
            return False
        try:
            ts = int((t + _origin(self.container)) / stream.time_base)
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
        origin = _origin(self.container)
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


def decode_video(src: _Source, start_sec, num_frames, fps, info: VideoInfo):
    """``num_frames`` RGB frames at ``fps`` from ``start_sec``:
    uint8 tensor (T, H, W, 3)."""
    src.container.streams.video[0].thread_type = 'AUTO'
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
    # Convert each distinct frame once, with one reformatter (swscale
    # context) for the clip: ``frame.to_ndarray(format=...)`` builds a new
    # one per frame, ~50x slower on small frames.
    reformatter, arrays = VideoReformatter(), {}
    for _, frame in picked:
        if id(frame) not in arrays:
            arrays[id(frame)] = reformatter.reformat(
                frame, format='rgb24', threads=1).to_ndarray()
    return torch.from_numpy(np.stack([arrays[id(f)] for _, f in picked]))


def decode_audio(src: _Source, start, duration, sample_rate):
    """Mono float32 tensor (1, round(duration * sample_rate)) from
    ``start`` (seconds from origin), zero-padded past the stream's end."""
    container = src.container
    if not container.streams.audio:
        raise DecodeError(src.path, 'the file has no audio stream',
                          'no_audio')
    stream = container.streams.audio[0]
    # Header promise: the stream's own duration, else the container's (only
    # the longest stream's, hence the slack).
    _, promised = _stream_span(container, stream)
    slack = 0.25 if stream.duration else _END_SLACK
    n = int(round(duration * sample_rate))
    resampler = av.AudioResampler(format='flt', layout='mono',
                                  rate=sample_rate)
    chunks, first_t, have = [], None, 0
    for t, frame in src.frames('audio', start):
        if first_t is None:
            first_t = t
        # Resample as one contiguous stream from the first frame's time:
        # robust to non-monotonic timestamps (mkv.mkv).
        frame.pts = None
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
            have += out.samples
        if first_t + have / sample_rate >= start + duration + 0.05:
            break
    else:
        chunks += [f.to_ndarray().reshape(-1)
                   for f in resampler.resample(None)]  # flush
    if first_t is None:
        raise DecodeError(src.path, f'no audio decodable from {start:.3f}s',
                          'truncated')
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = int(round((start - first_t) * sample_rate))
    if offset < 0:  # the audio stream starts after the window start
        samples = np.concatenate([np.zeros(-offset, np.float32), samples])
        offset = 0
    end = start + (len(samples) - offset) / sample_rate
    if end < min(start + duration, promised) - slack:
        raise DecodeError(src.path, f'audio ends at {end:.3f}s, header '
                          f'promises {promised:.3f}s', 'truncated')
    window = samples[offset:offset + n]
    if len(window) < n:  # file audio shorter than the window: pad the end
        window = np.pad(window, (0, n - len(window)))
    return torch.from_numpy(np.ascontiguousarray(window, np.float32))[None]


def audio_window(centre, audio_duration, file_duration):
    """Start of the ``audio_duration`` window centred on ``centre`` and
    shifted inside ``[0, file_duration]`` (0 if the file is shorter)."""
    start = centre - audio_duration / 2
    return max(0.0, min(start, file_duration - audio_duration))


def decode_clip(path, start_sec: float = 0.0, num_frames: int = 8,
                frame_rate: Optional[float] = None,
                audio_duration: Optional[float] = 2.0,
                sample_rate: int = 16000
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Decode a clip and its centred audio window from ``path``.

    Returns ``(video, audio)``: uint8 (T, H, W, 3) RGB and float32 (1, S)
    with ``S = round(audio_duration * sample_rate)`` (``audio`` is None when
    ``audio_duration`` is None). Raises ``DecodeError``.
    """
    src = _Source(path)
    try:
        info = _info(src.container, path)
        fps = float(frame_rate or info.fps)
        span = clip_seconds(num_frames, fps)
        if start_sec < 0 or start_sec + span > info.duration + 1.0 / info.fps:
            raise DecodeError(
                path, f'clip [{start_sec:.3f}, {start_sec + span:.3f}]s is '
                f'outside the file ({info.duration:.3f}s)', 'too_short')
        if audio_duration is not None and not info.has_audio:
            raise DecodeError(path, 'the file has no audio stream',
                              'no_audio')
        video = decode_video(src, start_sec, num_frames, fps, info)
        audio = None
        if audio_duration is not None:
            a0 = audio_window(start_sec + span / 2, audio_duration,
                              info.container_duration)
            audio = decode_audio(src, a0, audio_duration, sample_rate)
    except av.FFmpegError as e:  # demuxer errors on corrupt data
        raise DecodeError(path, f'decoding failed: {e}', 'truncated') from e
    finally:
        src.close()
    return video, audio
