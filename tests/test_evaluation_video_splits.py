"""xdc_plugin/evaluation/video_splits.py: official UCF101 / HMDB51 split
files -> mmaction2 annotation files, on tiny releases laid out like the real
ones (tests/tiny_video_releases.py)."""
import logging
import os
import shutil

import pytest
from tiny_video_releases import (HMDB51_VIDEOS, UCF101_CLASSES, make_release,
                                 ucf101_file)

from xdc_plugin.evaluation import video_splits
from xdc_plugin.evaluation.video_splits import (MissingVideosError,
                                                SplitFormatError,
                                                convert_split, find_release,
                                                read_split)


@pytest.fixture(scope='module')
def releases(tmp_path_factory):
    """``{dataset: (root, {split: (train, test)})}``, read-only."""
    base = tmp_path_factory.mktemp('releases')
    return {d: (base / d, make_release(d, base / d))
            for d in ('ucf101', 'hmdb51')}


@pytest.fixture
def release_copy(releases, tmp_path):
    def copy(dataset):
        root = tmp_path / dataset
        shutil.copytree(releases[dataset][0], root)
        return root
    return copy


def _lines(path):
    with open(path, newline='') as f:
        return f.read().split('\n')


def test_ucf101_classind_order_and_group_splits(releases, tmp_path):
    root, expected = releases['ucf101']
    # The release's split files have Windows line endings.
    assert b'1 ApplyEyeMakeup\r\n' in (
        root / 'ucfTrainTestlist' / 'classInd.txt').read_bytes()
    layout = find_release('ucf101', str(root))
    assert layout.split_dir == str(root / 'ucfTrainTestlist')
    assert layout.video_dir == str(root / 'UCF-101')
    for split in (1, 2, 3):
        video_split = read_split('ucf101', layout.split_dir, split)
        assert video_split.classes == UCF101_CLASSES
        assert list(video_split.train) == expected[split][0]
        assert list(video_split.test) == expected[split][1]
    # Split 2 tests group 8 and trains on 1, 15 and 22 (3 classes each).
    paths = convert_split('ucf101', str(root), str(tmp_path), 2)
    assert (paths['num_classes'], paths['num_train'],
            paths['num_test']) == (3, 9, 3)
    assert _lines(paths['test']) == [
        'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0',
        'Archery/v_Archery_g08_c01.avi 1',
        'HandstandPushups/v_HandStandPushups_g08_c01.avi 2', '']
    train = _lines(paths['train'])
    assert 'HandstandPushups/v_HandStandPushups_g22_c01.avi 2' in train
    assert not any('_g08_' in line for line in train)
    assert _lines(paths['classes']) == list(UCF101_CLASSES) + ['']
    assert os.path.basename(paths['train']) == (
        'ucf101_train_split_2_videos.txt')
    assert os.path.basename(paths['test']) == 'ucf101_val_split_2_videos.txt'


def test_hmdb51_sorted_classes_and_markers(releases, tmp_path):
    root, expected = releases['hmdb51']
    layout = find_release('hmdb51', str(root))
    assert layout.split_dir == str(root / 'testTrainMulti_7030_splits')
    assert layout.video_dir == str(root)
    for split in (1, 2, 3):
        video_split = read_split('hmdb51', layout.split_dir, split)
        assert video_split.classes == ('brush_hair', 'climb_stairs', 'sword')
        assert list(video_split.train) == expected[split][0]
        assert list(video_split.test) == expected[split][1]
    # Split 1 marks the videos 1 1 2 0: 2 train, 1 test, 1 unused per class.
    paths = convert_split('hmdb51', str(root), str(tmp_path), 1)
    assert (paths['num_train'], paths['num_test']) == (6, 3)
    train = _lines(paths['train'])
    assert ('brush_hair/Brushing_Her_Hair__[_NEW_AUDIO_]_UPDATED!!!!_'
            'brush_hair_h_cm_np1_le_goo_1.avi 0') in train
    assert 'sword/Fencing_Demo_(2)_sword_u_cm_np2_le_goo_1.avi 2' in train
    assert _lines(paths['test'])[1] == (
        'climb_stairs/Walking_Up_climb_stairs_l_nm_np1_le_goo_3.avi 1')
    unused = HMDB51_VIDEOS['sword'][3]
    assert not any(unused in line for line in train + _lines(paths['test']))


def test_mmaction2_layout_is_found(release_copy):
    root = release_copy('ucf101')
    (root / 'ucfTrainTestlist').rename(root / 'annotations')
    (root / 'UCF-101').rename(root / 'videos')
    layout = find_release('ucf101', str(root))
    assert (layout.split_dir, layout.video_dir) == (
        str(root / 'annotations'), str(root / 'videos'))
    shutil.rmtree(root / 'videos')
    with pytest.raises(FileNotFoundError,
                       match="No ucf101 class folder 'ApplyEyeMakeup'"):
        find_release('ucf101', str(root))


def test_missing_split_files_are_named(release_copy):
    root = release_copy('ucf101')
    (root / 'ucfTrainTestlist' / 'testlist02.txt').unlink()
    assert read_split('ucf101', str(root / 'ucfTrainTestlist'), 1).test
    with pytest.raises(FileNotFoundError, match=r'testlist02\.txt'):
        read_split('ucf101', str(root / 'ucfTrainTestlist'), 2)
    root = release_copy('hmdb51')
    splits = root / 'testTrainMulti_7030_splits'
    (splits / 'sword_test_split3.txt').unlink()
    with pytest.raises(FileNotFoundError,
                       match=r'no sword_test_split3\.txt: split 3 lacks 1 '
                       r'of the 3 classes'):
        read_split('hmdb51', str(splits), 3)
    with pytest.raises(FileNotFoundError, match='none of the ucf101 split'):
        find_release('ucf101', str(root))


def test_missing_videos_error_or_logged_skip(release_copy, tmp_path,
                                             monkeypatch):
    root = release_copy('ucf101')
    gone = [ucf101_file('Archery', 22), ucf101_file('HandstandPushups', 8)]
    for path in gone:
        (root / 'UCF-101' / path).unlink()
    out = tmp_path / 'ann'
    with pytest.raises(MissingVideosError) as error:
        convert_split('ucf101', str(root), str(out), 2)
    message = str(error.value)
    assert '2 of 12 listed videos are not in' in message
    assert all(path in message for path in gone)
    assert '--skip-missing' in message
    assert not out.exists()
    logged = []
    monkeypatch.setattr(video_splits, 'print_log',
                        lambda msg, **kwargs: logged.append((msg, kwargs)))
    paths = convert_split('ucf101', str(root), str(out), 2, skip_missing=True)
    [(message, kwargs)] = logged
    assert kwargs['level'] == logging.WARNING
    assert '2 of 12 listed videos' in message and 'skipped' in message
    assert (paths['num_train'], paths['num_test']) == (8, 2)
    assert not any('g22' in line and 'Archery' in line
                   for line in _lines(paths['train']))


def test_unknown_class_and_bad_lines_are_refused(release_copy):
    root = release_copy('ucf101')
    lists = root / 'ucfTrainTestlist'
    (lists / 'testlist03.txt').write_bytes(
        b'Archery/v_Archery_g15_c01.avi\r\nYoYo/v_YoYo_g15_c01.avi\r\n')
    with pytest.raises(SplitFormatError,
                       match=r"testlist03\.txt:2: unknown class 'YoYo'"):
        read_split('ucf101', str(lists), 3)
    (lists / 'trainlist01.txt').write_bytes(
        b'Archery/v_Archery_g08_c01.avi 1\r\n')
    with pytest.raises(SplitFormatError,
                       match=r"label 1 but classInd\.txt gives 'Archery' the "
                       r'index 2'):
        read_split('ucf101', str(lists), 1)
    root = release_copy('hmdb51')
    split_file = root / 'testTrainMulti_7030_splits' / 'sword_test_split2.txt'
    split_file.write_text(split_file.read_text() + 'extra.avi 3 \n')
    with pytest.raises(SplitFormatError,
                       match=r'sword_test_split2\.txt:5: expected'):
        read_split('hmdb51', str(split_file.parent), 2)


def test_unchanged_annotation_files_are_not_rewritten(releases, tmp_path):
    root, _ = releases['hmdb51']
    first = convert_split('hmdb51', str(root), str(tmp_path), 3)
    stamp = os.stat(first['train']).st_mtime_ns
    os.utime(first['train'], ns=(stamp - 10**9, stamp - 10**9))
    again = convert_split('hmdb51', str(root), str(tmp_path), 3)
    assert again == first
    assert os.stat(first['train']).st_mtime_ns == stamp - 10**9
