"""Linear and kNN protocols on feature arrays: planted structure, chance,
hand-computed kNN/recall, splits and label errors."""
import numpy as np
import pytest

from xdc_plugin.probe.protocols import (LabelError, evaluate_features,
                                        knn_probe, linear_probe,
                                        predefined_splits, stratified_splits)
from xdc_plugin.probe.records import format_table


def _planted(n=300, dim=32, classes=3, seed=0):
    """Classes apart in 2 dimensions (unit-scale centres, noise 0.1) among
    pure-noise dimensions 30 times larger, which standardisation tames."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.normal(size=(n, dim)) * 30
    centres = rng.normal(size=(classes, 2))
    x[:, :2] = centres[labels] + rng.normal(size=(n, 2)) * 0.1
    return x, labels


def test_planted_linear_structure_is_recovered():
    x, labels = _planted()
    splits = stratified_splits(labels, 5)
    result = linear_probe(x, labels, splits)
    assert len(result['top1']) == 5
    assert min(result['top1']) >= 0.95
    # The inner cross-validation chose a C per split, from the grid.
    assert len(result['C']) == 5 and all(c > 0 for c in result['C'])


def test_shuffled_labels_give_chance():
    x, labels = _planted()
    shuffled = np.random.default_rng(1).permutation(labels)
    records = evaluate_features({'video': x}, shuffled, ('linear', 'knn'),
                                folds=5)
    # Labels independent of the features: each of the 300 test predictions
    # is right with probability 1/3, so the accuracy over them has standard
    # deviation sqrt(1/3 * 2/3 / 300) = 0.027; 4 of those (0.11) is a
    # tolerance that a correct protocol exceeds with probability < 1e-4,
    # while any leak of test labels into training would push it far out.
    for record in records:
        if record['metric'] in ('top1', 'knn@1', 'knn@10'):
            assert abs(record['accuracy'] - 1 / 3) < 0.11, record


def test_knn_and_recall_on_a_hand_computed_case():
    # Unit vectors at these angles (degrees); labels A=0, B=1, C=2.
    train_deg, train_lab = [0, 10, 20, 90, 100, 180], [0, 0, 0, 1, 1, 2]
    test_deg, test_lab = [3, 85, 175], [0, 0, 2]
    angles = np.radians(train_deg + test_deg)
    x = np.stack([np.cos(angles), np.sin(angles)], 1) * 5  # any norm
    labels = np.array(train_lab + test_lab)
    split = [(np.arange(6), np.arange(6, 9))]
    result = knn_probe(x, labels, split, ks=(1, 3), recall_ks=(1, 3))
    # 3 deg -> 0 (A) right; 85 -> 90 (B) wrong; 175 -> 180 (C) right.
    assert result['knn@1'] == [pytest.approx(2 / 3)]
    # k=3: 3 -> A,A,A right; 85 -> B,B,A wrong; 175 -> C,B,B wrong.
    assert result['knn@3'] == [pytest.approx(1 / 3)]
    assert result['recall@1'] == [pytest.approx(2 / 3)]
    # 85's third neighbour (20 deg) is an A: every query hits within 3.
    assert result['recall@3'] == [pytest.approx(1.0)]


def test_knn_vote_tie_goes_to_the_closer_class():
    angles = np.radians([0, 50, 60, 100, 180, 10])
    x = np.stack([np.cos(angles), np.sin(angles)], 1)
    labels = np.array([0, 0, 1, 1, 2, 1])
    # Query 10 deg, k=4 -> two A (0, 50) and two B (60, 100): A is closer.
    split = [(np.arange(5), np.array([5]))]
    assert knn_probe(x, labels, split, ks=(4,), recall_ks=())[
        'knn@4'] == [0.0]


def test_records_unlabelled_rows_and_splits():
    x, labels = _planted(n=60)
    labels = labels.copy()
    labels[:6] = -1
    records = evaluate_features({'video': x, 'audio': x[:, ::-1]}, labels,
                                ('linear', 'knn'), folds=3, encoder='random')
    metrics = [(r['protocol'], r['modality'], r['metric']) for r in records]
    assert metrics[:2] == [('linear', 'video', 'top1'),
                           ('linear', 'audio', 'top1')]
    assert ('knn', 'audio', 'recall@10') in metrics
    assert len(records) == 2 + 2 * 5
    for record in records:
        assert record['num_samples'] == 54 and record['num_unlabelled'] == 6
        assert len(record['folds']) == 3 and record['encoder'] == 'random'
        assert record['accuracy'] == pytest.approx(np.mean(record['folds']))
        assert record['std'] == pytest.approx(np.std(record['folds']))
    assert '| linear | video | top1 |' in format_table(records)
    # A given train/test split: one score, std 0.
    is_test = np.arange(60) % 4 == 0
    (record,) = evaluate_features({'video': x}, labels, ('linear',),
                                  is_test=is_test)
    assert len(record['folds']) == 1 and record['std'] == 0
    assert record['num_samples'] == 54


def test_predefined_folds_hold_each_out():
    fold_ids = np.array([1, 2, 3, 1, 2, 3, 1])
    splits = predefined_splits(fold_ids)
    assert [list(test) for _, test in splits] == [[0, 3, 6], [1, 4], [2, 5]]
    for train, test in splits:
        assert sorted(np.concatenate([train, test])) == list(range(7))


def test_label_errors_say_what_to_do():
    x = np.zeros((10, 4))
    with pytest.raises(LabelError, match='1 class'):
        evaluate_features({'video': x}, np.zeros(10, np.int64))
    with pytest.raises(LabelError, match='0 labelled rows'):
        evaluate_features({'video': x}, np.full(10, -1))
    labels = np.array([0] * 7 + [1] * 3)
    with pytest.raises(LabelError, match=r'class 1 has 3 .*--folds 3'):
        evaluate_features({'video': x}, labels, folds=5)
    with pytest.raises(LabelError, match='integer'):
        evaluate_features({'video': x}, np.zeros(10))
    with pytest.raises(ValueError, match='unknown protocol'):
        evaluate_features({'video': x}, labels, ('svm',))


def test_a_k_not_below_the_training_part_is_left_out(caplog):
    """With 8 training rows, knn@10 would vote over the whole training part
    and recall@10 be 1: they are not reported; a k of 8 neither."""
    x, labels = _planted(n=12)
    split = [(np.arange(8), np.arange(8, 12))]
    with caplog.at_level('WARNING'):
        result = knn_probe(x, labels, split, ks=(1, 8, 10),
                           recall_ks=(1, 5, 8, 10))
    assert sorted(result) == ['knn@1', 'recall@1', 'recall@5']
    assert ('knn@8, knn@10, recall@8, recall@10 left out: a training part '
            'has 8 rows') in caplog.text
    # Through the records: 2 folds of 12 rows leave 6 rows to train on.
    records = evaluate_features({'video': x}, labels, ('knn', ), folds=2)
    assert [r['metric'] for r in records] == ['knn@1', 'recall@1',
                                              'recall@5']
    assert 'knn@10' not in format_table(records)
