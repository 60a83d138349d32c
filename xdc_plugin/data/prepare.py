"""Prepare a dataset once for training (``tools/prepare_dataset.py``): each
file re-encoded at the training resolution and frame rate with its audio,
a manifest whose metadata the dataset build trusts, and a report of the
files left out.

One file (``prepare_file``):

1. its headers are checked as ``check_manifest`` checks them (no video, no
   audio, shorter than a clip, audio ending before the video): a file that
   fails is left out with that status;
2. video: frame ``k`` is the decoded frame nearest to ``k / fps`` (the
   clip decoder's rule, ``decode.frames_at``), scaled by libswscale to the
   short side (bilinear, as when resizing while decoding; never enlarged)
   straight to yuv420p, and encoded by libx264 with a keyframe every
   ``gop`` frames and none elsewhere, so that a clip's seek decodes at
   most ``gop - 1`` frames before it;
3. audio: the whole track decoded in windows of ``AUDIO_CHUNK_S`` by the
   clip decoder's audio path (``decode_audio``: the same alignment to the
   video and zero-fill), resampled to ``sample_rate``, mono unless the
   channels are kept, encoded as AAC (noise substitution off, so that the
   decoded sound does not depend on where decoding starts); a track whose
   level over the whole file is below ``silence_db`` is left out as
   ``silent``;
4. the copy is checked as the dataset build checks files (a clip at its
   start, middle and end decoded), written as a hidden ``.part`` file and
   renamed: a killed run never leaves a partial copy under its name.

Encoding is deterministic (one encoder thread, fixed GOP, no scene-cut
keyframes), so the same source and settings give the same bytes.

A run (``prepare_dataset``) works over processes with a progress bar and
keeps a journal (``.xdc-prepare.jsonl`` in the output folder, one line per
finished file): a rerun skips what the journal records, and the manifest is
written from it at the end, one row per source in the source's order.
"""
import contextlib
import csv
import io
import json
import math
import multiprocessing
import os
import os.path as osp
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Optional

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from tqdm import tqdm

from xdc_plugin.atomic_write import write_atomically
from xdc_plugin.data.decode import frames_at, scale_frame, short_side_size
from xdc_plugin.data.decode_audio import decode_audio
from xdc_plugin.data.file_check import (STATUSES, CheckSettings, FileCheck,
                                        check_file)
from xdc_plugin.data.manifest import VIDEO_EXTENSIONS, read_file_list
from xdc_plugin.data.manifest_check import ManifestReport
from xdc_plugin.data.media_info import DecodeError, probe, read_info
from xdc_plugin.data.media_source import MediaSource
from xdc_plugin.data.prepared_manifest import write_prepared_manifest

__all__ = ['PrepareSettings', 'prepare_file', 'prepare_dataset',
           'estimate_preparation', 'PreparationReport', 'PreparationError',
           'list_sources', 'PREPARE_STATUSES']

# Reasons a file is left out: those of check_manifest, and a silent track
# (found only by decoding the whole track, which the preparation does).
PREPARE_STATUSES = STATUSES + ('silent', )
JOURNAL = '.xdc-prepare.jsonl'
MANIFEST = 'manifest.csv'
LEFT_OUT = 'left_out.csv'
# Audio is decoded and encoded in windows of this length (s), in step with
# the video: the two streams interleave in the file, a long file never sits
# in memory, and each window starts where the track's timestamps say, as a
# clip's window does (mov.mov and webm.webm of the robustness set jump 18 ms
# early on: counted from the start, their sound would lag by that).
AUDIO_CHUNK_S = 1
# Bumped when the same settings would give other copies.
FORMAT_VERSION = 1


class PreparationError(RuntimeError):
    """The run cannot go on (output folder of other settings, ...)."""


@dataclass(frozen=True)
class PrepareSettings:
    """How the copies are made.

    ``short_side``: frames are scaled so that their short side is this
    (even; smaller frames are not enlarged; the long side is rounded to an
    even number, as yuv420p needs). ``fps``: frame rate of the copies
    (None: each file's own). ``gop``: frames from one keyframe to the next.
    ``crf``, ``preset``, ``tune``: libx264's quality, speed and tuning
    (``fastdecode``: no CABAC, no deblocking). ``sample_rate``,
    ``mono``, ``audio_bitrate``: the AAC track. ``pad_short_audio``: keep
    files whose audio ends before their video (zeros), as the dataset's
    option of that name. ``silence_db``: a track below this RMS level
    (dBFS) is left out. ``clip_frames``, ``clip_audio_s``: the clip a file
    must hold (the Kinetics recipe's: 8 frames at ``fps``, 2 s of audio).
    """
    short_side: int = 128
    fps: Optional[float] = 30.0
    gop: int = 16
    crf: int = 23
    preset: str = 'medium'
    tune: Optional[str] = 'fastdecode'
    x264_params: str = 'mbtree=0'
    sample_rate: int = 16000
    mono: bool = True
    audio_bitrate: int = 48000
    pad_short_audio: bool = False
    silence_db: float = -60.0
    clip_frames: int = 8
    clip_audio_s: float = 2.0

    def __post_init__(self):
        if self.short_side < 2 or self.short_side % 2:
            raise ValueError(f'short_side must be even and >= 2 (yuv420p), '
                             f'got {self.short_side}')
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f'fps must be > 0 or None, got {self.fps}')
        if self.gop < 1:
            raise ValueError(f'gop must be >= 1, got {self.gop}')

    def check_settings(self, full_decode):
        """The ``CheckSettings`` a source (headers) and its copy (decoded)
        must pass."""
        return CheckSettings(
            modalities=('video', 'audio'), num_frames=self.clip_frames,
            frame_rate=self.fps, audio_duration=self.clip_audio_s,
            sample_rate=self.sample_rate, full_decode=full_decode)

    def record(self):
        """What the journal and the sidecar keep: these settings and the
        versions that make the bytes."""
        return dict(asdict(self), format_version=FORMAT_VERSION,
                    pyav=av.__version__,
                    libavcodec='.'.join(map(str, av.library_versions[
                        'libavcodec'])))


def _even(n):
    return max(2, int(n / 2 + 0.5) * 2)


def output_size(height, width, short_side):
    """(height, width) of the copy: short side ``short_side`` unless the
    frame is smaller (never enlarged), both even."""
    if min(height, width) > short_side:
        height, width = short_side_size(height, width, short_side)
    return _even(height), _even(width)


def _open_output(path, settings, fps, size, audio_layout):
    out = av.open(path, 'w', format='mp4',
                  options={'movflags': '+faststart'})
    video = out.add_stream('libx264', rate=fps)
    video.height, video.width = size
    video.pix_fmt = 'yuv420p'
    video.codec_context.gop_size = settings.gop
    video.codec_context.thread_count = 1
    video.options = dict(
        preset=settings.preset, crf=str(settings.crf), threads='1',
        **({'tune': settings.tune} if settings.tune else {}),
        **{'x264-params': f'keyint={settings.gop}:min-keyint='
           f'{settings.gop}:scenecut=0:{settings.x264_params}'})
    audio = out.add_stream('aac', rate=settings.sample_rate)
    audio.layout = audio_layout
    audio.bit_rate = settings.audio_bitrate
    audio.options = {'aac_pns': '0'}
    return out, video, audio


class _VideoWriter:
    """Frames at ``fps`` from ``src`` into ``stream``, as far as asked."""

    def __init__(self, src, info, fps, num_frames, stream, out):
        self.frames = frames_at(src, np.arange(num_frames) / float(fps),
                                info)
        self.src_path = src.path
        self.stream, self.out = stream, out
        self.num_frames, self.done = num_frames, 0
        self.reformatter = VideoReformatter()
        self.last = self.scaled = None

    def until(self, count):
        """Encode the frames before index ``count``."""
        while self.done < min(count, self.num_frames):
            _, frame = _reading(self.src_path, next, self.frames)
            if frame is not self.last:  # repeats are scaled once
                self.last = frame
                # BT.601 limited range: what a decoder assumes of a stream
                # that says nothing (the copy's), whatever the source's.
                self.scaled = scale_frame(
                    self.reformatter, frame, self.stream.width,
                    self.stream.height, 'yuv420p', dst_colorspace='ITU601',
                    dst_color_range='MPEG')
                # libx264 honours a frame type given with the frame.
                self.scaled.pict_type = av.video.frame.PictureType.NONE
                self.scaled.time_base = self.stream.codec_context.time_base
            self.scaled.pts = self.done
            self.out.mux(self.stream.encode(self.scaled))
            self.done += 1

    def close(self):
        self.until(self.num_frames)
        self.out.mux(self.stream.encode())


class _AudioWriter:
    """The audio track from ``src``, window by window, into ``stream``;
    keeps the sum of squares for the silence test."""

    def __init__(self, src, info, settings, stream, out):
        self.src, self.info, self.settings = src, info, settings
        self.stream, self.out = stream, out
        self.samples = 0
        self.sum_squares = 0.0

    def window(self, start, duration):
        audio = _reading(
            self.src.path, decode_audio, self.src, start, duration,
            self.settings.sample_rate,
            video_end=self.info.duration,
            pad_short_audio=self.settings.pad_short_audio,
            layout=self.stream.layout.name).numpy()
        self.sum_squares += float(np.square(audio, dtype=np.float64).sum())
        self.samples += audio.size
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio), format='fltp',
            layout=self.stream.layout.name)
        frame.sample_rate = self.settings.sample_rate
        frame.pts = int(round(start * self.settings.sample_rate))
        frame.time_base = Fraction(1, self.settings.sample_rate)
        self.out.mux(self.stream.encode(frame))

    def close(self):
        self.out.mux(self.stream.encode())

    @property
    def level_db(self):
        return 10 * math.log10(self.sum_squares / max(self.samples, 1) +
                               1e-20)


class _Silent(Exception):
    """The audio track is below ``silence_db``."""


def _reading(path, read, *args, **kwargs):
    """``read(*args, **kwargs)`` of the source ``path``: an FFmpeg error
    there (corrupt data) is a ``DecodeError``."""
    try:
        return read(*args, **kwargs)
    except av.FFmpegError as e:
        raise DecodeError(path, f'decoding failed: {e}', 'truncated') from e


def _source_layout(src, settings):
    if settings.mono:
        return 'mono'
    return src.container.streams.audio[0].codec_context.layout.name


def _write_copy(source, tmp, settings):
    """Encode the copy of ``source`` into ``tmp``; returns the number of
    video frames. Raises ``DecodeError`` (the source), ``_Silent``, or
    ``PreparationError`` when the copy cannot be encoded."""
    video_src, audio_src = MediaSource(source), None
    out = None
    try:
        info = read_info(video_src.container, source)
        stream = video_src.container.streams.video[0]
        fps = Fraction(settings.fps).limit_denominator(1001) \
            if settings.fps else stream.average_rate or \
            Fraction(info.fps).limit_denominator(1001)
        num_frames = max(1, int(round(info.duration * fps)))
        # One decoder thread: the run is parallel over files.
        audio_src = MediaSource(source)
        out, vstream, astream = _open_output(
            tmp, settings, fps,
            output_size(info.height, info.width, settings.short_side),
            _source_layout(audio_src, settings))
        video = _VideoWriter(video_src, info, fps, num_frames, vstream, out)
        audio = _AudioWriter(audio_src, info, settings, astream, out)
        end = info.container_duration
        for start in range(0, int(math.ceil(end / AUDIO_CHUNK_S))):
            t0 = start * AUDIO_CHUNK_S
            audio.window(t0, min(AUDIO_CHUNK_S, end - t0))
            video.until(int(math.ceil((t0 + AUDIO_CHUNK_S) * fps)))
        video.close()
        audio.close()
        if audio.level_db < settings.silence_db:
            raise _Silent(f'the audio track is at {audio.level_db:.1f} dBFS, '
                          f'below {settings.silence_db:g}')
        return num_frames
    except av.FFmpegError as e:  # reading errors are DecodeError
        raise PreparationError(f'{source}: encoding its copy failed: {e}') \
            from e
    finally:
        if out is not None:
            out.close()
        video_src.close()
        if audio_src is not None:
            audio_src.close()


@dataclass
class FileResult:
    """What ``prepare_file`` did: ``status`` 'ok' (``row`` is the manifest
    row) or why the file was left out; ``cpu_s``, the process CPU time."""
    status: str
    detail: str = ''
    row: Optional[dict] = None
    cpu_s: float = 0.0


def _partial_path(path):
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}.part')


def prepare_file(source, out_path, settings: PrepareSettings,
                 rel_path='', label=None) -> FileResult:
    """Write the training copy of ``source`` to ``out_path`` (see the
    module doc); its manifest row names it ``rel_path``."""
    cpu = time.process_time()
    result = _prepare_file(source, out_path, settings, rel_path, label)
    result.cpu_s = time.process_time() - cpu
    return result


def _prepare_file(source, out_path, settings, rel_path, label):
    check = check_file(source, settings.check_settings(full_decode=False))
    if check.status == 'audio_short' and settings.pad_short_audio:
        check = FileCheck('ok')
    if check.status != 'ok':
        return FileResult(check.status, check.detail)
    os.makedirs(osp.dirname(out_path) or '.', exist_ok=True)
    tmp = _partial_path(out_path)
    try:
        try:
            num_frames = _write_copy(source, tmp, settings)
        except DecodeError as e:
            return FileResult(e.kind, e.reason)
        except _Silent as e:
            return FileResult('silent', str(e))
        copy = check_file(tmp, settings.check_settings(full_decode=True))
        if copy.status != 'ok':
            return FileResult(copy.status, f'the prepared copy: '
                              f'{copy.detail}')
        info = probe(tmp)
        os.replace(tmp, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return FileResult('ok', row=dict(
        path=rel_path, label=label, duration=info.duration, fps=info.fps,
        width=info.width, height=info.height,
        audio_sample_rate=info.audio_sample_rate, num_frames=num_frames,
        source_path=source))


# -- the list of sources ---------------------------------------------------
@dataclass
class Source:
    """A file to prepare: its path, its path relative to the source root
    (the copy's, with ``.mp4`` added unless it ends so) and its label."""
    path: str
    rel_path: str
    label: Optional[str] = None


def _copy_name(rel):
    return rel if rel.lower().endswith('.mp4') else rel + '.mp4'


def list_sources(source, data_root=None, label_column=None,
                 class_folders=False, exclude=None):
    """``(FileList, [Source])`` of a CSV manifest or a folder (recursive
    scan; ``class_folders``: the label of a file is its top folder, as in
    Kinetics' ``train/<class>/<id>.mp4``). Files under ``exclude`` (the
    output folder) are not listed; a path listed twice is prepared once."""
    if osp.isdir(source):
        if label_column:
            raise ValueError('a folder has no label column: use '
                             'class_folders, or a manifest')
        files = read_file_list(None, source, None, VIDEO_EXTENSIONS)
        root = osp.abspath(source)
        if exclude is not None:  # the output folder inside the source's
            exclude = osp.abspath(exclude)
            keep = [i for i, p in enumerate(files.paths)
                    if osp.commonpath([osp.abspath(p), exclude]) != exclude]
            files.paths = [files.paths[i] for i in keep]
            files.labels = [files.labels[i] for i in keep]
            files.rows = [files.rows[i] for i in keep]
    else:
        if class_folders:
            raise ValueError('class_folders needs a folder, not a manifest')
        files = read_file_list(source, data_root, label_column)
        root = osp.abspath(data_root or osp.dirname(osp.abspath(source)))
    paths = [osp.abspath(p) for p in files.paths]
    if not paths:
        raise ValueError(f'{source} holds no file to prepare')
    if not all(osp.commonpath([p, root]) == root for p in paths):
        root = osp.commonpath([osp.dirname(p) for p in paths])
    sources, seen, names = [], set(), {}
    for path, label in zip(paths, files.labels):
        if path in seen:
            continue
        seen.add(path)
        rel = osp.relpath(path, root)
        if class_folders:
            label = rel.split(os.sep)[0] if os.sep in rel else None
        name = _copy_name(rel)
        if name in names:
            raise ValueError(f'{path} and {names[name]} would both be '
                             f'prepared as {name}')
        names[name] = path
        sources.append(Source(path, name, label))
    return files, sources


# -- a run -----------------------------------------------------------------
@dataclass
class PreparationReport(ManifestReport):
    """``ManifestReport`` of a preparation: one ``FileCheck`` per listed
    file ('ok': prepared), with ``silent`` among the statuses."""
    out_dir: str = ''
    manifest: Optional[str] = None
    source_bytes: int = 0
    output_bytes: int = 0
    source_seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def counts(self):
        c = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in PREPARE_STATUSES}

    def summary(self):
        """Where the outputs are and what the preparation cost."""
        n, total = self.counts['ok'], len(self.results)
        rate = self.source_seconds / max(self.cpu_seconds, 1e-9)
        return (f'prepared {n} of {total} files into {self.out_dir}: '
                f'{self.source_seconds:.0f} s of media, '
                f'{_size(self.source_bytes)} -> {_size(self.output_bytes)}, '
                f'{self.cpu_seconds:.1f} CPU s ({rate:.1f} s of media per '
                f'CPU s)\nmanifest: {self.manifest}' +
                (f'\nleft out: {osp.join(self.out_dir, LEFT_OUT)}'
                 if n < total else ''))


def _job(args):
    source, out_dir, settings = args
    result = prepare_file(source.path, osp.join(out_dir, source.rel_path),
                          settings, source.rel_path, source.label)
    return source.path, result


class _Journal:
    """The output folder's record of finished files (JSON lines; the first
    holds the settings)."""

    def __init__(self, out_dir, settings):
        self.path = osp.join(out_dir, JOURNAL)
        self.entries = {}
        record = settings.record()
        lines = []
        if osp.isfile(self.path):
            with open(self.path) as f:
                lines = f.read().splitlines()
        if lines:
            header = _json(lines[0])
            if header is None or header.get('settings') != record:
                old = (header or {}).get('settings') or {}
                changed = sorted(k for k in set(record) | set(old)
                                 if record.get(k) != old.get(k))
                raise PreparationError(
                    f'{out_dir} holds a preparation made with other '
                    f'settings ({", ".join(changed) or "unreadable"}): give '
                    f'another output folder, or delete {self.path} to '
                    'prepare everything again')
            for line in lines[1:]:
                entry = _json(line)  # None: cut short by a kill
                if entry is not None:
                    self.entries[entry['source']] = entry
        else:  # a new folder (or a run killed before its first line)
            os.makedirs(out_dir, exist_ok=True)
            with open(self.path, 'w') as f:
                f.write(json.dumps(dict(settings=record)) + '\n')
        self.file = open(self.path, 'a')

    def done(self, source, out_dir):
        """Whether ``source`` is finished (and its copy still there)."""
        entry = self.entries.get(source.path)
        return entry is not None and (
            entry['status'] != 'ok' or
            osp.isfile(osp.join(out_dir, entry['row']['path'])))

    def add(self, source_path, result: FileResult):
        entry = dict(source=source_path, status=result.status,
                     detail=result.detail, row=result.row,
                     cpu_s=result.cpu_s)
        # A whole line per write: a kill leaves at most a cut last line.
        self.file.write(json.dumps(entry) + '\n')
        self.file.flush()
        self.entries[source_path] = entry

    def close(self):
        self.file.close()


def _json(line):
    try:
        return json.loads(line)
    except ValueError:
        return None


def _results(jobs, workers):
    """``(source path, FileResult)`` of each job as they finish."""
    if workers == 0 or len(jobs) <= 1:
        yield from map(_job, jobs)
        return
    # spawn: no state (locks, threads) inherited from the parent.
    context = multiprocessing.get_context('spawn')
    with context.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_job, jobs)


def default_workers():
    return len(os.sched_getaffinity(0))


def prepare_dataset(source, out_dir, settings=PrepareSettings(),
                    data_root=None, label_column=None, class_folders=False,
                    workers=None, progress=True) -> PreparationReport:
    """Prepare every file of ``source`` (a CSV manifest or a folder) into
    ``out_dir``: the copies in the source's relative layout,
    ``manifest.csv`` and its sidecar (``prepared_manifest.py``),
    ``left_out.csv`` (path, status, detail). ``workers`` processes (None:
    one per core; 0: this process). Resumable: see the module doc."""
    files, sources = list_sources(source, data_root, label_column,
                                  class_folders, exclude=out_dir)
    journal = _Journal(out_dir, settings)
    try:
        todo = [s for s in sources if not journal.done(s, out_dir)]
        workers = default_workers() if workers is None else workers
        with tqdm(total=len(sources), initial=len(sources) - len(todo),
                  desc='preparing', unit='file',
                  disable=not progress) as bar:
            for path, result in _results(
                    [(s, out_dir, settings) for s in todo], workers):
                journal.add(path, result)
                bar.update()
    finally:
        journal.close()
    report = _report(files, sources, journal.entries, out_dir)
    rows = [journal.entries[s.path]['row'] for s in sources
            if journal.entries[s.path]['status'] == 'ok']
    manifest = osp.join(out_dir, MANIFEST)
    write_prepared_manifest(manifest, rows, settings.record())
    _write_left_out(osp.join(out_dir, LEFT_OUT), sources, journal.entries)
    _remove_partial_files(out_dir)
    report.manifest = manifest
    return report


def _report(files, sources, entries, out_dir):
    by_path = {s.path: entries[s.path] for s in sources}
    results, source_bytes, output_bytes, seconds, cpu = [], 0, 0, 0.0, 0.0
    for path in files.paths:
        entry = by_path[osp.abspath(path)]
        row = entry['row']
        results.append(FileCheck(entry['status'], entry['detail'],
                                 row and row['duration'], row and row['fps']))
        if row:
            source_bytes += os.path.getsize(path)
            output_bytes += os.path.getsize(osp.join(out_dir, row['path']))
            seconds += row['duration']
        cpu += entry.get('cpu_s', 0.0)
    return PreparationReport(files, results, out_dir=out_dir,
                             source_bytes=source_bytes,
                             output_bytes=output_bytes,
                             source_seconds=seconds, cpu_seconds=cpu)


def _write_left_out(path, sources, entries):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['source_path', 'status', 'detail'])
    writer.writerows((s.path, entries[s.path]['status'],
                      entries[s.path]['detail'])
                     for s in sources if entries[s.path]['status'] != 'ok')
    write_atomically(buffer.getvalue().encode(), path)


def _remove_partial_files(out_dir):
    """The ``.part`` files of killed runs."""
    for folder, _, names in os.walk(out_dir):
        for name in names:
            if name.startswith('.') and name.endswith('.part'):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(osp.join(folder, name))


# -- the dry run -----------------------------------------------------------
@dataclass
class Estimate:
    """A preparation's cost extrapolated from a sample of its files."""
    num_files: int
    source_bytes: int
    sample: PreparationReport
    output_bytes: float
    cpu_seconds: float
    workers: int

    @property
    def wall_seconds(self):
        return self.cpu_seconds / max(self.workers, 1)

    def summary(self):
        s = self.sample
        kept = s.counts['ok']
        left = ', '.join(f'{k}: {v}' for k, v in s.counts.items()
                         if v and k != 'ok')
        return (
            f'sample: {len(s.results)} of {self.num_files} files, {kept} '
            f'prepared{f", left out: {left}" if left else ""}; '
            f'{s.source_seconds:.0f} s of media in {s.cpu_seconds:.1f} CPU '
            f's\nestimate for the {self.num_files} files '
            f'({_size(self.source_bytes)}), from the sample\'s output bytes '
            f'and CPU time per source byte: output '
            f'{_size(self.output_bytes)}, {_duration(self.cpu_seconds)} of '
            f'CPU, about {_duration(self.wall_seconds)} with '
            f'{self.workers} processes')


def _duration(seconds):
    if seconds < 120:
        return f'{seconds:.0f} s'
    if seconds < 7200:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def _size(n):
    for unit in ('B', 'KB', 'MB', 'GB', 'TB'):
        if n < 1000 or unit == 'TB':
            return f'{n:.1f} {unit}'
        n /= 1000


def estimate_preparation(source, settings=PrepareSettings(), sample=8,
                         seed=0, data_root=None, label_column=None,
                         class_folders=False, workers=None,
                         progress=True) -> Estimate:
    """Prepare ``sample`` files drawn at random (``seed``) into a temporary
    folder and extrapolate the output size (output bytes per source byte)
    and the CPU time (CPU seconds per source byte) to every file's size."""
    files, sources = list_sources(source, data_root, label_column,
                                  class_folders)
    sizes = {s.path: os.path.getsize(s.path) for s in sources}
    picked = random.Random(seed).sample(sources, min(sample, len(sources)))
    workers = default_workers() if workers is None else workers
    tmp = tempfile.mkdtemp(prefix='xdc-prepare-dry-run-')
    try:
        manifest = osp.join(tmp, 'sample.csv')
        with open(manifest, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['path'])
            writer.writerows([s.path] for s in picked)
        report = prepare_dataset(manifest, osp.join(tmp, 'out'), settings,
                                 workers=workers, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sample_bytes = max(sum(sizes[s.path] for s in picked), 1)
    total = sum(sizes.values())
    return Estimate(
        num_files=len(sources), source_bytes=total, sample=report,
        output_bytes=report.output_bytes / sample_bytes * total,
        cpu_seconds=report.cpu_seconds / sample_bytes * total,
        workers=workers)
