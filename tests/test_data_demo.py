import csv
import os
import os.path as osp
from collections import Counter

import numpy as np
import pytest
import torch

import xdc_plugin.data.demo as demo
from xdc_plugin.data.decode import decode_clip, probe

SMALL = dict(num_classes=4, clips_per_class=6, duration=1.0, size=32, fps=10,
             progress=False)


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    return root, demo.make_demo_dataset(str(root), **SMALL)


def _rows(manifest):
    with open(manifest) as f:
        return list(csv.DictReader(f))


def test_manifest_balanced_and_files_decode(small_set):
    root, manifest = small_set
    rows = _rows(manifest)
    assert len(rows) == 24
    assert set(Counter(r['label'] for r in rows).values()) == {6}
    assert len({r['label'] for r in rows}) == 4
    for r in rows:
        path = osp.join(root, r['path'])
        info = probe(path)
        assert info.has_audio and info.audio_sample_rate == 16000
        assert (info.width, info.height, info.fps) == (32, 32, 10)
        assert info.duration == pytest.approx(1.0, abs=0.1)
        video, audio = decode_clip(path, 0.0, 8, None, 1.0)
        assert video.shape == (8, 32, 32, 3)
        assert audio.shape == (1, 16000) and audio.abs().max() > 0.02


def test_deterministic(small_set, tmp_path):
    root, manifest = small_set
    other = demo.make_demo_dataset(str(tmp_path), **SMALL)
    assert open(manifest).read() == open(other).read()
    first = _rows(manifest)[0]['path']
    a = decode_clip(osp.join(root, first), 0.0, 4, None, 1.0)
    b = decode_clip(osp.join(tmp_path, first), 0.0, 4, None, 1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = demo.make_demo_dataset(str(tmp_path / 'seed1'), seed=1, **SMALL)
    d = decode_clip(osp.join(osp.dirname(c), first), 0.0, 4, None, 1.0)
    assert not torch.equal(a[0], d[0])


def test_idempotent(small_set, monkeypatch):
    root, manifest = small_set
    mtime = os.stat(manifest).st_mtime_ns

    def fail(*a, **k):
        raise AssertionError('regenerated a complete set')
    monkeypatch.setattr(demo, 'write_mp4', fail)
    assert demo.make_demo_dataset(str(root), **SMALL) == manifest
    assert os.stat(manifest).st_mtime_ns == mtime
    # different arguments or no marker: generation runs again
    with pytest.raises(AssertionError, match='regenerated'):
        demo.make_demo_dataset(str(root), **dict(SMALL, seed=5))
    assert not osp.exists(osp.join(root, '.complete'))


def test_mean_colour_is_a_weak_class_cue(tmp_path):
    """The mean colour of a clip, what random features mostly see, predicts
    the class only weakly (the object's hue is the class's but the larger
    background is random): leave-one-out nearest class mean on the mean
    RGB."""
    manifest = demo.make_demo_dataset(
        str(tmp_path), num_classes=4, clips_per_class=10, duration=0.5,
        size=32, fps=10, progress=False)
    rows = _rows(manifest)
    feats = np.stack([
        decode_clip(osp.join(tmp_path, r['path']), 0.0, 2, None, None)[0]
        .float().mean(dim=(0, 1, 2)).numpy() for r in rows])
    labels = np.array([r['label'] for r in rows])
    hits = 0
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        classes = sorted(set(labels))
        means = [feats[keep & (labels == c)].mean(0) for c in classes]
        pred = classes[int(np.argmin([np.linalg.norm(feats[i] - m)
                                      for m in means]))]
        hits += pred == labels[i]
    assert hits / len(rows) < 0.5  # chance is 0.25


def test_cli(tmp_path, capsys):
    import sys
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'tools'))
    try:
        import make_demo_data
    finally:
        sys.path.pop(0)
    out = make_demo_data.main(['--out', str(tmp_path), '--num-classes', '2',
                               '--clips-per-class', '2', '--duration', '1',
                               '--size', '32', '--quiet'])
    assert len(_rows(out)) == 4 and 'ready' in capsys.readouterr().out


def test_the_demo_dataset_makes_itself_on_first_use(tmp_path, monkeypatch):
    from xdc_plugin.registry import DATASETS
    cfg = dict(type='DemoAVDataset', data_root=str(tmp_path / 'demo'),
               generate=SMALL, check_cache=False, pipeline=[
                   dict(type='SampleClip', num_frames=4, mode='center'),
                   dict(type='DecodeAVClip', audio_duration=1.0),
                   dict(type='PackAVInputs')])
    ds = DATASETS.build(cfg)
    assert len(ds) == 24 and len(ds.metainfo['classes']) == 4
    assert np.bincount(ds.get_labels()).tolist() == [6, 6, 6, 6]
    assert ds[5]['video'].shape == (3, 4, 32, 32)

    def fail(*a, **k):
        raise AssertionError('regenerated a complete set')
    monkeypatch.setattr(demo, 'write_mp4', fail)
    assert len(DATASETS.build(cfg)) == 24
