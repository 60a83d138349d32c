"""The per-round probe on the hook's features: scalars per modality, unseen
and unlabelled rows ignored, unusable labels skipped (never raised)."""
import numpy as np
import pytest
import torch

from xdc_plugin.probe.round_probe import probe_round


def _features(n=90, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    informative = np.eye(3)[labels] * 4 + rng.normal(size=(n, 3)) * 0.2
    noise = rng.normal(size=(n, 3))
    return {'video': torch.from_numpy(informative).float(),
            'audio': noise}, labels


def test_scalars_follow_the_information_in_each_modality():
    features, labels = _features()
    scalars = probe_round(features, labels, folds=3)
    assert set(scalars) == {'video_linear_top1', 'video_knn_top1',
                            'audio_linear_top1', 'audio_knn_top1'}
    assert scalars['video_linear_top1'] > 0.95
    assert scalars['video_knn_top1'] > 0.95
    # Pure noise: near chance (1/3; 90 rows, so +- 0.2 is > 4 std).
    assert abs(scalars['audio_linear_top1'] - 1 / 3) < 0.2
    assert abs(scalars['audio_knn_top1'] - 1 / 3) < 0.2


def test_unseen_rows_are_ignored_and_samples_capped():
    features, labels = _features()
    seen = np.ones(90, bool)
    seen[:30] = False
    # Unseen rows hold garbage features; they must not count.
    features['video'][:30] = torch.randn(30, 3) * 100
    scalars = probe_round(features, labels, seen=seen, folds=3,
                          protocols=('knn',), max_samples=45)
    assert set(scalars) == {'video_knn_top1', 'audio_knn_top1'}
    assert scalars['video_knn_top1'] > 0.95


@pytest.mark.parametrize('labels', [np.full(90, -1), np.zeros(90, int),
                                    np.r_[np.zeros(89, int), 1]])
def test_unusable_labels_give_no_scalars(labels, caplog):
    features, _ = _features()
    with caplog.at_level('WARNING'):
        assert probe_round(features, labels) == {}
    assert 'per-round probe skipped' in caplog.text


def test_small_classes_reduce_the_folds():
    features, labels = _features(n=9)  # 3 per class, 5 folds asked
    scalars = probe_round(features, labels, folds=5, protocols=('knn',))
    assert scalars['video_knn_top1'] == 1.0
