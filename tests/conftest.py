"""Shared pytest fixtures."""
import os.path as osp
import shutil

import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')


def _shared(name):
    path = osp.join(SHARED_DATA, name)
    if not osp.isdir(path):
        pytest.skip(f'{path} is absent (shared test data; CI has it)')
    return path


@pytest.fixture(scope='session')
def realclips_dir():
    """../shared/data/realclips (24 real files, many codecs), or skip."""
    return _shared('realclips')


@pytest.fixture(scope='session')
def avobjects_dir():
    """../shared/data/avobjects (240 labelled clips), or skip."""
    return _shared('avobjects')


# --- generated media -------------------------------------------------------
# ``timecode`` files: 10 fps, frame i is uniform grey 20 + 3 * i; the audio
# (16 kHz mono) is a 440 Hz tone until TONE_STEP_S, then 1760 Hz.
TIMECODE_FPS = 10
TONE_STEP_S = 3.0


def timecode_media(duration, fps=TIMECODE_FPS, size=32, sample_rate=16000):
    n = int(round(duration * fps))
    frames = np.empty((n, size, size, 3), np.uint8)
    frames[:] = (20 + 3 * np.arange(n) % 230)[:, None, None, None]
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    freq = np.where(t < TONE_STEP_S, 440.0, 1760.0)
    audio = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / sample_rate)
    return frames, audio.astype(np.float32)


@pytest.fixture(scope='session')
def media_dir(tmp_path_factory):
    """Generated files; ``mixed/`` is a folder for the dataset/manifest
    tests (probe result in brackets):

    good1.mp4, good2.mp4  6 s timecode files                    [ok]
    noaudio.mp4           6 s, video only                        [no_audio]
    corrupt.mp4           random bytes                           [unreadable]
    trunc_plain.mp4       first half of a non-faststart mp4      [unreadable]
    trunc_fast.mp4        first 30 % of a faststart mp4          [ok: passes
                          the probe, fails to decode after ~1.8 s]
    short.mp4             0.3 s (shorter than 8 frames at 10 fps) [too_short]

    Outside ``mixed/``: timecode.mp4 (6 s), short_audio.mp4 (1.5 s),
    audio_short.mp4 (6 s of video, 2 s of audio), trunc_early.mp4 (first
    10 % of a faststart mp4: passes the probe, no clip decodes) and
    tone.wav (the 6 s timecode audio, no video stream).
    """
    from xdc_plugin.data.demo import write_mp4
    root = tmp_path_factory.mktemp('media')
    mixed = root / 'mixed'
    mixed.mkdir()
    frames, audio = timecode_media(6.0)
    write_mp4(str(root / 'timecode.mp4'), frames, audio, TIMECODE_FPS)
    write_mp4(str(root / 'fast.mp4'), frames, audio, TIMECODE_FPS,
              faststart=True)
    for name in ('good1.mp4', 'good2.mp4'):
        shutil.copy(root / 'timecode.mp4', mixed / name)
    write_mp4(str(mixed / 'noaudio.mp4'), frames, None, TIMECODE_FPS)
    rng = np.random.default_rng(0)
    (mixed / 'corrupt.mp4').write_bytes(rng.bytes(50_000))
    data = (root / 'timecode.mp4').read_bytes()
    (mixed / 'trunc_plain.mp4').write_bytes(data[:len(data) // 2])
    data = (root / 'fast.mp4').read_bytes()
    (mixed / 'trunc_fast.mp4').write_bytes(data[:int(len(data) * 0.3)])
    f, a = timecode_media(0.3)
    write_mp4(str(mixed / 'short.mp4'), f, a, TIMECODE_FPS)
    f, a = timecode_media(1.5)
    write_mp4(str(root / 'short_audio.mp4'), f, a, TIMECODE_FPS)
    write_mp4(str(root / 'audio_short.mp4'), frames, audio[:2 * 16000],
              TIMECODE_FPS)
    (root / 'trunc_early.mp4').write_bytes(data[:len(data) // 10])
    write_wav(str(root / 'tone.wav'), audio)
    return root


def write_wav(path, audio, sample_rate=16000):
    """Mono float ``audio`` as 16-bit PCM WAV (no video stream)."""
    import av
    with av.open(path, 'w', format='wav') as out:
        stream = out.add_stream('pcm_s16le', rate=sample_rate)
        stream.layout = 'mono'
        frame = av.AudioFrame.from_ndarray(
            (np.asarray(audio)[None] * 32767).astype(np.int16),
            format='s16', layout='mono')
        frame.sample_rate = sample_rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
