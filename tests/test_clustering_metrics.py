"""cluster_quality: NMI, ARI and purity on hand-computed examples."""
import math

import numpy as np
import pytest
import torch

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import cluster_quality

PRED = [0, 0, 0, 1, 1, 2]
TARGET = [0, 0, 1, 1, 1, 2]


def nmi_by_hand(pred, target):
    """Mutual information over the arithmetic mean of the entropies."""
    n = len(pred)
    joint = {}
    for p, t in zip(pred, target):
        joint[p, t] = joint.get((p, t), 0) + 1
    pu = {p: pred.count(p) / n for p in set(pred)}
    pv = {t: target.count(t) / n for t in set(target)}
    mi = sum(c / n * math.log((c / n) / (pu[p] * pv[t]))
             for (p, t), c in joint.items())
    hu = -sum(q * math.log(q) for q in pu.values())
    hv = -sum(q * math.log(q) for q in pv.values())
    return mi / ((hu + hv) / 2)


def test_hand_computed_example():
    q = cluster_quality(PRED, TARGET)
    # Majorities: cluster 0 -> 2 (class 0), 1 -> 2, 2 -> 1; 5 of 6.
    assert q['purity'] == pytest.approx(5 / 6)
    # ARI: sum C(n_ij, 2) = 2, rows 4, columns 4, C(6, 2) = 15.
    expected_index = 4 * 4 / 15
    assert q['ari'] == pytest.approx((2 - expected_index) /
                                     (4 - expected_index))
    assert q['ari'] == pytest.approx(14 / 44)
    assert q['nmi'] == pytest.approx(nmi_by_hand(PRED, TARGET))
    assert set(q) == {'nmi', 'ari', 'purity'}


def test_unlabelled_entries_are_ignored():
    pred = PRED + [2, 2, 0, 7]
    target = TARGET + [-1, -1, -1, -1]
    assert cluster_quality(pred, target) == cluster_quality(PRED, TARGET)
    assert cluster_quality(np.array(pred), torch.tensor(target)) == \
        cluster_quality(PRED, TARGET)


def test_perfect_and_permuted_labelings():
    target = np.repeat(np.arange(5), 20)
    permuted = np.array([3, 0, 4, 1, 2])[target] + 10
    for pred in (target, permuted):
        q = cluster_quality(pred, target)
        assert q['nmi'] == pytest.approx(1.0)
        assert q['ari'] == pytest.approx(1.0)
        assert q['purity'] == 1.0


def test_purity_of_degenerate_clusterings():
    target = np.array([0] * 30 + [1] * 70)
    single = cluster_quality(np.zeros(100, int), target)
    assert single['purity'] == pytest.approx(0.7)
    assert single['nmi'] == pytest.approx(0.0)
    assert single['ari'] == pytest.approx(0.0)
    # One point per cluster is trivially pure.
    assert cluster_quality(np.arange(100), target)['purity'] == 1.0


def test_errors():
    with pytest.raises(ValueError, match='length'):
        cluster_quality([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match='every target is -1'):
        cluster_quality([0, 1], [-1, -1])
    with pytest.raises(ValueError, match='integer'):
        cluster_quality([0.5, 1], [0, 1])
    with pytest.raises(ValueError, match='1-D'):
        cluster_quality(np.zeros((2, 2), int), np.zeros((2, 2), int))
