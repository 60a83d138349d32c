"""Resume a checkpoint written mid-epoch at the next batch, and count the
batches it skips in the log."""
import itertools
from typing import Tuple

from mmengine.hooks import Hook
from mmengine.runner import LogProcessor, Runner
from torch.utils.data import Sampler

from xdc_plugin.registry import HOOKS, LOG_PROCESSORS

BATCHES_DONE = 'batches_done_in_epoch'
# Message-hub info: the batches of the current epoch skipped on resume.
BATCHES_SKIPPED = 'batches_skipped_in_epoch'


class _SkipFirst(Sampler):
    """``sampler`` without its first ``count`` indices."""

    def __init__(self, sampler, count):
        self.sampler, self.count = sampler, count

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.count, None)

    def __len__(self):
        return max(len(self.sampler) - self.count, 0)


@HOOKS.register_module()
class MidEpochResumeHook(Hook):
    """Record in each checkpoint how many batches of the current epoch it
    holds (``meta['batches_done_in_epoch']``, 0 at an epoch's end); when
    training resumes from one written mid-epoch (a preemption checkpoint,
    or an iteration-interval one), skip those batches of the epoch.

    The epoch's order is the sampler's (its seed and ``set_epoch``), so
    skipping the first indices of this rank's share resumes exactly at the
    next batch, without loading the skipped ones. mmengine's own loop would
    restart the epoch from its first batch.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resume_batches = 0
        self._epoch_start_iter = None

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        self._resume_batches = checkpoint['meta'].get(BATCHES_DONE, 0)

    def before_train_epoch(self, runner: Runner) -> None:
        skip = self._resume_batches
        self._resume_batches = 0
        self._epoch_start_iter = runner.iter - skip
        runner.message_hub.update_info(BATCHES_SKIPPED, skip)
        if skip:
            batch_sampler = runner.train_dataloader.batch_sampler
            batch_sampler.sampler = _SkipFirst(
                batch_sampler.sampler, skip * batch_sampler.batch_size)
            runner.logger.info(f'Resuming epoch {runner.epoch + 1} after its '
                               f'first {skip} batches.')

    def after_train_epoch(self, runner: Runner) -> None:
        batch_sampler = runner.train_dataloader.batch_sampler
        if isinstance(batch_sampler.sampler, _SkipFirst):
            batch_sampler.sampler = batch_sampler.sampler.sampler

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        meta = checkpoint['meta']
        mid_epoch = (self._epoch_start_iter is not None
                     and meta['epoch'] == runner.epoch)
        meta[BATCHES_DONE] = (meta['iter'] - self._epoch_start_iter
                              if mid_epoch else 0)


@LOG_PROCESSORS.register_module()
class MidEpochLogProcessor(LogProcessor):
    """mmengine's ``LogProcessor`` whose ``Epoch(train) [e][i/n]`` counts the
    batches that :class:`MidEpochResumeHook` skipped: after a mid-epoch
    resume the count goes on from where the interrupted run stopped,
    ``n`` stays the epoch's length (the loop's own batch index restarts at
    0 over a shorter loader)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._mode = None

    def get_log_after_iter(self, runner: Runner, batch_idx: int,
                           mode: str) -> Tuple[dict, str]:
        self._mode = mode  # for _get_iter, which is not told
        return super().get_log_after_iter(runner, batch_idx, mode)

    def _skipped(self, runner, mode):
        if mode != 'train':
            return 0
        return runner.message_hub.get_info(BATCHES_SKIPPED, 0)

    def _get_iter(self, runner, batch_idx):
        current = super()._get_iter(runner, batch_idx)
        if self.by_epoch and batch_idx is not None:
            current += self._skipped(runner, self._mode)
        return current

    def _get_dataloader_size(self, runner, mode):
        return super()._get_dataloader_size(runner, mode) + self._skipped(
            runner, mode)
