"""xdc_plugin/data/prepare.py and tools/prepare_dataset.py: every realclips
file prepared, its copy giving the clip decoded on the fly within a stated
tolerance; files left out with check_manifest's reasons; the source's
layout and labels; a rerun after a kill giving the bytes of an
uninterrupted run."""
import csv
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import timecode_media

from xdc_plugin.data.decode import decode_clips, decode_video, probe
from xdc_plugin.data.demo import write_mp4
from xdc_plugin.data.media_info import read_info
from xdc_plugin.data.media_source import MediaSource
from xdc_plugin.data.prepare import (JOURNAL, PreparationError,
                                     PrepareSettings, estimate_preparation,
                                     list_sources, output_size,
                                     prepare_dataset)
from xdc_plugin.data.transforms import AudioLogMel

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'prepare_dataset.py')
FPS = 30.0  # the default settings' frame rate
# A prepared clip against the same clip of the source resized while
# decoding (libswscale, bilinear), on the 24 realclips at 30% and 60% of
# each file (measured): frames differ by a mean of 0.2-5.0 grey levels (99th
# percentile <= 39: edges, H.264 at crf 23) and the 40-band log-mel of the
# 2 s window by a mean of 0.01-0.63 (natural log; AAC at 48 kb/s on quiet
# noise, and the 10 ms timestamp jitter of mov.mov and webm.webm). A clip
# half a file away is farther in every case (frames 1.4-101 levels,
# log-mel 0.7-8.3, apart from files shorter than the window).
FRAME_MEAN_TOLERANCE = 6.0
FRAME_P99_TOLERANCE = 48
LOG_MEL_TOLERANCE = 0.75


def _rows(csv_path):
    with open(csv_path, newline='') as f:
        return list(csv.DictReader(f))


# -- realclips --------------------------------------------------------------
@pytest.fixture(scope='module')
def prepared_realclips(realclips_dir, tmp_path_factory):
    """``../shared/data/realclips`` prepared with the default settings (two
    processes): ``(report, output folder)``."""
    out = tmp_path_factory.mktemp('realclips_prepared')
    report = prepare_dataset(osp.join(realclips_dir, 'manifest.csv'),
                             str(out), workers=2, progress=False)
    return report, out


def test_every_realclip_is_prepared_and_decodes(prepared_realclips,
                                                realclips_dir):
    report, out = prepared_realclips
    assert len(report.results) == 24
    assert report.counts['ok'] == 24, report.table()
    assert _rows(out / 'left_out.csv') == []
    rows = _rows(out / 'manifest.csv')
    sources = [osp.join(realclips_dir, r['path'])
               for r in _rows(osp.join(realclips_dir, 'manifest.csv'))]
    assert [r['source_path'] for r in rows] == sources
    for row in rows:
        path = str(out / row['path'])
        # The source's layout; '.mp4' added to other containers.
        rel = osp.relpath(row['source_path'], realclips_dir)
        assert row['path'] == (rel if rel.endswith('.mp4') else
                               rel + '.mp4')
        info = probe(path)
        assert (info.width, info.height) == (int(row['width']),
                                             int(row['height']))
        assert min(info.width, info.height) == 128 or \
            (info.width, info.height) == (160, 120)  # never enlarged
        assert info.width % 2 == 0 and info.height % 2 == 0
        assert (info.fps, info.audio_sample_rate, info.audio_channels) == \
            (FPS, 16000, 1)
        assert (info.duration, info.fps) == (float(row['duration']),
                                             float(row['fps']))
        assert int(row['num_frames']) == round(
            probe(row['source_path']).duration * FPS)
        last = info.duration - 8 / FPS
        video, audio, _ = decode_clips(path, [0.0, last / 2, last], 8, FPS)
        assert video.shape == (3, 8, info.height, info.width, 3)
        assert audio.shape == (3, 1, 32000) and audio.abs().max() > 1e-3
    assert report.output_bytes < report.source_bytes / 3


def _source_clip(path, start, height, width):
    """The source's clip as the dataset decodes it, scaled straight to the
    copy's frame size (which rounds the long side to even)."""
    src = MediaSource(path)
    try:
        out = np.empty((8, height, width, 3), np.uint8)
        return decode_video(src, start, 8, FPS, read_info(src.container,
                                                          path), out)
    finally:
        src.close()


def test_prepared_clips_match_clips_resized_on_the_fly(prepared_realclips):
    _, out = prepared_realclips
    logmel = AudioLogMel()

    def mel(audio):
        return logmel(dict(audio=audio, sample_rate=16000))['audio']
    for row in _rows(out / 'manifest.csv'):
        path, source = str(out / row['path']), row['source_path']
        height, width = int(row['height']), int(row['width'])
        span = float(row['duration']) - 8 / FPS
        # A start on the copy's frame grid (each frame then comes from the
        # same source frame), and a wrong clip half a file away.
        start, wrong = (round(u * span * FPS) / FPS for u in (0.3, 0.8))
        video, audio, _ = decode_clips(path, [start], 8, FPS)
        _, ref_audio, _ = decode_clips(source, [start, wrong], 8, FPS,
                                       modalities=('audio',))
        ref = torch.from_numpy(_source_clip(source, start, height, width))
        far = torch.from_numpy(_source_clip(source, wrong, height, width))
        diff = (video[0].float() - ref.float()).abs()
        what = (row['path'], diff.mean())
        assert diff.mean() <= FRAME_MEAN_TOLERANCE, what
        assert diff.flatten().kthvalue(int(0.99 * diff.numel())).values <= \
            FRAME_P99_TOLERANCE, what
        assert diff.mean() < (video[0].float() - far.float()).abs().mean()
        got = mel(audio[0])
        mel_diff = (got - mel(ref_audio[0])).abs().mean()
        assert mel_diff <= LOG_MEL_TOLERANCE, (row['path'], mel_diff)
        assert mel_diff <= (got - mel(ref_audio[1])).abs().mean()


def test_a_prepared_manifest_builds_as_its_files_would(prepared_realclips,
                                                       monkeypatch):
    """Trusted rows give the build what checking the copies gives."""
    import av

    from xdc_plugin.data import AVClipDataset
    _, out = prepared_realclips
    pipeline = [dict(type='SampleClip', num_frames=8, frame_rate=FPS),
                dict(type='DecodeAVClip'), dict(type='PackAVInputs')]
    checked = AVClipDataset(str(out / 'manifest.csv'), pipeline=pipeline,
                            check='decode', check_cache=False)
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, 'open', lambda *a, **k: opened.append(a[0]) or
                        real_open(*a, **k))
    trusted = AVClipDataset(str(out / 'manifest.csv'), pipeline=pipeline)
    assert opened == [] and trusted.prepared is not None
    assert checked.prepared is None
    assert [trusted.get_data_info(i) for i in range(len(trusted))] == \
        [checked.get_data_info(i) for i in range(len(checked))]
    assert trusted.file_list_digest == checked.file_list_digest


# -- left out, with reasons -------------------------------------------------
@pytest.fixture(scope='module')
def mixed_prepared(media_dir, tmp_path_factory):
    """The ``mixed`` folder plus a file with a silent track and an
    audio-short one, prepared at short side 16 and the files' own frame
    rate (10 fps: a clip of 8 frames is 0.8 s) in this process."""
    root = tmp_path_factory.mktemp('mixed_source')
    shutil.copytree(media_dir / 'mixed', root / 'src')
    frames, audio = timecode_media(4.0)
    write_mp4(str(root / 'src' / 'silent.mp4'), frames, np.zeros_like(audio),
              10)
    shutil.copy(media_dir / 'audio_short.mp4', root / 'src')
    report = prepare_dataset(str(root / 'src'), str(root / 'out'),
                             PrepareSettings(short_side=16, fps=None),
                             workers=0, progress=False)
    return report, root / 'out'


def test_files_left_out_are_reported_with_their_reason(mixed_prepared):
    report, out = mixed_prepared
    left = {osp.basename(r['source_path']): r['status']
            for r in _rows(out / 'left_out.csv')}
    assert left == {'corrupt.mp4': 'unreadable', 'noaudio.mp4': 'no_audio',
                    'short.mp4': 'too_short', 'trunc_plain.mp4': 'unreadable',
                    'trunc_fast.mp4': 'truncated', 'silent.mp4': 'silent',
                    'audio_short.mp4': 'audio_short'}
    assert [osp.basename(r['path']) for r in _rows(out / 'manifest.csv')] \
        == ['good1.mp4', 'good2.mp4']
    assert report.counts == dict(ok=2, missing=0, unreadable=2, no_video=0,
                                 no_audio=1, truncated=1, too_short=1,
                                 audio_short=1, silent=1)
    table = report.table()
    assert 'silent           1  ' in table and 'total            9' in table
    # No partial copy of a left-out file stays behind.
    names = {n for _, _, files in os.walk(out) for n in files}
    assert names == {'good1.mp4', 'good2.mp4', 'manifest.csv',
                     'manifest.csv.xdc-prepared.json', 'left_out.csv',
                     JOURNAL}


def test_audio_short_files_kept_padded_when_asked(media_dir, tmp_path):
    (tmp_path / 'src').mkdir()
    shutil.copy(media_dir / 'audio_short.mp4', tmp_path / 'src' / 'a.mp4')
    report = prepare_dataset(str(tmp_path / 'src'), str(tmp_path / 'out'),
                             PrepareSettings(short_side=16,
                                             pad_short_audio=True),
                             workers=0, progress=False)
    assert report.counts['ok'] == 1
    copy = str(tmp_path / 'out' / 'a.mp4')
    _, audio, _ = decode_clips(copy, [3.5], 8, FPS)
    assert audio[0].abs().max() == 0  # the padding after 2 s


def test_copy_frames_follow_the_timecode(media_dir, tmp_path):
    """10 fps timecode (frame i is grey 20 + 3 i) at 30 fps: frame k of the
    copy is source frame round(k / 3), and the tone step of the audio stays
    at 3 s."""
    (tmp_path / 'src').mkdir()
    shutil.copy(media_dir / 'timecode.mp4', tmp_path / 'src' / 'a.mp4')
    prepare_dataset(str(tmp_path / 'src'), str(tmp_path / 'out'),
                    PrepareSettings(short_side=16), workers=0,
                    progress=False)
    copy = str(tmp_path / 'out' / 'a.mp4')
    assert probe(copy).width == 16
    video, audio, _ = decode_clips(copy, [1.0, 2.0], 30, FPS)
    grey = video.float().mean(dim=(2, 3, 4))
    nearest = np.floor(np.arange(30) / 3 + 0.5)  # source frame of frame k
    for k, start in enumerate([1.0, 2.0]):
        expected = 20 + 3 * (10 * start + nearest)
        assert np.abs(grey[k].numpy() - expected).max() < 2.5
    spectrum = np.abs(np.fft.rfft(audio[1, 0].numpy()))
    freqs = np.fft.rfftfreq(32000, 1 / 16000)
    # Window [1.5, 3.5]: 440 Hz for 1.5 s, then 1760 Hz for 0.5 s.
    low = spectrum[np.abs(freqs - 440) < 5].max()
    high = spectrum[np.abs(freqs - 1760) < 5].max()
    assert low > 2 * high > 0


def test_keep_channels(realclips_dir, tmp_path):
    source = osp.join(realclips_dir, 'files', 'forensics-samples-files',
                      'movie-hello.mpeg')  # stereo mp2
    manifest = tmp_path / 'one.csv'
    manifest.write_text(f'path\n{source}\n')
    prepare_dataset(str(manifest), str(tmp_path / 'out'),
                    PrepareSettings(mono=False), workers=0, progress=False)
    [row] = _rows(tmp_path / 'out' / 'manifest.csv')
    assert probe(str(tmp_path / 'out' / row['path'])).audio_channels == 2


# -- sources, layout and labels -------------------------------------------
def test_class_folders_give_labels_and_the_layout(tmp_path, media_dir):
    for label in ('cat', 'dog'):
        (tmp_path / 'src' / label).mkdir(parents=True)
        shutil.copy(media_dir / 'timecode.mp4',
                    tmp_path / 'src' / label / 'a.mp4')
    (tmp_path / 'src' / 'dog' / 'b.avi').write_bytes(b'x')
    _, sources = list_sources(str(tmp_path / 'src'), class_folders=True)
    assert [(s.rel_path, s.label) for s in sources] == [
        ('cat/a.mp4', 'cat'), ('dog/a.mp4', 'dog'), ('dog/b.avi.mp4', 'dog')]
    # An output folder inside the source folder is not listed.
    out = tmp_path / 'src' / 'prepared'
    (out / 'cat').mkdir(parents=True)
    shutil.copy(media_dir / 'timecode.mp4', out / 'cat' / 'a.mp4')
    _, sources = list_sources(str(tmp_path / 'src'), exclude=str(out))
    assert len(sources) == 3
    (tmp_path / 'src' / 'dog' / 'b.avi.mp4').write_bytes(b'x')
    with pytest.raises(ValueError, match='would both be prepared as'):
        list_sources(str(tmp_path / 'src'))


def test_manifest_labels_and_duplicates(tmp_path, media_dir):
    shutil.copy(media_dir / 'timecode.mp4', tmp_path / 'a.mp4')
    manifest = tmp_path / 'm.csv'
    manifest.write_text('path,kind\na.mp4,tick\na.mp4,tick\n')
    report = prepare_dataset(str(manifest), str(tmp_path / 'out'),
                             PrepareSettings(short_side=16),
                             label_column='kind', workers=0, progress=False)
    assert [(r['path'], r['label']) for r in
            _rows(tmp_path / 'out' / 'manifest.csv')] == [('a.mp4', 'tick')]
    assert '1 duplicate rows' in report.table()


def test_output_size_is_even_and_never_enlarged():
    assert output_size(720, 1280, 128) == (128, 228)
    assert output_size(320, 568, 128) == (128, 228)  # 227.2
    assert output_size(465, 640, 128) == (128, 176)
    assert output_size(120, 160, 128) == (120, 160)
    assert output_size(121, 161, 128) == (122, 162)
    with pytest.raises(ValueError, match='even'):
        PrepareSettings(short_side=127)


# -- resuming --------------------------------------------------------------
@pytest.fixture(scope='module')
def many_sources(tmp_path_factory):
    """Twelve 5 s timecode files (64x48) in two folders."""
    root = tmp_path_factory.mktemp('many')
    frames, audio = timecode_media(5.0, size=48)
    frames = np.concatenate([frames, frames[:, :, :16]], axis=2)  # 64 wide
    for i in range(12):
        folder = root / 'src' / f'part{i % 2}'
        folder.mkdir(parents=True, exist_ok=True)
        write_mp4(str(folder / f'clip{i:02d}.mp4'), frames + np.uint8(i),
                  audio * (1 - i / 24), 10)
    return root / 'src'


@pytest.fixture
def run(tool_main):
    """The tool's ``main`` on arguments, in this process: (exit code,
    stdout, stderr)."""
    return tool_main(TOOL)


def _tree(folder):
    """``{relative path: bytes}`` of the files under ``folder`` but the
    journal (which records the order files finished in)."""
    return {osp.relpath(osp.join(d, n), folder):
            open(osp.join(d, n), 'rb').read()
            for d, _, names in os.walk(folder) for n in names
            if n != JOURNAL}


def test_a_killed_run_resumed_gives_the_uninterrupted_output(many_sources,
                                                             tmp_path, run):
    args = ['--short-side', '32', '--workers']
    assert run(many_sources, tmp_path / 'whole', *args, 0)[0] == 0
    # The tool with two worker processes, all killed (SIGKILL: no clean-up)
    # once a few files are done.
    out = tmp_path / 'resumed'
    killed = subprocess.Popen(
        [sys.executable, TOOL, str(many_sources), str(out), *args, '2'],
        env=dict(os.environ, PYTHONPATH=REPO), stderr=subprocess.DEVNULL,
        start_new_session=True)
    journal = out / JOURNAL
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None and (
            not journal.exists() or
            len(journal.read_text().splitlines()) < 4):
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    done = len(journal.read_text().splitlines()) - 1
    assert 3 <= done < 12, done
    assert not (out / 'manifest.csv').exists()
    # The rerun (in this process) prepares the rest: the same bytes as the
    # uninterrupted run, each file once.
    assert run(many_sources, out, *args, 0)[0] == 0
    assert _tree(out) == _tree(tmp_path / 'whole')
    rows = _rows(out / 'manifest.csv')
    assert len(rows) == 12 and len({r['path'] for r in rows}) == 12
    entries = [json.loads(line) for line in
               journal.read_text().splitlines()[1:] if line.endswith('}')]
    assert len(entries) == len({e['source'] for e in entries}) == 12
    # Nothing left to do: another run prepares nothing.
    assert run(many_sources, out, *args, 0)[0] == 0
    assert len(journal.read_text().splitlines()) == 1 + len(entries)


def test_other_settings_in_the_output_folder_are_refused(many_sources,
                                                         tmp_path, run):
    manifest = tmp_path / 'one.csv'
    manifest.write_text(f'path\n{many_sources}/part0/clip00.mp4\n')
    prepare_dataset(str(manifest), str(tmp_path / 'out'),
                    PrepareSettings(short_side=32), workers=0,
                    progress=False)
    with pytest.raises(PreparationError, match=r'other settings \(crf, '
                       r'short_side\)'):
        prepare_dataset(str(manifest), str(tmp_path / 'out'),
                        PrepareSettings(short_side=16, crf=30), workers=0,
                        progress=False)
    code, _, err = run(manifest, tmp_path / 'out', '--short-side', 16)
    assert code == 2 and err.startswith('error: ') and 'short_side' in err
    assert len(err.strip().splitlines()) == 1


def test_dry_run_estimates_from_a_sample(many_sources, tmp_path, run):
    estimate = estimate_preparation(str(many_sources),
                                    PrepareSettings(short_side=32), sample=3,
                                    workers=0, progress=False)
    sample = estimate.sample
    assert len(sample.results) == 3 and sample.counts['ok'] == 3
    sizes = [os.path.getsize(osp.join(d, n))
             for d, _, names in os.walk(many_sources) for n in names]
    # Output per source byte of the sample, times every source byte.
    assert estimate.source_bytes == sum(sizes)
    assert 0 < estimate.output_bytes < sum(sizes)
    assert estimate.cpu_seconds > 0
    assert 'estimate for the 12 files' in estimate.summary()
    code, out, _ = run(many_sources, tmp_path / 'out', '--dry-run',
                       '--sample', 2, '--workers', 0)
    assert code == 0 and 'sample: 2 of 12 files' in out
    assert not (tmp_path / 'out').exists()
