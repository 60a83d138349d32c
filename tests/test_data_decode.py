import csv
import os
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import TIMECODE_FPS, TONE_STEP_S

from xdc_plugin.data.decode import (DecodeError, decode_clip, decode_clips,
                                    probe)

SR = 16000


def _frame_index(video):
    """Frame numbers of timecode frames (grey level 20 + 3 i)."""
    grey = video.float().mean(dim=(1, 2, 3))
    return ((grey - 20) / 3).round().long().tolist()


def _high_tone_mask(audio, block=320):
    """Per 20 ms block: True where the 1760 Hz tone plays (zero-crossing
    count ~70 per block for 1760 Hz, ~18 for 440 Hz)."""
    x = audio[0].numpy()
    x = x[:len(x) // block * block].reshape(-1, block)
    crossings = (np.diff(np.sign(x), axis=1) != 0).sum(1)
    return crossings > 40


def test_probe_reads_headers(media_dir):
    info = probe(media_dir / 'timecode.mp4')
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(6.0, abs=0.05)
    assert (info.width, info.height) == (32, 32)
    assert info.has_audio and info.audio_sample_rate == SR
    assert info.audio_channels == 1
    assert not probe(media_dir / 'mixed' / 'noaudio.mp4').has_audio


@pytest.mark.parametrize('start, rate, expected', [
    (1.0, None, list(range(10, 18))),
    (1.0, 5, list(range(10, 26, 2))),
    (0.0, 2.5, [0, 4, 8, 12, 16, 20, 24, 28]),
    (5.2, None, list(range(52, 60))),  # clip ending at the end of the file
])
def test_video_frames_are_sampled_at_the_right_times(media_dir, start, rate,
                                                     expected):
    video, _ = decode_clip(media_dir / 'timecode.mp4', start, 8, rate, None)
    assert video.dtype == torch.uint8 and video.shape == (8, 32, 32, 3)
    assert _frame_index(video) == expected


@pytest.mark.parametrize('start, step_at', [
    (2.5, 1.1),    # centre 2.9 s: window [1.9, 3.9], step 1.1 s in
    (2.9, 0.7),    # centre 3.3 s: window [2.3, 4.3]
    (0.0, None),   # centre 0.4 s: clamped to [0, 2], low tone only
    (5.2, 0.0),    # centre 5.6 s: clamped to [4, 6], high tone only
])
def test_audio_window_is_centred_on_the_clip(media_dir, start, step_at):
    _, audio = decode_clip(media_dir / 'timecode.mp4', start, 8, None, 2.0)
    assert audio.dtype == torch.float32 and audio.shape == (1, 2 * SR)
    high = _high_tone_mask(audio)
    if step_at is None:
        assert not high.any()
    elif step_at == 0.0:
        assert high[1:-1].all()
    else:
        first = int(np.argmax(high)) * 0.02
        assert abs(first - step_at) <= 0.03
        assert not high[:int(step_at / 0.02) - 1].any()
        assert high[int(step_at / 0.02) + 2:-1].all()
    assert TONE_STEP_S == 3.0 and TIMECODE_FPS == 10


def test_short_audio_is_zero_padded_at_the_end(media_dir):
    _, audio = decode_clip(media_dir / 'short_audio.mp4', 0.0, 8, None, 2.0)
    assert audio.shape == (1, 2 * SR)
    rms_head = audio[0, :SR].pow(2).mean().sqrt()
    assert rms_head > 0.2
    assert torch.all(audio[0, int(1.6 * SR):] == 0)


def test_audio_track_shorter_than_video_is_a_named_failure(media_dir):
    path = media_dir / 'audio_short.mp4'
    info = probe(path)
    assert info.duration == pytest.approx(6.0, abs=0.05)
    assert info.audio_end == pytest.approx(2.0, abs=0.1)
    # Window [0.4, 2.4]: 0.35 s past the audio's end, within tolerance.
    _, audio = decode_clip(path, 1.0, 8, None, 2.0)
    assert audio[0, :SR].abs().max() > 0.2
    # Window [3.4, 5.4] is past the audio's end: silence, refused...
    with pytest.raises(DecodeError) as info:
        decode_clip(path, 4.0, 8, None, 2.0)
    assert info.value.kind == 'audio_short'
    assert 'audio ends at 2.0' in str(info.value)
    assert 'the video ends at 6.000s' in str(info.value)
    # ...unless zeros are asked for.
    video, audio = decode_clip(path, 4.0, 8, None, 2.0, pad_short_audio=True)
    assert _frame_index(video) == list(range(40, 48))
    assert audio.shape == (1, 2 * SR) and torch.all(audio == 0)


def test_several_clips_from_one_open_equal_single_clips(media_dir):
    path = media_dir / 'timecode.mp4'
    starts = [0.0, 2.5, 4.4]
    video, audio, info = decode_clips(path, starts, 8, 5, None, 2.0)
    assert video.shape == (3, 8, 32, 32, 3) and audio.shape == (3, 1, 2 * SR)
    assert info.fps == pytest.approx(10.0)
    for k, start in enumerate(starts):
        v, a = decode_clip(path, start, 8, 5, 2.0)
        assert torch.equal(video[k], v) and torch.equal(audio[k], a)


def test_audio_only_files(media_dir):
    path = media_dir / 'tone.wav'
    with pytest.raises(DecodeError) as info:
        probe(path)
    assert info.value.kind == 'no_video'
    info = probe(path, require_video=False)
    assert not info.has_video and info.has_audio and info.fps == 0
    assert info.duration == pytest.approx(6.0, abs=0.01)
    # Windows of 2 s (the clip is the window): the tone steps at 3 s.
    video, audio, _ = decode_clips(path, [0.0, 2.0, 4.0], clip_duration=2.0,
                                   audio_duration=2.0, modalities=('audio',))
    assert video is None and audio.shape == (3, 1, 2 * SR)
    high = [_high_tone_mask(a).mean() for a in audio]
    assert high[0] == 0 and 0.4 < high[1] < 0.6 and high[2] > 0.95
    # The same window out of the mp4's audio track.
    _, mp4_audio, _ = decode_clips(media_dir / 'timecode.mp4', [2.0],
                                   clip_duration=2.0, audio_duration=2.0,
                                   modalities=('audio',))
    assert torch.allclose(audio[1], mp4_audio[0], atol=0.02)
    with pytest.raises(DecodeError, match='outside the file'):
        decode_clips(path, [4.5], clip_duration=2.0, modalities=('audio',))


def test_sample_rate_and_duration_give_exact_length(media_dir):
    _, audio = decode_clip(media_dir / 'timecode.mp4', 1.0, 4, None, 0.97,
                           sample_rate=22050)
    assert audio.shape == (1, round(0.97 * 22050))


@pytest.mark.parametrize('name, kind', [
    ('corrupt.mp4', 'unreadable'), ('trunc_plain.mp4', 'unreadable'),
    ('noaudio.mp4', 'no_audio'), ('short.mp4', 'too_short'),
])
def test_bad_files_raise_decode_error(media_dir, name, kind):
    path = media_dir / 'mixed' / name
    with pytest.raises(DecodeError) as info:
        decode_clip(path, 0.0, 8, None, 2.0)
    assert info.value.kind == kind and info.value.path == str(path)
    assert name in str(info.value) and kind in str(info.value)


def test_truncated_faststart_file_passes_probe_then_fails(media_dir):
    path = media_dir / 'mixed' / 'trunc_fast.mp4'
    assert probe(path).duration == pytest.approx(6.0, abs=0.05)
    decode_clip(path, 0.2, 8, None, None)  # the start is still there
    with pytest.raises(DecodeError) as info:
        decode_clip(path, 3.0, 8, None, 2.0)
    assert info.value.kind == 'truncated'


def test_clip_longer_than_file(media_dir):
    with pytest.raises(DecodeError, match='outside the file') as info:
        decode_clip(media_dir / 'timecode.mp4', 5.5, 8, None, 2.0)
    assert info.value.kind == 'too_short'


def test_decode_error_pickles():
    import pickle
    e = pickle.loads(pickle.dumps(DecodeError('a.mp4', 'boom', 'truncated')))
    assert (e.path, e.reason, e.kind) == ('a.mp4', 'boom', 'truncated')


def _realclips(root):
    with open(osp.join(root, 'manifest.csv')) as f:
        return list(csv.DictReader(f))


def test_every_realclip_decodes(realclips_dir):
    rows = _realclips(realclips_dir)
    assert len(rows) == 24
    for row in rows:
        path = osp.join(realclips_dir, row['path'])
        info = probe(path)
        assert (info.width, info.height) == (int(row['width']),
                                             int(row['height'])), path
        assert info.has_audio and info.audio_channels == int(row['channels'])
        assert info.duration == pytest.approx(float(row['duration_s']),
                                              abs=0.6), path
        span = 8 / info.fps
        start = max(info.duration - span, 0) / 2
        video, audio = decode_clip(path, start, 8, None, 2.0)
        assert video.shape == (8, info.height, info.width, 3), path
        assert video.dtype == torch.uint8
        assert audio.shape == (1, 2 * SR) and audio.dtype == torch.float32
        assert audio.abs().max() > 1e-3, f'{path}: silent window'
        assert video.float().std() > 1.0, f'{path}: blank frames'


def test_realclip_ends_and_resampled_rate(realclips_dir):
    """Clips at the very end, at 8 fps, on the odd containers."""
    for name in ('golang-github-gabriel-vasile-mimetype-dev/mkv.mkv',
                 'kphotoalbum/movie.avi', 'coccinella/FakeSample.mov',
                 'forensics-samples-files/movie-hello.mpeg',
                 'planetblupi-common/play113.mkv'):
        path = osp.join(realclips_dir, 'files', name)
        info = probe(path)
        video, audio = decode_clip(path, info.duration - 1.0, 8, 8, 2.0)
        assert video.shape[0] == 8 and audio.shape == (1, 2 * SR), name
        # Frames 1/8 s apart are not all the same frame, except in the
        # planetblupi mkv: its video ends ~0.9 s before the container
        # duration (Matroska gives no per-stream duration), so the last
        # second repeats the last frame.
        if 'planetblupi' not in name:
            assert len({int(v.float().sum()) for v in video}) > 1, name


@pytest.fixture
def special_files(tmp_path):
    """A FIFO (no writer: an open blocks for ever), a socket and a
    character device, each named like a video."""
    import socket
    fifo = tmp_path / 'fifo.mp4'
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / 'socket.mp4'))
    yield {fifo: 'a FIFO', tmp_path / 'socket.mp4': 'a socket',
           '/dev/zero': 'a character device'}
    sock.close()


@pytest.mark.timeout(20)
def test_special_files_are_refused_by_type_without_an_open(special_files):
    for path, what in special_files.items():
        for read in (probe, lambda p: decode_clip(p, 0.0, 8, None, 2.0)):
            with pytest.raises(DecodeError) as info:
                read(path)
            assert info.value.kind == 'unreadable'
            assert f'{what}, not a regular file' in info.value.reason


def test_a_missing_file_is_missing_not_unreadable(tmp_path, media_dir):
    for path in (tmp_path / 'gone.mp4',
                 media_dir / 'timecode.mp4' / 'below_a_file.mp4'):
        with pytest.raises(DecodeError) as info:
            probe(path)
        assert info.value.kind == 'missing' and 'no such file' in str(
            info.value)


def test_opening_has_a_time_limit(media_dir, monkeypatch):
    import xdc_plugin.data.media_info as media_info
    monkeypatch.setattr(media_info, 'MEDIA_TIMEOUT_S', 1e-9)
    with pytest.raises(DecodeError, match=r'no answer within 1e-09 s') as \
            info:
        probe(media_dir / 'timecode.mp4')
    assert info.value.kind == 'unreadable'


def test_urls_and_protocols_are_never_opened(tmp_path, monkeypatch):
    """A path is a local file or nothing: FFmpeg's protocols (http,
    concat, data, ...) are not reached, even from a file named like one."""
    monkeypatch.chdir(tmp_path)
    for url in ('http://127.0.0.1:9/x.mp4', 'data:video/mp4;base64,AAAA',
                'concat:a.mp4|b.mp4'):
        with pytest.raises(DecodeError) as info:
            probe(url)
        assert info.value.kind == 'missing'
