"""The playable media of a gallery clip, made in a pool of processes.

For a clip of an audio cluster: the audio window the audio encoder heard, as
a WAV file, and its log-mel spectrogram (the encoder's input) as a PNG. For a
clip of a video cluster: the same time window of the video, small, muted, as
VP9 in WebM (played by a stock Chromium), and a JPEG poster frame. Decoding
goes through ``xdc_plugin.data.decode``, so a preview shows what extraction
decoded. File names are a hash of the clip (file, size, mtime and window), so
one clip gets one set of files, shared by every round and reused by later
builds into the same folder.
"""
import contextlib
import hashlib
import multiprocessing
import os
import os.path as osp
import uuid
import wave
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

import av
import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from tqdm import tqdm

from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.data.decode import (DecodeError, audio_window, decode_clip,
                                    probe)
from xdc_plugin.data.transforms import AudioLogMel

# Preview frames: short side at most this many pixels (even sizes for
# yuv420p).
PREVIEW_SHORT_SIDE = 112
SPECTROGRAM_SIZE = (160, 64)  # width, height in pixels
# Shown dynamic range of the log-mel image: natural-log units below the
# loudest band (12 is about 52 dB).
SPECTROGRAM_RANGE = 12.0
# When a round file recorded no clip windows: the extraction defaults.
DEFAULT_CLIP = ClipSpec().window_record()
_FILES = dict(video=('webm', 'jpg'), audio=('wav', 'png'))


@dataclass
class MediaJob:
    """One clip to render: ``start_sec``/``frame_rate`` of the extraction
    clip (None: the clip centred in the file, at the file's rate), the
    dataset's ``clip_cfg`` and the ``kinds`` of media wanted."""
    path: str
    start_sec: Optional[float]
    frame_rate: Optional[float]
    clip_cfg: dict
    kinds: set = field(default_factory=set)
    key: str = field(init=False)

    def __post_init__(self):
        try:
            stat = os.stat(self.path)
            version = f'{stat.st_size}:{stat.st_mtime_ns}'
        except OSError:
            version = 'missing'
        text = (f'{osp.abspath(self.path)}|{version}|{self.start_sec!r}|'
                f'{self.frame_rate!r}|{sorted(self.clip_cfg.items())}')
        self.key = hashlib.sha1(text.encode()).hexdigest()[:16]

    def files(self, kind):
        return [f'{self.key}.{ext}' for ext in _FILES[kind]]


@dataclass
class MediaResult:
    """Files (relative to the media folder) per kind, or why there are none
    (``refused``: the clip was not read at all, see ``gallery.py``)."""
    files: dict
    error: Optional[str] = None
    refused: bool = False


def _clip_start(job, info):
    fps = float(job.frame_rate or info.fps)
    span = job.clip_cfg['num_frames'] / fps
    start = (job.start_sec if job.start_sec is not None else
             max(info.duration - span, 0.0) / 2)
    return start, fps, span


def _write_wav(path, audio, sample_rate):
    pcm = (np.clip(audio, -1, 1) * 32767).astype('<i2')
    with wave.open(path, 'wb') as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _write_spectrogram(path, audio, cfg):
    logmel = AudioLogMel(cfg['n_mels'], cfg['hop_ms'], cfg['win_ms'])(
        dict(audio=audio, sample_rate=cfg['sample_rate']))['audio'][0]
    top = float(logmel.max())
    scaled = ((logmel - top + SPECTROGRAM_RANGE) / SPECTROGRAM_RANGE).clamp(
        0, 1).flip(0).numpy()  # low frequencies at the bottom
    rgb = (colormaps['magma'](scaled)[..., :3] * 255).astype(np.uint8)
    Image.fromarray(rgb).resize(SPECTROGRAM_SIZE, Image.BILINEAR).save(
        path, format='PNG')


def _preview_size(height, width):
    scale = min(1.0, PREVIEW_SHORT_SIDE / min(height, width))
    return (max(2, int(round(width * scale / 2)) * 2),
            max(2, int(round(height * scale / 2)) * 2))


def _write_webm(path, frames, fps):
    width, height = _preview_size(*frames.shape[1:3])
    with av.open(path, 'w', format='webm') as out:
        stream = out.add_stream('libvpx-vp9',
                                rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        # Realtime speed: a preview, not an archive (about 50 ms per clip).
        stream.options = {'deadline': 'realtime', 'cpu-used': '8',
                          'crf': '36', 'b': '0', 'threads': '1'}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format='rgb24')
            out.mux(stream.encode(frame.reformat(width, height, 'yuv420p')))
        out.mux(stream.encode())
    return width, height


@contextlib.contextmanager
def _atomic(path):
    """A temporary name for writing ``path``: renamed to it on success,
    removed on failure, so that a file in the media folder is complete.
    Random, so that no link can be planted there in advance."""
    tmp = f'{path}.{uuid.uuid4().hex}.part'
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _render(job, kinds, media_dir):
    info = probe(job.path)
    start, fps, span = _clip_start(job, info)
    cfg = job.clip_cfg
    if 'audio' in kinds:
        _, audio = decode_clip(job.path, start, cfg['num_frames'], fps,
                               cfg['audio_duration'], cfg['sample_rate'])
        wav, png = (osp.join(media_dir, f) for f in job.files('audio'))
        with _atomic(wav) as tmp:
            _write_wav(tmp, audio[0].numpy(), cfg['sample_rate'])
        with _atomic(png) as tmp:
            _write_spectrogram(tmp, audio, cfg)
    if 'video' in kinds:
        # The video of the audio window: a few seconds around the clip.
        length = max(cfg['audio_duration'], span)
        first = audio_window(start + span / 2, length,
                             info.container_duration)
        num = int(min(length, info.duration - first) * info.fps)
        video, _ = decode_clip(job.path, first, max(num, 1), None, None)
        frames = video.numpy()
        webm, jpg = (osp.join(media_dir, f) for f in job.files('video'))
        with _atomic(webm) as tmp:
            _write_webm(tmp, frames, info.fps)
        poster = Image.fromarray(frames[len(frames) // 2])
        with _atomic(jpg) as tmp:
            poster.resize(_preview_size(*frames.shape[1:3])).save(
                tmp, format='JPEG', quality=85)


def render_clip(job, media_dir):
    """Write the media of ``job`` into ``media_dir`` (skipped when they are
    there already) -> ``MediaResult``; a clip that cannot be decoded gives
    a result with ``error`` set, never an exception."""
    files = {kind: job.files(kind) for kind in job.kinds}
    todo = [kind for kind in job.kinds
            if not all(osp.isfile(osp.join(media_dir, f))
                       for f in files[kind])]
    try:
        _render(job, todo, media_dir)
    except DecodeError as e:
        return MediaResult({}, f'{e.kind}: {e.reason}')
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as e:
        return MediaResult({}, f'{type(e).__name__}: {e}')
    return MediaResult(files)


def _init_worker():
    torch.set_num_threads(1)  # one clip per core


def render_all(jobs, media_dir, workers=None, progress=True):
    """Render ``{key: MediaJob}`` in a process pool, with a progress bar ->
    ``{key: MediaResult}``."""
    os.makedirs(media_dir, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    results = {}
    bar = tqdm(total=len(jobs), desc='gallery media', unit='clip',
               disable=not progress)
    # fork: the workers inherit the imported package (spawn would import
    # torch and mmengine again in every worker, seconds each).
    context = multiprocessing.get_context('fork')
    with ProcessPoolExecutor(workers, mp_context=context,
                             initializer=_init_worker) as pool:
        futures = {pool.submit(render_clip, job, media_dir): key
                   for key, job in jobs.items()}
        for future in as_completed(futures):
            key = futures[future]
            try:
                results[key] = future.result()
            except Exception as e:  # a worker that died (BrokenProcessPool)
                results[key] = MediaResult({}, f'{type(e).__name__}: {e}')
            bar.update()
    bar.close()
    return results
