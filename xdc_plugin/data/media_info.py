"""What a media file's headers say: streams, duration, frame rate.

``probe`` reads the headers only; ``DecodeError`` is the one error every
decoding step raises, with a ``kind`` that says what is wrong.

``open_media`` is the one way a media file is opened (probe, decode, the
file check, the gallery): only a regular file, never a FIFO, device or
socket (an open of a FIFO blocks until a writer comes, and no FFmpeg
timeout interrupts a blocked system call), only through FFmpeg's ``file``
protocol (a path, or a playlist inside a file, is never fetched from the
network), and with a time limit on FFmpeg's own work (``MEDIA_TIMEOUT_S``).
"""
import math
import os
import os.path as osp
import stat
from dataclasses import dataclass

import av

__all__ = ['DecodeError', 'VideoInfo', 'probe', 'open_media',
           'check_media_path', 'AUDIO_SHORT_TOLERANCE', 'END_SLACK',
           'MEDIA_TIMEOUT_S']

# An audio track may end this much before the video: real files often
# differ by 0.1-0.5 s (avi, mpeg-ps, vp9 of the decoding-robustness set); a
# 2 s window then holds at most a quarter of padding.
AUDIO_SHORT_TOLERANCE = 0.5
# A stream may end this much before the header's duration without being
# called truncated: the last frame of a QuickTime file can be shown for
# ~1 s, and a Matroska header gives only the longest stream's duration.
END_SLACK = 1.0
# Seconds FFmpeg may spend opening a file (headers and stream probe) and
# then on each read, before the file is called unreadable. A local file
# opens in milliseconds; this bounds a demuxer that loops or a slow network
# mount. It cannot end a system call that blocks, hence the type check.
MEDIA_TIMEOUT_S = 60.0
_FILE_TYPES = ((stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'),
               (stat.S_ISCHR, 'a character device'),
               (stat.S_ISBLK, 'a block device'), (stat.S_ISDIR, 'a folder'))


class DecodeError(RuntimeError):
    """A file that cannot give the requested clip.

    ``kind`` is one of ``KINDS``; ``reason`` is a human message.
    ``missing``: no file at the path; ``unreadable``: a file that cannot be
    opened as media (not a regular file, no permission, unknown format);
    ``audio_short``: the audio track ends well before the video.
    """

    KINDS = ('missing', 'unreadable', 'no_video', 'no_audio', 'truncated',
             'too_short', 'audio_short')

    def __init__(self, path, reason, kind='unreadable'):
        assert kind in self.KINDS, kind
        self.path, self.reason, self.kind = str(path), reason, kind
        super().__init__(f'cannot decode {self.path!r}: {kind}: {reason}')

    def __reduce__(self):  # picklable across DataLoader workers
        return DecodeError, (self.path, self.reason, self.kind)


@dataclass
class VideoInfo:
    """Header information; times in seconds from the container start.

    For an audio-only file (``has_video=False``) ``duration`` is the audio
    stream's and ``fps``, ``width`` and ``height`` are 0."""
    path: str
    duration: float          # of the video stream (container if unknown)
    fps: float               # average frame rate of the video stream
    width: int
    height: int
    has_audio: bool
    audio_sample_rate: int = 0
    audio_channels: int = 0
    container_duration: float = 0.0
    has_video: bool = True
    # End of the audio stream by its own header; nan when it gives none.
    audio_end: float = math.nan


def check_media_path(path):
    """Raise ``DecodeError`` unless ``path`` is an existing regular file
    (``missing``, or ``unreadable`` naming what it is instead); opens
    nothing."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DecodeError(path, 'no such file', 'missing') from None
    except OSError as e:
        raise DecodeError(path, f'cannot stat: {e.strerror}') from None
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _FILE_TYPES if test(mode)),
                    'a special file')
        raise DecodeError(path, f'{what}, not a regular file: not opened')


def open_media(path):
    """The PyAV container of the media file ``path`` (see the module doc);
    ``DecodeError`` when it is missing, not a regular file or unreadable.
    """
    check_media_path(path)
    try:
        # An absolute path has no protocol prefix for FFmpeg to read.
        return av.open(osp.abspath(path), metadata_errors='ignore',
                       container_options={'protocol_whitelist': 'file'},
                       timeout=MEDIA_TIMEOUT_S)
    except av.ExitError as e:
        raise DecodeError(path, f'no answer within {MEDIA_TIMEOUT_S:g} s '
                          f'({e})') from e
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DecodeError(path, f'cannot open: {e}') from e


def container_origin(container):
    return container.start_time / 1e6 if container.start_time else 0.0


def stream_span(container, stream):
    """(start, end) of ``stream`` in seconds from the container origin."""
    origin = container_origin(container)
    start = (float(stream.start_time * stream.time_base) - origin
             if stream.start_time is not None else 0.0)
    if stream.duration:
        return start, start + float(stream.duration * stream.time_base)
    if container.duration:
        return start, container.duration / 1e6
    return start, math.nan


def _container_duration(container, fallback):
    cdur = container.duration / 1e6 if container.duration else fallback
    if not cdur or math.isnan(cdur) or cdur <= 0:
        return None
    return float(cdur)


def read_info(container, path, require_video=True):
    """``VideoInfo`` of an open container (see ``probe``)."""
    aud = container.streams.audio[0] if container.streams.audio else None
    audio = dict(audio_sample_rate=aud.codec_context.sample_rate,
                 audio_channels=aud.codec_context.channels,
                 audio_end=stream_span(container, aud)[1]
                 if aud.duration else math.nan) if aud else {}
    if not container.streams.video:
        if require_video:
            raise DecodeError(path, 'the file has no video stream',
                              'no_video')
        if aud is None:
            raise DecodeError(path, 'the file has no audio or video stream',
                              'no_audio')
        aend = stream_span(container, aud)[1]
        cdur = _container_duration(container, aend)
        if cdur is None:
            raise DecodeError(path, 'the header gives no duration')
        duration = cdur if math.isnan(aend) else min(aend, cdur)
        return VideoInfo(path=str(path), duration=float(duration), fps=0.0,
                         width=0, height=0, has_audio=True,
                         container_duration=cdur, has_video=False, **audio)
    vs = container.streams.video[0]
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    if not rate:
        raise DecodeError(path, 'the video stream has no frame rate')
    _, vend = stream_span(container, vs)
    cdur = _container_duration(container, vend)
    if cdur is None:
        raise DecodeError(path, 'the header gives no duration')
    return VideoInfo(
        path=str(path), duration=float(min(vend, cdur)
                                       if not math.isnan(vend) else cdur),
        fps=float(rate), width=vs.codec_context.width,
        height=vs.codec_context.height, has_audio=aud is not None,
        container_duration=cdur, **audio)


def probe(path, require_video=True) -> VideoInfo:
    """Read the headers only (no frame is decoded by us).

    Raises ``DecodeError`` (``unreadable`` or ``no_video``); a file without
    audio is reported with ``has_audio=False``. ``require_video=False``
    accepts an audio-only file (``has_video=False``).
    """
    with open_media(path) as container:
        return read_info(container, path, require_video)
