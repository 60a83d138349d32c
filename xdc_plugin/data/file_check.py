"""Which files can give clips: the one check that both the dataset build and
``tools/check_manifest.py`` run, so that they skip the same files.

``check_file`` reads the headers (streams, duration, an audio track that
ends well before the video) and, with ``full_decode``, decodes a clip at the
start, the middle and the end of the file with its audio window, which
finds the truncated files that the headers alone let through.
``check_files`` checks many files in parallel, with a progress bar and a
cache (``check_cache.py``).
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

from tqdm import tqdm

from xdc_plugin.data.decode import decode_clips
from xdc_plugin.data.media_info import (AUDIO_SHORT_TOLERANCE, DecodeError,
                                        probe)

__all__ = ['CheckSettings', 'FileCheck', 'STATUSES', 'check_file',
           'check_files']

STATUSES = ('ok', ) + DecodeError.KINDS
# Part of every cache key: bump it when what a check finds changes.
CHECK_VERSION = 2


@dataclass(frozen=True)
class CheckSettings:
    """What a file must give: clips of ``num_frames`` frames at
    ``frame_rate`` (None: the file's rate) or of ``clip_duration`` seconds
    (audio-only data), an ``audio_duration`` window at ``sample_rate``, in
    the streams of ``modalities``. ``full_decode=False`` reads headers only.
    """
    modalities: Tuple[str, ...] = ('video', 'audio')
    num_frames: Optional[int] = 8
    frame_rate: Optional[float] = None
    clip_duration: Optional[float] = None
    audio_duration: Optional[float] = 2.0
    sample_rate: int = 16000
    full_decode: bool = True

    def __post_init__(self):
        # Canonical types, so that a config's 30 and a command line's 30.0
        # share a cache.
        for name, kind in (('frame_rate', float), ('clip_duration', float),
                           ('audio_duration', float), ('num_frames', int)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, kind(value))
        object.__setattr__(self, 'modalities', tuple(self.modalities))
        unknown = set(self.modalities) - {'video', 'audio'}
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of "
                             f"('video', 'audio'), got {self.modalities}")
        if 'video' not in self.modalities and self.clip_duration is None:
            raise ValueError('audio-only data needs a clip_duration')

    def clip_span(self, fps):
        """Length (s) of one clip of a file of frame rate ``fps``."""
        if self.clip_duration is not None:
            return float(self.clip_duration)
        return self.num_frames / float(self.frame_rate or fps)

    def digest(self):
        """Short hash of these settings but ``full_decode`` (a file decoded
        end to end has passed the header check too), and ``CHECK_VERSION``.
        """
        key = dict(asdict(self), version=CHECK_VERSION)
        del key['full_decode']
        text = json.dumps(key, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class FileCheck:
    """Result of ``check_file``: ``status`` is 'ok' or a ``DecodeError``
    kind; ``duration`` and ``fps`` come from the headers when they could be
    read (``fps`` is 0 for audio-only files)."""
    status: str
    detail: str = ''
    duration: Optional[float] = None
    fps: Optional[float] = None


def _audio_short(info, settings):
    """``DecodeError`` when the headers say the audio track ends well before
    the video, else None."""
    if 'audio' in settings.modalities and info.has_video and \
            info.audio_end < info.duration - AUDIO_SHORT_TOLERANCE:
        return DecodeError(
            info.path, f'the audio track ends at {info.audio_end:.3f}s, the '
            f'video at {info.duration:.3f}s', 'audio_short')
    return None


def _decode_ends(path, info, span, settings, pad_short_audio):
    last = info.duration - span
    decode_clips(path, [0.0, last / 2, last], settings.num_frames,
                 settings.frame_rate, settings.clip_duration,
                 settings.audio_duration, settings.sample_rate,
                 settings.modalities, pad_short_audio)


def check_file(path, settings: CheckSettings = CheckSettings()) -> FileCheck:
    """Check that ``path`` gives clips as ``settings`` asks.

    A file whose audio track is short is ``audio_short`` only if the rest
    of it decodes (padded), so that a dataset may choose to keep it.
    """
    info = None
    try:
        info = probe(path, require_video='video' in settings.modalities)
        if 'audio' in settings.modalities and not info.has_audio:
            raise DecodeError(path, 'the file has no audio stream',
                              'no_audio')
        span = settings.clip_span(info.fps)
        if info.duration < span:
            raise DecodeError(path, f'{info.duration:.3f}s < clip '
                              f'{span:.3f}s', 'too_short')
        short = _audio_short(info, settings)
        if settings.full_decode:
            try:
                _decode_ends(path, info, span, settings, short is not None)
            except DecodeError as e:
                if e.kind != 'audio_short':
                    raise
                short = e
                _decode_ends(path, info, span, settings, True)
        if short is not None:
            raise short
    except DecodeError as e:
        return FileCheck(e.kind, e.reason, info and info.duration,
                         info and info.fps)
    return FileCheck('ok', '', info.duration, info.fps)


def default_num_workers():
    """Threads for checking: PyAV releases the GIL while decoding."""
    return min(8, len(os.sched_getaffinity(0)))


def check_files(paths: Sequence[str],
                settings: CheckSettings = CheckSettings(),
                num_workers: Optional[int] = None, progress: bool = True,
                cache=None) -> List[FileCheck]:
    """``check_file`` of every path, in ``num_workers`` threads (None: one
    per core, at most 8; 0: in this thread), with a progress bar.

    ``cache``: a ``CheckCache`` (or None); files it knows unchanged (and
    decoded end to end if ``settings.full_decode``) are not checked again,
    and the new results are stored in it.
    """
    known = cache.lookup(paths, settings.full_decode) if cache is not None \
        else {}
    todo = [i for i in range(len(paths)) if i not in known]
    results = {i: result for i, (result, _) in known.items()}
    if num_workers is None:
        num_workers = default_num_workers()
    with tqdm(total=len(todo), desc='checking files', unit='file',
              disable=not progress or not todo) as bar:

        def run(i):
            result = check_file(paths[i], settings)
            bar.update()
            return result
        if num_workers > 0 and len(todo) > 1:
            with ThreadPoolExecutor(num_workers) as pool:
                results.update(zip(todo, pool.map(run, todo)))
        else:
            results.update((i, run(i)) for i in todo)
    ordered = [results[i] for i in range(len(paths))]
    if cache is not None and todo:
        full = [known[i][1] if i in known else settings.full_decode
                for i in range(len(paths))]
        cache.store(paths, ordered, full)
    return ordered
