"""A media file opened for decoding: seeks to the keyframe before a time and
yields the decoded frames of one stream with their times (seconds from the
container origin), reopening the file where a demuxer cannot seek."""
import av

from xdc_plugin.data.media_info import (DecodeError, container_origin,
                                        open_media)

__all__ = ['MediaSource']

# Seek this much before the wanted time: some demuxers (ogg, mpeg-ps) seek
# imprecisely and may land slightly after the requested timestamp.
_SEEK_MARGIN = 0.5
# Demuxers (``format.name`` parts) whose sample index lands a backward seek
# on the keyframe at or before the time asked: video needs no margin there
# (about 30% fewer frames decoded on avobjects' 1 s GOPs).
_EXACT_SEEK_FORMATS = frozenset(('mov', 'mp4'))
# Audio decoded before a window after an exact seek, so that the window's
# first samples come out as from an unbroken decode: AAC overlaps
# consecutive frames, MP3 has a bit reservoir, Opus a pre-roll of 80 ms.
_AUDIO_PRIMING = 0.2
# Undecodable packets tolerated per read (after a seek, MPEG-2 rejects the
# packets before the next sequence header).
_MAX_BAD_PACKETS = 32


class MediaSource:
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
