"""PseudoClassBalancedSampler: DefaultSampler fallback, balance, epochs,
ranks."""
import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.dataset import sampler as mm_sampler

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import PseudoClassBalancedSampler
from xdc_plugin.registry import DATA_SAMPLERS

SIZES = [2000, 700, 250, 50]  # classes 0..3, plus 100 unlabelled


def unbalanced_labels(seed=0):
    labels = np.concatenate([np.full(s, c) for c, s in enumerate(SIZES)] +
                            [np.full(100, -1)])
    return np.random.default_rng(seed).permutation(labels)


def at_rank(monkeypatch, rank, world_size, **kwargs):
    monkeypatch.setattr(mm_sampler, 'get_dist_info',
                        lambda: (rank, world_size))
    return PseudoClassBalancedSampler(balance_by='video', **kwargs)


@pytest.mark.parametrize('shuffle', [True, False])
@pytest.mark.parametrize('round_up', [True, False])
@pytest.mark.parametrize('rank', [0, 2])
def test_without_labels_matches_default_sampler(monkeypatch, shuffle,
                                                round_up, rank):
    dataset = list(range(103))
    ours = at_rank(monkeypatch, rank, 3, dataset=dataset, shuffle=shuffle,
                   seed=5, round_up=round_up)
    theirs = DefaultSampler(dataset, shuffle=shuffle, seed=5,
                            round_up=round_up)
    assert isinstance(ours, DefaultSampler)
    for epoch in (0, 4):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs) == len(list(ours))


def test_classes_are_balanced_and_unlabelled_never_drawn():
    labels = unbalanced_labels()
    sampler = PseudoClassBalancedSampler(list(range(len(labels))),
                                         balance_by='video', seed=0)
    sampler.set_pseudo_labels({'video': labels})
    assert sampler.num_classes == 4
    drawn = np.array(list(sampler))
    assert len(drawn) == len(labels) == 3100
    assert (labels[drawn] >= 0).all()
    per_class = np.bincount(labels[drawn], minlength=4)
    assert per_class.max() - per_class.min() <= 1  # 775 each
    assert per_class.sum() == 3100
    # Uniform within a class: the 50 members of class 3 share 775 draws
    # (15 or 16 each); class 0 (2000 members, 775 draws) repeats none.
    small = np.bincount(drawn[labels[drawn] == 3], minlength=len(labels))
    assert set(small[labels == 3]) <= {15, 16}
    big = drawn[labels[drawn] == 0]
    assert len(np.unique(big)) == len(big)


def test_within_class_draws_cover_members_uniformly_over_epochs():
    labels = unbalanced_labels()
    sampler = PseudoClassBalancedSampler(list(range(len(labels))),
                                         balance_by='video', seed=1)
    sampler.set_pseudo_labels({'video': labels})
    hits = np.zeros(len(labels))
    epochs = 40
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        hits += np.bincount(list(sampler), minlength=len(labels))
    big = hits[labels == 0]  # expected 775 * 40 / 2000 = 15.5 per member
    assert big.mean() == pytest.approx(15.5, rel=0.01)
    # Counts are Hypergeometric-like per epoch: std well under sqrt(15.5).
    assert big.std() < 4 and big.min() > 3


def test_deterministic_per_epoch_and_different_across_epochs():
    labels = unbalanced_labels()
    a = PseudoClassBalancedSampler(list(range(len(labels))),
                                   balance_by='video', seed=3)
    b = PseudoClassBalancedSampler(list(range(len(labels))),
                                   balance_by='video', seed=3)
    a.set_pseudo_labels({'video': labels})
    b.set_pseudo_labels({'video': torch.from_numpy(labels)})
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert list(a) == list(a)
    b.set_epoch(3)
    assert list(a) != list(b)


@pytest.mark.parametrize('round_up', [True, False])
def test_two_ranks_split_the_same_global_list(monkeypatch, round_up):
    labels = unbalanced_labels()[:1001]
    dataset = list(range(1001))
    shards = []
    for rank in range(2):
        sampler = at_rank(monkeypatch, rank, 2, dataset=dataset, seed=11,
                          round_up=round_up)
        sampler.set_pseudo_labels({'video': labels})
        sampler.set_epoch(6)
        global_list = sampler.global_indices()
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    expected = global_list + global_list[:1] if round_up else global_list
    assert len(shards[0]) == 501
    assert len(shards[1]) == (501 if round_up else 500)
    interleaved = [None] * (len(shards[0]) + len(shards[1]))
    interleaved[0::2] = shards[0]
    interleaved[1::2] = shards[1]
    assert interleaved == expected


def test_shuffle_false_groups_by_class():
    labels = unbalanced_labels()
    sampler = PseudoClassBalancedSampler(list(range(len(labels))),
                                         balance_by='video', shuffle=False,
                                         seed=0)
    sampler.set_pseudo_labels({'video': labels})
    classes = labels[list(sampler)]
    assert np.all(np.diff(classes) >= 0)


def test_set_pseudo_labels_validation():
    dataset = list(range(10))
    sampler = PseudoClassBalancedSampler(dataset, balance_by='audio', seed=0)
    with pytest.raises(ValueError, match='shape'):
        sampler.set_pseudo_labels({'audio': np.zeros(9, int)})
    with pytest.raises(ValueError, match='every pseudo-label is -1'):
        sampler.set_pseudo_labels({'audio': np.full(10, -1)})
    for wrong in (-2, 2**31):  # out of int32 labels' range
        with pytest.raises(ValueError, match=r'in \[-1, 2\*\*31\)'):
            sampler.set_pseudo_labels({'audio': np.full(10, wrong)})
    with pytest.raises(ValueError, match='integers'):
        sampler.set_pseudo_labels({'audio': np.zeros(10)})
    # The dict the model takes: the sampler uses its own source.
    sampler.set_pseudo_labels({'video': np.zeros(10, int),
                               'audio': np.array([0] * 9 + [1])})
    assert sampler.pseudo_labels.dtype == np.int32
    assert np.bincount(np.array([0] * 9 + [1])[list(sampler)]).tolist() == \
        [5, 5]
    with pytest.raises(ValueError, match=r"balance_by='audio'.*\['video'\]"):
        sampler.set_pseudo_labels({'video': np.zeros(10, int)})
    with pytest.raises(ValueError, match='balance_by must be one of'):
        PseudoClassBalancedSampler(dataset, balance_by='vidoe')
    with pytest.raises(RuntimeError, match='needs pseudo-labels'):
        PseudoClassBalancedSampler(dataset, balance_by='audio'
                                   ).global_indices()


def test_built_from_registry():
    sampler = DATA_SAMPLERS.build(
        dict(type='xdc.PseudoClassBalancedSampler', dataset=list(range(7)),
             balance_by='joint', seed=0))
    assert isinstance(sampler, PseudoClassBalancedSampler)
    assert sorted(sampler) == list(range(7))
