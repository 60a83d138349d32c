"""Shared pytest fixtures."""
import hashlib
import os
import os.path as osp
import runpy
import shutil

import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')
DEMO_CFG = osp.join(REPO, 'configs', 'xdc_demo.yaml')


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


# Frames resized while decoding (libswscale's bilinear, chroma scaled before
# the RGB conversion) against full-size RGB frames resized by torchvision
# (antialiased bilinear): measured on ../shared/data/realclips at short side
# 128 (56), the mean absolute difference is 0.0-1.6 (3.5) grey levels and
# the 99th percentile <= 16 (edges); a wrong frame, crop or colour
# conversion is tens of levels off.
RESIZED_MEAN_TOLERANCE = 4.0
RESIZED_P99_TOLERANCE = 24


def assert_resized_frames_close(got, ref, what=''):
    assert got.shape == ref.shape and got.dtype == ref.dtype, what
    diff = (got.float() - ref.float()).abs().flatten()
    p99 = diff.kthvalue(max(1, int(0.99 * diff.numel()))).values
    assert diff.mean() <= RESIZED_MEAN_TOLERANCE, (what, float(diff.mean()))
    assert p99 <= RESIZED_P99_TOLERANCE, (what, float(p99))


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


# --- a stand-in for the weights release (tests of xdc_plugin.weights) -----
def assert_same_encoder(model, state_dict):
    """Every tensor of ``state_dict`` (bar BN counters) is in ``model``."""
    loaded = model.state_dict()
    for key, value in state_dict.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(loaded[key], value), key


@pytest.fixture(scope='session')
def official(tmp_path_factory):
    """(state dict, path, sha256) of a release-like ``fake_xdc-<h8>.pth``:
    an official-layout R(2+1)D-18 with non-trivial BatchNorm values."""
    from xdc_plugin.encoders import R2Plus1D18
    torch.manual_seed(0)
    model = R2Plus1D18(num_classes=0)
    for name, buf in model.named_buffers():
        if name.endswith('running_mean'):
            buf.normal_()
        elif name.endswith('running_var'):
            buf.uniform_(0.5, 2.0)
    for name, p in model.named_parameters():
        if '.1.' in name or name.startswith(('stem.1', 'stem.4')):
            p.data.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp('release')
    raw = folder / 'raw.pth'
    torch.save(model.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = folder / f'fake_xdc-{digest[:8]}.pth'
    os.replace(raw, path)
    return model.state_dict(), str(path), digest


@pytest.fixture
def fake_release(official, monkeypatch, tmp_path):
    """A release entry 'fake_xdc' served from a file:// folder, and an
    empty torch.hub dir; returns (its PretrainedCfg, the cache folder)."""
    from xdc_plugin import weights
    _, path, digest = official
    cfg = weights.PretrainedCfg('fake_xdc', 'test data', 1.0, 2.0,
                                digest[:8], '00000000')
    monkeypatch.setitem(weights.PRETRAINED_CFGS, 'fake_xdc', cfg)
    monkeypatch.setenv(weights.BASE_URL_ENV,
                       'file://' + osp.dirname(path) + '/')
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    hub_dir = tmp_path / 'hub'
    monkeypatch.setattr(torch.hub, '_hub_dir', str(hub_dir))
    return cfg, hub_dir / 'checkpoints'


# --- runs ------------------------------------------------------------------
def tiny_demo_args(tmp_path, max_epochs=2):
    """``tools/run_net.py`` arguments of a tiny demo run (9 generated clips
    of 3 classes, k=3, narrow encoders) under ``tmp_path``."""
    data = tmp_path / 'data'
    return [
        '--cfg', DEMO_CFG, '--work-dir', str(tmp_path / 'work'),
        f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.dataset.generate.clips_per_class=3',
        'train_dataloader.dataset.generate.num_classes=3',
        '+train_dataloader.dataset.generate.progress=false',
        'train_dataloader.batch_size=3', 'train_dataloader.num_workers=0',
        'model.num_clusters=3', 'model.video_encoder.width=0.125',
        'model.audio_encoder.width=0.125',
        f'train_cfg.max_epochs={max_epochs}',
        'param_scheduler.0.T_max=2', 'default_hooks.clustering.interval=1',
        'default_hooks.clustering.extract_dataloader.num_workers=0',
        'default_hooks.clustering.clusterers.num_redo=1',
    ]


# The documented one-line switch for live curves in TensorBoard.
TENSORBOARD_SWITCH = ('+visualizer={type: Visualizer, vis_backends: '
                      '[{type: LocalVisBackend}, '
                      '{type: TensorboardVisBackend}]}')


@pytest.fixture(scope='session')
def tiny_xdc_run(tmp_path_factory):
    """A real one-epoch demo run with TensorBoard on and the losses logged
    every iteration: round files 0 and final. Returns ``(work_dir,
    runner)``."""
    from xdc_plugin.engine.launch import launch
    root = tmp_path_factory.mktemp('tiny_run')
    runner = launch.main(tiny_demo_args(root, max_epochs=1) + [
        TENSORBOARD_SWITCH, 'default_hooks.logger.interval=1'])
    return root / 'work', runner


@pytest.fixture(scope='session')
def timecode_clips(tmp_path_factory):
    """Six timecode files of 4, 6 and 5 s (``clip<i>.mp4``), with
    ``labelled.csv`` (cat, dog, cat, ...) and ``unlabelled.csv``."""
    import csv

    from xdc_plugin.data.demo import write_mp4
    root = tmp_path_factory.mktemp('timecode_clips')
    rows = []
    for i, duration in enumerate(TIMECODE_CLIP_DURATIONS):
        frames, audio = timecode_media(duration)
        write_mp4(str(root / f'clip{i}.mp4'), frames, audio, TIMECODE_FPS)
        rows.append((f'clip{i}.mp4', 'cat' if i % 2 == 0 else 'dog'))
    for name, header, cut in (('labelled.csv', ['path', 'label'], 2),
                              ('unlabelled.csv', ['path'], 1)):
        with open(root / name, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(r[:cut] for r in rows)
    return root


TIMECODE_CLIP_DURATIONS = (4.0, 6.0, 5.0, 4.0, 6.0, 5.0)
# Clip settings of the timecode extraction pipeline (small, fast).
TIMECODE_CLIP_CFG = dict(num_frames=8, short_side=32, crop_size=32,
                         audio_duration=2.0, sample_rate=16000, n_mels=20,
                         hop_ms=20)


def extract_pipeline(num_frames, short_side, crop_size, audio_duration,
                     sample_rate, n_mels, hop_ms):
    """A feature-extraction pipeline (centred clip, centre crop)."""
    return [
        dict(type='SampleClip', num_frames=num_frames, mode='center'),
        dict(type='DecodeAVClip', audio_duration=audio_duration,
             sample_rate=sample_rate),
        dict(type='VideoResize', short_side=short_side),
        dict(type='VideoCrop', size=crop_size, random=False),
        dict(type='AudioLogMel', n_mels=n_mels, hop_ms=hop_ms),
        dict(type='PackAVInputs'),
    ]


def timecode_extract_set(manifest):
    """The extraction dataset of a timecode manifest."""
    from xdc_plugin.data import AVClipDataset
    return AVClipDataset(str(manifest),
                         pipeline=extract_pipeline(**TIMECODE_CLIP_CFG),
                         check='headers', check_cache=False)


def save_fitted_rounds(work_dir, dataset, round_ids, sources=('video',
                                                              'audio'), k=2):
    """Round files as the clustering hook writes them, from k-means fits
    on random features of ``dataset``'s clips (a different fit per round
    and source)."""
    from xdc_plugin.clustering import FaissKMeans
    from xdc_plugin.clustering.round_file import round_path, save_round
    for r, round_id in enumerate(round_ids):
        results = {}
        for s, source in enumerate(sources):
            features = np.random.default_rng([r, s]).normal(
                size=(len(dataset), 8)).astype(np.float32)
            results[source] = FaissKMeans(k, num_iters=5).fit(features)
        save_round(round_path(str(work_dir), round_id), round_id, r,
                   results, dataset, variant='xdc')


@pytest.fixture
def tool_main(capsys):
    """``tool_main(path)``: the ``main`` of the tool script at ``path``,
    run in this process on arguments, giving (exit code, stdout,
    stderr)."""

    def load(path):
        main = runpy.run_path(path)['main']

        def run(*args):
            code = main([str(a) for a in args])
            out = capsys.readouterr()
            return code, out.out, out.err
        return run
    return load
