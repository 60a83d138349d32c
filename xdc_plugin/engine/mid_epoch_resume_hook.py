"""Resume a checkpoint written mid-epoch at the next batch."""
import itertools

from mmengine.hooks import Hook
from torch.utils.data import Sampler

from xdc_plugin.registry import HOOKS

BATCHES_DONE = 'batches_done_in_epoch'


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

    def __init__(self):
        self._resume_batches = 0
        self._epoch_start_iter = None

    def after_load_checkpoint(self, runner, checkpoint):
        self._resume_batches = checkpoint['meta'].get(BATCHES_DONE, 0)

    def before_train_epoch(self, runner):
        skip = self._resume_batches
        self._resume_batches = 0
        self._epoch_start_iter = runner.iter - skip
        if skip:
            batch_sampler = runner.train_dataloader.batch_sampler
            batch_sampler.sampler = _SkipFirst(
                batch_sampler.sampler, skip * batch_sampler.batch_size)
            runner.logger.info(f'Resuming epoch {runner.epoch + 1} after its '
                               f'first {skip} batches.')

    def after_train_epoch(self, runner):
        batch_sampler = runner.train_dataloader.batch_sampler
        if isinstance(batch_sampler.sampler, _SkipFirst):
            batch_sampler.sampler = batch_sampler.sampler.sampler

    def before_save_checkpoint(self, runner, checkpoint):
        meta = checkpoint['meta']
        mid_epoch = (self._epoch_start_iter is not None
                     and meta['epoch'] == runner.epoch)
        meta[BATCHES_DONE] = (meta['iter'] - self._epoch_start_iter
                              if mid_epoch else 0)
