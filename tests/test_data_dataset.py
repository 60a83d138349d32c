import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset
from torch.utils.data import DataLoader

import xdc_plugin.data.dataset as dataset_module
import xdc_plugin.data.file_check as file_check
from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.registry import DATASETS


def pipeline(size=24, mode='center', num_clips=1, flip=False):
    steps = [
        dict(type='SampleClip', num_frames=8, num_clips=num_clips,
             mode=mode),
        dict(type='DecodeAVClip', audio_duration=2.0),
        dict(type='VideoResize', short_side=size + 8),
        dict(type='VideoCrop', size=size, random=mode == 'random'),
    ]
    if flip:
        steps.append(dict(type='VideoFlip', prob=0.5))
    return steps + [dict(type='AudioLogMel'), dict(type='PackAVInputs')]


TRAIN = pipeline(mode='random', flip=True)


@pytest.fixture
def logs(monkeypatch):
    records = []
    monkeypatch.setattr(dataset_module, 'print_log',
                        lambda msg, **kw: records.append((msg, kw)))
    return records


def _mixed(media_dir, **kw):
    kw.setdefault('pipeline', pipeline())
    kw.setdefault('check_cache', False)
    return AVClipDataset(data_root=str(media_dir / 'mixed'), **kw)


def _names(ds):
    return [osp.basename(ds.get_data_info(i)['path']) for i in range(len(ds))]


def test_build_skips_bad_files_with_one_summary(media_dir, logs):
    ds = _mixed(media_dir)  # 7 files: decoded end to end ('auto')
    assert isinstance(ds, BaseDataset)
    assert _names(ds) == ['good1.mp4', 'good2.mp4']
    assert sorted((osp.basename(p), s) for p, s in ds.skipped) == [
        ('corrupt.mp4', 'unreadable'), ('noaudio.mp4', 'no_audio'),
        ('short.mp4', 'too_short'), ('trunc_fast.mp4', 'truncated'),
        ('trunc_plain.mp4', 'unreadable')]
    assert len(logs) == 1
    msg, kw = logs[0]
    assert 'skipped 5 of 7' in msg and 'unreadable: 2' in msg
    assert 'truncated: 1' in msg and kw['level'] == 30
    np.testing.assert_array_equal(ds.get_labels(), [-1, -1])
    assert ds.metainfo == {}
    info = ds.get_data_info(1)
    assert info['duration'] == pytest.approx(6.0, abs=0.05)
    assert info['fps'] == pytest.approx(10.0) and info['index'] == 1
    # Headers only: the truncated file passes the build.
    headers = _mixed(media_dir, check='headers')
    assert _names(headers) == ['good1.mp4', 'good2.mp4', 'trunc_fast.mp4']


def test_nothing_left_raises(tmp_path):
    (tmp_path / 'bad.mp4').write_bytes(b'not a video')
    with pytest.raises(ValueError, match='no usable file'):
        AVClipDataset(data_root=str(tmp_path), pipeline=pipeline())
    with pytest.raises(ValueError, match='check must be one of'):
        AVClipDataset(data_root=str(tmp_path), check='full')


def test_sample_layout_and_centre_clip(media_dir, logs):
    ds = _mixed(media_dir)
    s = ds[0]
    assert set(s) == {'video', 'audio', 'index', 'label'}
    assert s['video'].dtype == torch.uint8
    assert s['video'].shape == (3, 8, 24, 24)
    assert s['audio'].shape == (1, 40, 201)
    assert s['audio'].dtype == torch.float32
    assert s['index'] == 0 and s['label'] == -1
    # The clip centred in the 6 s file: frames 26..33.
    grey = s['video'].float().mean(dim=(0, 2, 3))
    assert ((grey - 20) / 3).round().long().tolist() == list(range(26, 34))
    again = ds[0]
    assert torch.equal(s['video'], again['video'])


def test_several_clips(media_dir, logs):
    ds = _mixed(media_dir, pipeline=pipeline(mode='uniform', num_clips=3))
    s = ds[1]
    assert s['video'].shape == (3, 3, 8, 24, 24)
    assert s['audio'].shape == (3, 1, 40, 201)
    firsts = (s['video'][:, :, 0].float().mean(dim=(1, 2, 3)) - 20) / 3
    assert firsts.round().tolist() == [0, 26, 52]


def test_audio_only_files(media_dir, tmp_path, logs):
    shutil.copy(media_dir / 'tone.wav', tmp_path / 'tone.wav')
    shutil.copy(media_dir / 'timecode.mp4', tmp_path / 'clip.mp4')
    ds = AVClipDataset(
        data_root=str(tmp_path), modalities=('audio', ), check_cache=False,
        pipeline=[dict(type='SampleClip', clip_duration=2.0, num_clips=5,
                       mode='uniform'),
                  dict(type='DecodeAVClip', audio_duration=2.0),
                  dict(type='AudioLogMel'), dict(type='PackAVInputs')])
    assert _names(ds) == ['clip.mp4', 'tone.wav']  # video files' audio too
    s = ds[1]
    assert set(s) == {'audio', 'index', 'label'}
    assert s['audio'].shape == (5, 1, 40, 201)
    # The wav and the mp4's AAC track hold the same tone: the loudest band
    # of every frame agrees.
    agree = s['audio'].argmax(2) == ds[0]['audio'].argmax(2)
    assert agree.float().mean() > 0.95


def test_labels_from_a_manifest(tmp_path, media_dir, logs):
    root = media_dir / 'mixed'
    ann = tmp_path / 'ann.csv'
    ann.write_text('path, kind\ngood2.mp4,zebra\ngood1.mp4, ant\n'
                   'noaudio.mp4,ant\ngood1.mp4,\n')
    ds = DATASETS.build(dict(type='AVClipDataset', ann_file=str(ann),
                             data_root=str(root), label_column='kind',
                             pipeline=pipeline(), check_cache=False))
    assert isinstance(ds, AVClipDataset)
    assert ds.metainfo['classes'] == ('ant', 'zebra')
    np.testing.assert_array_equal(ds.get_labels(), [1, 0, -1])
    assert ds[0]['label'] == 1
    summary = logs[0][0]
    assert '1 duplicate rows' in summary and '1 rows without' in summary
    # The class order may be given; a relative ann_file is under data_root.
    shutil.copy(ann, root / 'ann_copy.csv')
    ds = AVClipDataset('ann_copy.csv', data_root=str(root),
                       label_column='kind', pipeline=pipeline(),
                       check_cache=False,
                       metainfo=dict(classes=['zebra', 'ant', 'bee']))
    np.testing.assert_array_equal(ds.get_labels(), [0, 1, -1])
    with pytest.raises(ValueError, match=r"labels \['ant'\] are not among"):
        AVClipDataset(str(ann), data_root=str(root), label_column='kind',
                      metainfo=dict(classes=['zebra']), check_cache=False)
    (root / 'ann_copy.csv').unlink()


def test_integer_labels_stay_as_they_are(tmp_path, media_dir, logs):
    ann = tmp_path / 'ann.csv'
    ann.write_text(f'path,label\n{media_dir}/timecode.mp4,7\n'
                   f'{media_dir}/timecode.mp4,3\n')
    ds = AVClipDataset(str(ann), pipeline=pipeline(), check_cache=False)
    np.testing.assert_array_equal(ds.get_labels(), [7, 3])
    assert 'classes' not in ds.metainfo


def test_samples_are_seeded_by_seed_epoch_and_index(media_dir, logs):
    ds = _mixed(media_dir, pipeline=TRAIN, seed=3)

    def draw(index):
        return ds[index]['video']

    first = draw(1)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    draw(0)  # what ran before does not matter, nor does the sample
    assert torch.equal(draw(1), first)  # consume the global generator
    assert torch.equal(torch.rand(3), before)
    ds.set_epoch(1)
    assert not torch.equal(draw(1), first)
    ds.set_epoch(0)
    assert torch.equal(draw(1), first)
    other = _mixed(media_dir, pipeline=TRAIN, seed=4)
    assert not torch.equal(other[1]['video'], first)
    # Workers give each index what the main process gives it.
    loader = DataLoader(ds, batch_size=1, num_workers=2)
    assert torch.equal(list(loader)[1]['video'][0], first)


@pytest.fixture
def eleven_truncated(tmp_path, media_dir):
    """A manifest of 2 good files around 11 consecutive files whose headers
    are valid but whose media data is cut (no clip decodes)."""
    names = ['good0.mp4'] + [f'cut{i:02d}.mp4' for i in range(11)] + \
        ['good1.mp4']
    for name in names:
        source = 'trunc_early.mp4' if name.startswith('cut') else \
            'timecode.mp4'
        shutil.copy(media_dir / source, tmp_path / name)
    ann = tmp_path / 'ann.csv'
    ann.write_text('path\n' + '\n'.join(names) + '\n')
    return str(ann)


def test_consecutive_truncated_files_do_not_stop_training(eleven_truncated):
    ds = AVClipDataset(eleven_truncated, pipeline=TRAIN, check='headers',
                       check_cache=False, max_undecodable_fraction=0.9)
    assert len(ds) == 13
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    indices = torch.cat([b['index'] for b in loader]).tolist()
    # Each of the 11 is replaced by the next decodable index: 12.
    assert indices == [0] + [12] * 12
    videos = torch.cat([b['video'] for b in loader])
    assert videos.shape == (13, 3, 8, 24, 24)


def test_failures_are_counted_and_too_many_stop_the_run(eleven_truncated,
                                                        logs):
    ds = AVClipDataset(eleven_truncated, pipeline=TRAIN, check='headers',
                       check_cache=False, max_undecodable_fraction=0.9)
    assert ds[1]['index'] == 12
    assert len(logs) == 11
    assert 'skipping index 1' in logs[0][0] and 'cut00.mp4' in logs[0][0]
    assert '11 undecodable files met by this process' in logs[-1][0]
    assert ds[3]['index'] == 12 and len(logs) == 11  # known: not retried
    strict = AVClipDataset(eleven_truncated, pipeline=TRAIN,
                           check='headers', check_cache=False,
                           max_undecodable_fraction=0.5)
    with pytest.raises(RuntimeError, match=r'7 of 13 files failed to decode'
                       r', more than max_undecodable_fraction=0.5'):
        strict[1]
    # Decoded end to end at build (the default for small sets), none of
    # them reaches training.
    checked = AVClipDataset(eleven_truncated, pipeline=TRAIN,
                            check_cache=False)
    assert len(checked) == 2 and len(checked.skipped) == 11


def test_audio_short_files_skipped_or_padded(tmp_path, media_dir, logs):
    for name in ('timecode.mp4', 'audio_short.mp4'):
        shutil.copy(media_dir / name, tmp_path / name)
    kw = dict(data_root=str(tmp_path), check_cache=False,
              pipeline=[dict(type='SampleClip', num_frames=8, num_clips=2,
                             mode='uniform'),
                        dict(type='DecodeAVClip'), dict(type='PackAVInputs')])
    ds = AVClipDataset(**kw)
    assert _names(ds) == ['timecode.mp4']
    assert [s for _, s in ds.skipped] == ['audio_short'] and len(logs) == 1
    logs.clear()
    padded = AVClipDataset(pad_short_audio=True, **kw)
    assert _names(padded) == ['audio_short.mp4', 'timecode.mp4']
    assert '1 files have an audio track that ends before their video' in \
        logs[0][0]
    audio = padded[0]['audio']  # clips at 0 s and 5.2 s
    assert audio[0].abs().max() > 0.2 and torch.all(audio[1] == 0)


def test_second_build_decodes_nothing_until_a_file_changes(
        tmp_path, media_dir, monkeypatch, logs):
    for name in ('a.mp4', 'b.mp4'):
        shutil.copy(media_dir / 'timecode.mp4', tmp_path / name)
    calls = []
    real = file_check.check_file
    monkeypatch.setattr(file_check, 'check_file',
                        lambda p, s: calls.append(p) or real(p, s))
    kw = dict(data_root=str(tmp_path), pipeline=pipeline())
    assert len(AVClipDataset(**kw)) == 2 and len(calls) == 2
    assert len(AVClipDataset(**kw)) == 2 and len(calls) == 2
    shutil.copy(media_dir / 'trunc_early.mp4', tmp_path / 'b.mp4')
    ds = AVClipDataset(**kw)
    assert _names(ds) == ['a.mp4'] and calls[2:] == [str(tmp_path / 'b.mp4')]


def test_avobjects_labels(avobjects_dir, tmp_path, logs):
    ds = AVClipDataset(osp.join(avobjects_dir, 'manifest.csv'),
                       label_column='coarse_label', check='headers',
                       check_cache=str(tmp_path), pipeline=pipeline(112))
    assert len(ds) == 240 and not ds.skipped and not logs
    assert ds.metainfo['classes'] == ('animals', 'instrument', 'misc', 'toys')
    assert np.bincount(ds.get_labels()).tolist() == [74, 66, 29, 71]
    s = ds[10]
    assert s['video'].shape == (3, 8, 112, 112)
    assert s['audio'].shape == (1, 40, 201)
    assert s['label'] == ds.get_labels()[10]


@pytest.mark.timeout(20)
def test_the_build_refuses_special_files_and_counts_missing_ones(
        tmp_path, media_dir, logs):
    import os
    shutil.copy(media_dir / 'timecode.mp4', tmp_path / 'good.mp4')
    os.mkfifo(tmp_path / 'fifo.mp4')
    (tmp_path / 'ann.csv').write_text('path\ngood.mp4\nfifo.mp4\ngone.mp4\n')
    ds = AVClipDataset(str(tmp_path / 'ann.csv'), pipeline=pipeline(),
                       check_cache=False, check_workers=0)
    assert _names(ds) == ['good.mp4']
    assert ds.skipped == [(str(tmp_path / 'fifo.mp4'), 'unreadable'),
                          (str(tmp_path / 'gone.mp4'), 'missing')]
    (msg, _), = logs
    assert 'skipped 2 of 3 files (missing: 1, unreadable: 1)' in msg
    # A file that turns into a FIFO after the build is refused when the
    # sample is decoded, and the next file given instead.
    os.remove(tmp_path / 'good.mp4')
    os.mkfifo(tmp_path / 'good.mp4')
    with pytest.raises(RuntimeError, match='1 of 1 files failed to decode'):
        ds[0]
    assert 'good.mp4): unreadable: a FIFO, not a regular file' in logs[-1][0]
