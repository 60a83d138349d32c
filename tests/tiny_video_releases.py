"""Tiny UCF101 and HMDB51 releases, laid out as the official archives
unpack: real class and file names, split files in the release's formats
(UCF101 with Windows line endings, HMDB51 with its trailing space), short
MPEG-4 Part 2 .avi videos (the releases' codec) whose colour is the class.
"""
import os

import av
import numpy as np

# Three real UCF101 classes; HandstandPushups keeps the release's
# v_HandStandPushups_* file names. Groups 1-7 are split 1's test set, 8-14
# split 2's, 15-21 split 3's; the rest are always training videos.
UCF101_CLASSES = ('ApplyEyeMakeup', 'Archery', 'HandstandPushups')
UCF101_FILE_CLASS = {'HandstandPushups': 'HandStandPushups'}
UCF101_GROUPS = (1, 8, 15, 22)
UCF101_TEST_GROUP = {1: 1, 2: 8, 3: 15}
# Three real HMDB51 classes (sorted: brush_hair, climb_stairs, sword), real
# style file names, special characters included.
HMDB51_VIDEOS = {
    'sword': ('Blade_Of_Fury_-_Scene_1_sword_f_cm_np3_ri_med_0.avi',
              'Fencing_Demo_(2)_sword_u_cm_np2_le_goo_1.avi',
              'Kill_Bill_Vol_2_sword_f_nm_np2_fr_bad_4.avi',
              'Sword_Fight_Practice_sword_f_cm_np2_ba_med_2.avi'),
    'brush_hair': (
        'April_09_brush_hair_u_nm_np1_ba_goo_0.avi',
        'Brushing_Her_Hair__[_NEW_AUDIO_]_UPDATED!!!!_brush_hair_h_cm_np1_le_'
        'goo_1.avi',
        'Haarek_mmen_brush_hair_h_cm_np1_fr_goo_0.avi',
        'My_Hair_Routine_brush_hair_h_nm_np1_le_goo_0.avi'),
    'climb_stairs': ('Bobby_Climbing_climb_stairs_f_cm_np1_fr_med_0.avi',
                     'Stairs_Workout!_climb_stairs_f_cm_np1_ba_med_1.avi',
                     'Walking_Up_climb_stairs_l_nm_np1_le_goo_3.avi',
                     'climbing_the_stairs_climb_stairs_f_nm_np1_fr_goo_2.avi'),
}
# Video i of a class is marked MARKERS[split][i] in <class>_test_split<N>:
# 1 train, 2 test, 0 unused.
HMDB51_MARKERS = {1: (1, 1, 2, 0), 2: (2, 0, 1, 1), 3: (1, 2, 0, 1)}
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))

# --cfg-options for tiny runs of configs/benchmarks: width-0.25 backbone,
# 32x32 crops, no workers, no validation during training.
SMALL_RUN = [
    'model.backbone.width=0.25', 'train_cfg.max_epochs=1',
    'train_dataloader.batch_size=5', 'train_cfg.val_begin=100',
    'train_dataloader.dataset.pipeline.4.size=32',
    'val_dataloader.dataset.pipeline.4.crop_size=32',
    'test_dataloader.dataset.pipeline.4.crop_size=32'] + [
        f'{loader}_dataloader.{key}' for loader in ('train', 'val', 'test')
        for key in ('num_workers=0', 'dataset.pipeline.3.scale=[-1, 36]')]


def noisy_frames(colour, num_frames=16, size=(48, 36), seed=0):
    """``(T, H, W, 3)`` uint8 frames of noise around ``colour``."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-25, 26, (num_frames, size[1], size[0], 3))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


def write_avi(path, frames, fps=25):
    """An MPEG-4 Part 2 .avi with B-frames (the codec of both releases)."""
    with av.open(str(path), 'w', format='avi') as container:
        stream = container.add_stream('mpeg4', rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = 'yuv420p'
        stream.codec_context.max_b_frames = 2
        for image in frames:
            for packet in stream.encode(
                    av.VideoFrame.from_ndarray(image, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _crlf(lines):
    return ''.join(f'{line}\r\n' for line in lines).encode()


def ucf101_file(cls, group, clip=1):
    return (f'{cls}/v_{UCF101_FILE_CLASS.get(cls, cls)}_g{group:02d}_'
            f'c{clip:02d}.avi')


def make_ucf101(root):
    """``root/UCF-101/<Class>/*.avi`` and ``root/ucfTrainTestlist/``;
    returns ``{split: (train paths, test paths)}``."""
    lists = root / 'ucfTrainTestlist'
    lists.mkdir(parents=True)
    (lists / 'classInd.txt').write_bytes(
        _crlf(f'{i} {c}' for i, c in enumerate(UCF101_CLASSES, 1)))
    expected = {}
    for label, cls in enumerate(UCF101_CLASSES):
        (root / 'UCF-101' / cls).mkdir(parents=True)
        for group in UCF101_GROUPS:
            write_avi(root / 'UCF-101' / ucf101_file(cls, group),
                      noisy_frames(COLOURS[label], seed=group))
    for split, test_group in UCF101_TEST_GROUP.items():
        train = [(ucf101_file(c, g), i) for i, c in enumerate(UCF101_CLASSES)
                 for g in UCF101_GROUPS if g != test_group]
        test = [(ucf101_file(c, test_group), i)
                for i, c in enumerate(UCF101_CLASSES)]
        (lists / f'trainlist{split:02d}.txt').write_bytes(
            _crlf(f'{p} {i + 1}' for p, i in train))
        (lists / f'testlist{split:02d}.txt').write_bytes(
            _crlf(p for p, _ in test))
        expected[split] = (train, test)
    return expected


def make_hmdb51(root):
    """``root/<class>/*.avi`` (the per-class .rar files unpacked in place)
    and ``root/testTrainMulti_7030_splits/``; returns ``{split: (train,
    test)}`` entries with sorted-class indices."""
    splits = root / 'testTrainMulti_7030_splits'
    splits.mkdir(parents=True)
    expected = {split: ([], []) for split in HMDB51_MARKERS}
    for label, cls in enumerate(sorted(HMDB51_VIDEOS)):
        (root / cls).mkdir()
        for i, name in enumerate(HMDB51_VIDEOS[cls]):
            write_avi(root / cls / name, noisy_frames(COLOURS[label], seed=i))
        for split, markers in HMDB51_MARKERS.items():
            lines = [f'{name} {marker} \n'
                     for name, marker in zip(HMDB51_VIDEOS[cls], markers)]
            (splits / f'{cls}_test_split{split}.txt').write_text(
                ''.join(lines))
            for name, marker in zip(HMDB51_VIDEOS[cls], markers):
                if marker:
                    expected[split][marker - 1].append((f'{cls}/{name}',
                                                        label))
    return expected


def make_release(dataset, root):
    os.makedirs(root, exist_ok=True)
    return {'ucf101': make_ucf101, 'hmdb51': make_hmdb51}[dataset](root)
