"""Random numbers that depend only on where training is."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.runner import Runner

from xdc_plugin.data.seeding import seed_generators
from xdc_plugin.registry import HOOKS

_EPOCH, _ITER = 0, 1


@HOOKS.register_module()
class StepSeedHook(Hook):
    """Reseed every generator before each epoch and each iteration from
    ``(run seed, rank, epoch or iteration)``.

    Whatever draws from the global generators during training (dropout, the
    heads a clustering round re-initialises, ...) then depends only on the
    position in training, not on what ran before in this process: a run
    resumed from a checkpoint draws exactly what the uninterrupted run drew,
    with no generator state in the checkpoint, for any number of ranks.
    Runs first, so that the epoch's seed precedes the clustering round.
    """

    priority = 'VERY_HIGH'

    def before_train_epoch(self, runner: Runner) -> None:
        seed_generators(runner.seed, runner.rank, _EPOCH, runner.epoch)

    def before_train_iter(self, runner: Runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        seed_generators(runner.seed, runner.rank, _ITER, runner.iter)
