import csv
import os.path as osp

import numpy as np
import pytest
import torch

import xdc_plugin.data.dataset as dataset_module
from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.data.decode import DecodeError
from xdc_plugin.registry import DATASETS


@pytest.fixture
def logs(monkeypatch):
    records = []
    monkeypatch.setattr(dataset_module, 'print_log',
                        lambda msg, **kw: records.append((msg, kw)))
    return records


def _mixed(media_dir, **kw):
    kw.setdefault('num_frames', 8)
    kw.setdefault('short_side', 32)
    kw.setdefault('crop_size', 24)
    return AVClipDataset(data_root=str(media_dir / 'mixed'), **kw)


def test_probe_skips_bad_files_with_one_summary(media_dir, logs):
    ds = _mixed(media_dir)
    assert [osp.basename(ds.get_path(i)) for i in range(len(ds))] == [
        'good1.mp4', 'good2.mp4', 'trunc_fast.mp4']
    reasons = sorted((osp.basename(p), r) for p, r in ds.skipped)
    assert reasons == [('corrupt.mp4', 'unreadable'),
                       ('noaudio.mp4', 'no_audio'),
                       ('short.mp4', 'too_short'),
                       ('trunc_plain.mp4', 'unreadable')]
    assert len(logs) == 1
    msg, kw = logs[0]
    assert 'skipped 4 of 7' in msg and 'unreadable: 2' in msg
    assert 'no_audio: 1' in msg and 'too_short: 1' in msg
    assert kw['level'] == 30 and kw['logger'] == 'current'
    np.testing.assert_array_equal(ds.get_labels(), [-1, -1, -1])
    assert ds.metainfo == {}


def test_nothing_left_raises(tmp_path, media_dir):
    (tmp_path / 'bad.mp4').write_bytes(b'not a video')
    with pytest.raises(ValueError, match='no usable file'):
        AVClipDataset(data_root=str(tmp_path))


def test_sample_layout_and_modes(media_dir, logs):
    ds = _mixed(media_dir, mode='extract')
    s = ds[0]
    assert set(s) == {'video', 'audio', 'index', 'label'}
    assert s['video'].dtype == torch.uint8
    assert s['video'].shape == (3, 8, 24, 24)
    assert s['audio'].shape == (1, 40, 201) and s['audio'].dtype == \
        torch.float32
    assert s['index'] == 0 and s['label'] == -1
    # extract: the clip centred in the 6 s file (frames 26..33), no jitter
    again = ds[0]
    assert torch.equal(s['video'], again['video'])
    assert torch.equal(s['audio'], again['audio'])
    grey = s['video'].float().mean(dim=(0, 2, 3))
    assert ((grey - 20) / 3).round().long().tolist() == list(range(26, 34))
    # train: random starts differ between calls
    train = ds.with_mode('train')
    torch.manual_seed(0)
    starts = {int(train[1]['video'][:, 0].float().mean()) for _ in range(6)}
    assert len(starts) > 1


def test_with_mode_shares_the_list_without_probing(media_dir, logs,
                                                   monkeypatch):
    ds = _mixed(media_dir)

    def no_probe(path):
        raise AssertionError('with_mode must not probe')
    monkeypatch.setattr(dataset_module, 'probe', no_probe)
    ex = ds.with_mode('extract')
    assert ex.mode == 'extract' and ds.mode == 'train'
    assert ex.samples is ds.samples and ex.skipped is ds.skipped
    assert [ex.get_path(i) for i in range(len(ex))] == \
        [ds.get_path(i) for i in range(len(ds))]
    assert 'VideoFlip' not in repr(ex.pipeline)
    assert 'VideoFlip' in repr(ds.pipeline)


def test_truncated_file_raises_in_getitem(media_dir, logs):
    ds = _mixed(media_dir, mode='extract')
    with pytest.raises(DecodeError) as info:
        ds[2]
    assert info.value.kind == 'truncated'
    assert info.value.path.endswith('trunc_fast.mp4')


def test_csv_string_labels_and_build_from_config(tmp_path, media_dir, logs):
    ann = tmp_path / 'ann.csv'
    root = media_dir / 'mixed'
    with open(ann, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['path', 'kind'])
        w.writerows([['good2.mp4', 'zebra'], ['good1.mp4', 'ant'],
                     ['noaudio.mp4', 'ant'], ['good1.mp4', '']])
    ds = DATASETS.build(dict(type='AVClipDataset', ann_file=str(ann),
                             data_root=str(root), label_column='kind',
                             short_side=32, crop_size=24))
    assert isinstance(ds, AVClipDataset)
    assert ds.metainfo['classes'] == ('ant', 'zebra')
    np.testing.assert_array_equal(ds.get_labels(), [1, 0, -1])
    assert ds.get_labels().dtype == np.int64
    assert ds[0]['label'] == 1


def test_custom_pipeline_config(media_dir, logs):
    ds = _mixed(media_dir, pipeline=[
        dict(type='SampleClip', num_frames=4, random=False),
        dict(type='DecodeAVClip', num_frames=4, audio_duration=1.0),
        dict(type='PackAVInputs')])
    s = ds[1]
    assert s['video'].shape == (3, 4, 32, 32) and s['audio'].shape == \
        (1, 16000)


def test_avobjects_labels(avobjects_dir, logs):
    ds = AVClipDataset(osp.join(avobjects_dir, 'manifest.csv'),
                       label_column='coarse_label', mode='extract')
    assert len(ds) == 240 and not ds.skipped and not logs
    assert ds.metainfo['classes'] == ('animals', 'instrument', 'misc', 'toys')
    assert np.bincount(ds.get_labels()).tolist() == [74, 66, 29, 71]
    s = ds[10]
    assert s['video'].shape == (3, 8, 112, 112)
    assert s['audio'].shape == (1, 40, 201)
    assert s['label'] == ds.get_labels()[10]
