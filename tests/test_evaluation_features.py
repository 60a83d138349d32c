"""Per-file features: clip averaging, normalisation, skipped files counted,
audio-only datasets, one clip without a clip dimension."""
import numpy as np
import pytest
import torch

import xdc_plugin  # noqa: F401
from xdc_plugin.data.decode import DecodeError
from xdc_plugin.encoders import XDC_MEAN, XDC_STD
from xdc_plugin.evaluation.encoder_sources import load_encoders
from xdc_plugin.evaluation.features import extract_file_features


class FakeDataset:
    """Files with ``num_clips`` clips each; ``broken`` indices raise
    DecodeError or (``replace=True``, as ``AVClipDataset`` does) give the
    next file instead; ``skipped`` mimics files excluded at build."""

    def __init__(self, n=7, num_clips=3, broken=(2, 5), audio_only=False,
                 replace=False):
        self.n, self.num_clips, self.broken = n, num_clips, broken
        self.audio_only, self.replace = audio_only, replace
        self.skipped = [('gone.mp4', 'no_audio')]

    def get_data_info(self, index):
        return dict(path=f'file{index}.mp4')

    def __len__(self):
        return self.n

    def clips(self, index):
        g = torch.Generator().manual_seed(int(index))
        shape = (self.num_clips,) if self.num_clips > 1 else ()
        video = torch.randint(0, 256, shape + (3, 4, 16, 16), generator=g,
                              dtype=torch.uint8)
        audio = torch.randn(shape + (1, 20, 16), generator=g)
        return video, audio

    def __getitem__(self, index):
        if index in self.broken and self.replace:
            return self[(index + 1) % self.n]
        if index in self.broken:
            raise DecodeError(f'file{index}.mp4', 'bad packet', 'truncated')
        video, audio = self.clips(index)
        item = dict(audio=audio, label=index % 2, index=index)
        if not self.audio_only:
            item['video'] = video
        return item


@pytest.fixture(scope='module')
def encoders():
    # The smallest widths: these tests are about the bookkeeping.
    return load_encoders('random', 'both', cfg=dict(model=dict(
        video_encoder=dict(type='R2Plus1D18', width=1 / 16),
        audio_encoder=dict(type='AudioResNet18', width=1 / 16))))


def _expected(encoders, dataset, index):
    video, audio = dataset.clips(index)
    if dataset.num_clips == 1:
        video, audio = video[None], audio[None]
    mean = torch.tensor(XDC_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(XDC_STD).view(3, 1, 1, 1)
    with torch.no_grad():
        v = encoders.modules['video']((video.float() / 255 - mean) / std)
        a = encoders.modules['audio'](audio)
    return v.mean(0).numpy(), a.mean(0).numpy()


@pytest.mark.parametrize('num_workers,replace', [(0, False), (1, True)])
def test_features_are_clip_averages_and_bad_files_are_skipped(
        encoders, num_workers, replace):
    dataset = FakeDataset(replace=replace)
    result = extract_file_features(encoders, dataset, batch_size=2,
                                   num_workers=num_workers, progress=False)
    assert list(result.indices) == [0, 1, 3, 4, 6]
    assert result.paths == ['file0.mp4', 'file1.mp4', 'file3.mp4',
                            'file4.mp4', 'file6.mp4']
    assert list(result.labels) == [0, 1, 1, 0, 0]
    assert result.num_skipped == 3
    reason = 'undecodable' if replace else 'truncated'
    assert ('file2.mp4', reason) in result.skipped
    assert ('gone.mp4', 'no_audio') in result.skipped
    assert result.features['video'].shape == (5, 32)
    assert result.features['video'].dtype == np.float32
    for row, index in enumerate(result.indices):
        video, audio = _expected(encoders, dataset, index)
        np.testing.assert_allclose(result.features['video'][row], video,
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.features['audio'][row], audio,
                                   rtol=1e-4, atol=1e-5)


def test_audio_only_dataset_and_single_clip(encoders):
    dataset = FakeDataset(n=3, num_clips=1, broken=(), audio_only=True)
    result = extract_file_features(encoders, dataset, ['audio'],
                                   progress=False)
    assert set(result.features) == {'audio'}
    for row in range(3):
        _, audio = _expected(encoders, dataset, row)
        np.testing.assert_allclose(result.features['audio'][row], audio,
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match='video'):
        extract_file_features(encoders, dataset, ['video'], progress=False)


def test_nothing_decodable_is_a_clear_error(encoders):
    dataset = FakeDataset(n=2, broken=(0, 1))
    with pytest.raises(RuntimeError, match='no file could be decoded'):
        extract_file_features(encoders, dataset, progress=False)
