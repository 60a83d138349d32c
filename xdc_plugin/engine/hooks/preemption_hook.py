"""Checkpoint and exit when the job is told to stop; remove those
checkpoints once a regular one supersedes them."""
import glob
import os
import os.path as osp
import re
import signal
import threading
from typing import NoReturn, Optional, Sequence

from mmengine import dist, fileio
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import Runner

from xdc_plugin.atomic_backend import atomic_backend_args
from xdc_plugin.engine.runner.checkpoint import LAST_CHECKPOINT
from xdc_plugin.engine.runner.stop_request import StopRequest
from xdc_plugin.registry import HOOKS

_NAME = re.compile(r'iter_(\d+)\.pth$')


@HOOKS.register_module()
class PreemptionCheckpointHook(Hook):
    """On one of ``signals`` (SLURM sends SIGUSR2 before a preemption or the
    time limit with ``--signal=USR2@<s>``, and SIGTERM when it stops a job;
    ``kill`` sends SIGTERM, Ctrl-C SIGINT), finish the current iteration,
    save ``iter_<n>.pth`` in the work_dir (resumed at the next batch by
    :class:`MidEpochResumeHook`; ``last_checkpoint`` names it), log one line
    and exit with status 128 + the signal's number. At most one iteration of
    work is lost. A second signal acts as it would without this hook.

    All ranks stop at the same iteration: they agree on the signal with an
    all-reduce after each iteration (one integer). The request itself is
    :attr:`stop` (``stop_request.StopRequest``), which a clustering round
    also acts on (:meth:`stop_run`). A signal that arrives after the last
    iteration is not lost: the run exits with its status after training.

    Once the checkpoint hook has saved a later checkpoint, the preemption
    checkpoints it supersedes are removed, when that hook saves by epoch
    (no ``iter_*.pth`` of its own) and keeps a bounded number
    (``max_keep_ckpts`` > 0).
    """

    priority = 'LOWEST'

    def __init__(
            self,
            signals: Sequence[str] = ('SIGUSR2', 'SIGTERM', 'SIGINT')
    ) -> None:
        self.stop = StopRequest(signals)
        self._state_saved_at = None  # iterations of the last checkpoint
        self._saved_at = None  # the last save by this process

    def before_train(self, runner: Runner) -> None:
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('PreemptionCheckpointHook: not in the main '
                                  'thread, signals cannot be handled.')
            return
        self.stop.install()

    def after_train_iter(self, runner: Runner, batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        signum = self.stop.agreed()
        if signum:
            self.stop_run(runner, signum, runner.iter + 1,
                          f'after iteration {runner.iter + 1}')

    def after_train_epoch(self, runner: Runner) -> None:
        if dist.is_main_process() and self._saved_at == runner.iter:
            self._remove_superseded(runner)

    def after_train(self, runner: Runner) -> None:
        signum = self.stop.agreed()
        self.stop.restore()
        if signum:
            self.stop_run(runner, signum, runner.iter, 'after training')

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        self._saved_at = self._state_saved_at = checkpoint['meta']['iter']

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        self._state_saved_at = checkpoint['meta']['iter']

    def stop_run(self, runner: Runner, signum: int, iters_done: int,
                 event: str) -> NoReturn:
        """Save the training state after ``iters_done`` iterations as
        ``iter_<n>.pth`` unless a checkpoint of it exists, log one line
        naming ``event`` and exit with 128 + ``signum``. Call on every rank
        at the same point."""
        saved_at = [self._state_saved_at]
        if dist.get_world_size() > 1:  # only rank 0 sees the saves
            dist.broadcast_object_list(saved_at, src=0)
        if iters_done == 0:
            saved = 'nothing trained yet, nothing to save'
        elif iters_done == saved_at[0]:
            saved = f'the state after iteration {iters_done} is already saved'
        else:
            name = f'iter_{iters_done}.pth'
            backend_args = atomic_backend_args(runner.work_dir)
            runner.save_checkpoint(
                runner.work_dir, name, by_epoch=False,
                backend_args=backend_args,
                meta=dict(epoch=runner.epoch, iter=iters_done))
            if dist.is_main_process():
                fileio.put_text(osp.join(runner.work_dir, name),
                                osp.join(runner.work_dir, LAST_CHECKPOINT),
                                backend_args=backend_args)
            dist.barrier()
            saved = f'saved {name}'
        runner.logger.warning(
            f'{signal.Signals(signum).name} received {event}: {saved}; '
            f'exiting with {128 + signum}. Continue with --resume.')
        raise SystemExit(128 + signum)

    def _remove_superseded(self, runner):
        """Remove the work dir's preemption checkpoints up to this
        iteration: the checkpoint hook has just saved a later one."""
        keeper = next((h for h in runner.hooks
                       if isinstance(h, CheckpointHook)), None)
        if keeper is None or not keeper.by_epoch or keeper.max_keep_ckpts <= 0:
            return
        for path in glob.glob(osp.join(runner.work_dir, 'iter_*.pth')):
            match = _NAME.match(osp.basename(path))
            if match and int(match.group(1)) <= runner.iter:
                os.remove(path)
                runner.logger.info(f'Removed {osp.basename(path)}: a '
                                   'preemption checkpoint that the '
                                   'checkpoint of this epoch supersedes.')
