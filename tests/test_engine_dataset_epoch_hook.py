"""DatasetEpochHook: the train dataset learns the epoch and the run's seed."""
from types import SimpleNamespace

import pytest

from xdc_plugin.engine import DatasetEpochHook
from xdc_plugin.registry import HOOKS


class EpochRecorder:
    def __init__(self, seed=None):
        self.seed, self.epochs = seed, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def _runner(dataset, persistent=False, workers=2):
    loader = SimpleNamespace(dataset=dataset, persistent_workers=persistent,
                             num_workers=workers)
    return SimpleNamespace(train_dataloader=loader, seed=11, epoch=0)


def test_epoch_and_seed_reach_the_dataset():
    hook = HOOKS.build(dict(type='DatasetEpochHook'))
    dataset = EpochRecorder()
    runner = _runner(dataset)
    hook.before_train(runner)
    assert dataset.seed == 11
    for epoch in (0, 1, 2):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
    assert dataset.epochs == [0, 1, 2]
    given = EpochRecorder(seed=5)
    hook.before_train(_runner(given))
    assert given.seed == 5


def test_persistent_workers_would_repeat_the_first_epoch():
    with pytest.raises(ValueError, match='persistent_workers=True'):
        DatasetEpochHook().before_train(_runner(EpochRecorder(), True))
    # Without workers the dataset itself sees every epoch: allowed.
    DatasetEpochHook().before_train(_runner(EpochRecorder(), True, 0))
