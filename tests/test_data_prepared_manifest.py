"""xdc_plugin/data/prepared_manifest.py: a prepared manifest whose sidecar
matches it is trusted by the dataset build (no media file opened, 100,000
rows in seconds); an edited one is checked like any other."""
import time

import av
import pytest

import xdc_plugin.data.dataset as dataset_module
from xdc_plugin.data import AVClipDataset
from xdc_plugin.data.file_check import CheckSettings
from xdc_plugin.data.prepare import PrepareSettings
from xdc_plugin.data.prepared_manifest import (file_list_digest,
                                               read_sidecar, sidecar_path,
                                               trusted_checks,
                                               write_prepared_manifest)

PIPELINE = [dict(type='SampleClip', num_frames=8, frame_rate=30),
            dict(type='DecodeAVClip'), dict(type='VideoResize'),
            dict(type='VideoCrop'), dict(type='AudioLogMel'),
            dict(type='PackAVInputs')]


def _row(i, duration=10.0, fps=30.0):
    """A Kinetics-like row: 400 class folders of 10 s clips."""
    return dict(path=f'c{i % 400:03d}/{i:06d}.mp4', label=f'c{i % 400:03d}',
                duration=duration, fps=fps, width=228, height=128,
                audio_sample_rate=16000, num_frames=round(duration * fps),
                source_path=f'/data/kinetics/{i:06d}.mp4')


@pytest.fixture
def opened(monkeypatch):
    """Every ``av.open`` call (the one way media files are opened)."""
    calls = []
    real = av.open
    monkeypatch.setattr(av, 'open', lambda *a, **kw: calls.append(a[0]) or
                        real(*a, **kw))
    return calls


def test_100k_row_build_opens_no_file_and_takes_seconds(tmp_path, opened):
    # Written by the tool's own writer (the sidecar included); the rows name
    # files that do not exist: a probe would skip every one of them.
    manifest = tmp_path / 'manifest.csv'
    write_prepared_manifest(str(manifest), map(_row, range(100_000)),
                            PrepareSettings().record())
    start = time.perf_counter()
    ds = AVClipDataset(str(manifest), pipeline=PIPELINE)
    seconds = time.perf_counter() - start
    assert opened == [] and len(ds) == 100_000 and ds.skipped == []
    assert seconds < 20, seconds  # 3 s measured on a loaded 2-core CPU
    info = ds.get_data_info(123)
    assert (info['path'], info['duration'], info['fps']) == (
        str(tmp_path / 'c123' / '000123.mp4'), 10.0, 30.0)
    assert len(ds.metainfo['classes']) == 400
    assert ds.file_list_digest == file_list_digest(
        [str(tmp_path / _row(i)['path']) for i in range(100_000)])


def test_trusted_rows_still_skip_files_shorter_than_a_clip(tmp_path, opened,
                                                           monkeypatch):
    logs = []
    monkeypatch.setattr(dataset_module, 'print_log',
                        lambda msg, **kw: logs.append(msg))
    manifest = tmp_path / 'manifest.csv'
    write_prepared_manifest(str(manifest), [_row(0), _row(1, 0.2), _row(2)],
                            {})
    ds = AVClipDataset(str(manifest), pipeline=PIPELINE)
    assert len(ds) == 2 and opened == []
    assert ds.skipped == [(str(tmp_path / 'c001' / '000001.mp4'),
                           'too_short')]
    assert 'skipped 1 of 3 files (too_short: 1)' in logs[0]
    [check] = trusted_checks([dict(duration='0.2', fps='30')],
                             CheckSettings())
    assert check.status == 'too_short' and check.detail == \
        '0.200s < clip 0.267s'
    for bad in (dict(duration='', fps='30'), dict(duration='3', fps='0')):
        with pytest.raises(ValueError, match='line 2: no valid duration'):
            trusted_checks([bad], CheckSettings())


def test_an_edited_manifest_is_checked_again(tmp_path, media_dir, opened,
                                             monkeypatch):
    logs = []
    monkeypatch.setattr('xdc_plugin.data.prepared_manifest.print_log',
                        lambda msg, **kw: logs.append(msg))
    manifest = tmp_path / 'manifest.csv'
    write_prepared_manifest(
        str(manifest), [dict(_row(0), path=str(media_dir / 'timecode.mp4'),
                             duration=6.0, fps=10.0)], dict(crf=23))
    assert read_sidecar(str(manifest))['settings'] == dict(crf=23)
    assert AVClipDataset(str(manifest), pipeline=PIPELINE,
                         check_cache=False).prepared is not None
    assert opened == []
    # check='decode' decodes anyway.
    ds = AVClipDataset(str(manifest), pipeline=PIPELINE, check='decode',
                       check_cache=False)
    assert ds.prepared is None and len(ds) == 1 and len(opened) > 0
    # A row added by hand: the digest no longer matches.
    with open(manifest, 'a') as f:
        f.write(f'{media_dir / "mixed" / "noaudio.mp4"},x,6.0,10.0,32,32,0,60,'
                'x\n')
    assert read_sidecar(str(manifest)) is None
    assert 'changed since it was prepared' in logs[-1]
    ds = AVClipDataset(str(manifest), pipeline=PIPELINE, check_cache=False)
    assert ds.prepared is None and len(ds) == 1
    assert ds.skipped[0][1] == 'no_audio'
    with open(sidecar_path(str(manifest)), 'w') as f:
        f.write('{not json')
    assert read_sidecar(str(manifest)) is None
    assert 'unreadable' in logs[-1]


def test_file_list_digest_follows_order_and_content():
    a = file_list_digest(['x.mp4', 'y.mp4'])
    assert a == file_list_digest(['x.mp4', 'y.mp4'])
    assert a != file_list_digest(['y.mp4', 'x.mp4'])
    assert a != file_list_digest(['x.mp4', 'y.mp4', 'z.mp4'])
    assert file_list_digest(['ab', 'c']) != file_list_digest(['a', 'bc'])
    many = [f'{i}.mp4' for i in range(250_001)]  # over the 100k blocks
    assert file_list_digest(many) != file_list_digest(many[:-1] + ['x'])
