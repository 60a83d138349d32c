"""ESC-50 and DCASE2014 on tiny generated releases laid out like the real
ones: fold / split membership, class indices, errors, and a run end to
end."""
import csv
import os
import os.path as osp
import wave

import numpy as np
import pytest

from xdc_plugin.evaluation.audio_benchmarks import (DCASE2014_CLASSES,
                                                    ESC50_COLUMNS,
                                                    dcase2014_files,
                                                    esc50_files,
                                                    run_audio_benchmark)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = osp.join(REPO, 'configs', 'xdc_avobjects.yaml')
# Three classes with tones far apart, so that even random-init features
# separate them.
TONES = {0: 300.0, 1: 1200.0, 2: 4000.0}


def write_wav(path, freq, seconds, rate=44100, channels=1, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(size=t.shape) * 0.05
    signal = 0.4 * np.sin(2 * np.pi * freq * t) + noise
    samples = (np.repeat(signal[:, None], channels, 1) * 32767).astype('<i2')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with wave.open(str(path), 'wb') as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())


@pytest.fixture(scope='module')
def esc50_root(tmp_path_factory):
    """meta/esc50.csv + audio/<fold>-<src>-<take>-<target>.wav: 3 classes
    (targets 0, 1, 2), 5 folds, 2 clips per class per fold (30 clips)."""
    root = tmp_path_factory.mktemp('ESC-50-master')
    categories = {0: 'dog', 1: 'rooster', 2: 'pig'}
    rows = []
    for fold in range(1, 6):
        for target, category in categories.items():
            for take in 'AB':
                src = f'{100000 + fold * 10 + target}'
                name = f'{fold}-{src}-{take}-{target}.wav'
                write_wav(root / 'audio' / name, TONES[target], 2.5,
                          seed=len(rows))
                rows.append(dict(filename=name, fold=fold, target=target,
                                 category=category, esc10='False',
                                 src_file=src, take=take))
    os.makedirs(root / 'meta')
    with open(root / 'meta' / 'esc50.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=ESC50_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope='module')
def dcase_root(tmp_path_factory):
    """scenes_stereo/scenes_stereo/<class><NN>.wav (nested, as the zip
    unpacks) and scenes_stereo_testset/<class><NN>.wav, stereo 44.1 kHz:
    3 scenes, 4 training and 2 test recordings each."""
    root = tmp_path_factory.mktemp('dcase2013')
    scenes = {'bus': 0, 'office': 1, 'tubestation': 2}
    for scene, tone in scenes.items():
        for number in (1, 3, 7, 12):  # non-consecutive, as released
            write_wav(root / 'scenes_stereo' / 'scenes_stereo' /
                      f'{scene}{number:02d}.wav', TONES[tone], 3.0,
                      channels=2, seed=number)
        for number in (2, 5):
            write_wav(root / 'scenes_stereo_testset' /
                      f'{scene}{number:02d}.wav', TONES[tone], 3.0,
                      channels=2, seed=50 + number)
    return root


def test_esc50_folds_and_targets(esc50_root):
    files = esc50_files(str(esc50_root))
    assert len(files.paths) == 30
    assert files.classes == ('dog', 'rooster', 'pig')
    for path, label, fold in zip(files.paths, files.labels, files.fold_ids):
        fold_in_name, _, _, target = osp.basename(path)[:-4].split('-')
        assert int(fold_in_name) == fold and int(target) == label
        assert osp.isfile(path)
    assert sorted(set(files.fold_ids)) == [1, 2, 3, 4, 5]
    assert files.is_test is None


def test_esc50_layout_errors(tmp_path, esc50_root):
    with pytest.raises(FileNotFoundError, match='meta/esc50.csv'):
        esc50_files(str(tmp_path))
    os.makedirs(tmp_path / 'meta')
    (tmp_path / 'meta' / 'esc50.csv').write_text('filename,category\n')
    with pytest.raises(ValueError, match=r"\['fold', 'target'\]"):
        esc50_files(str(tmp_path))


def test_dcase_split_and_class_indices(dcase_root):
    files = dcase2014_files(str(dcase_root))
    assert len(files.paths) == 18 and files.is_test.sum() == 6
    assert files.classes == DCASE2014_CLASSES
    for path, label, test in zip(files.paths, files.labels, files.is_test):
        assert ('scenes_stereo_testset' in path) == test
        stem = osp.basename(path)[:-6]
        assert DCASE2014_CLASSES[label] == stem
    assert DCASE2014_CLASSES.index('tubestation') == 9
    assert set(files.labels) == {0, 2, 9}


def test_dcase_layout_errors(tmp_path, dcase_root):
    with pytest.raises(FileNotFoundError, match='scenes_stereo.zip'):
        dcase2014_files(str(tmp_path))
    write_wav(tmp_path / 'scenes_stereo' / 'bus01.wav', 300, 0.1)
    with pytest.raises(FileNotFoundError, match='scenes_stereo_testset'):
        dcase2014_files(str(tmp_path))
    write_wav(tmp_path / 'scenes_stereo_testset' / 'kitchen01.wav', 300, 0.1)
    with pytest.raises(ValueError, match='kitchen01.wav'):
        dcase2014_files(str(tmp_path))


def test_unknown_benchmark(esc50_root):
    with pytest.raises(ValueError, match='dcase2014'):
        run_audio_benchmark('urbansound8k', 'random', str(esc50_root))
