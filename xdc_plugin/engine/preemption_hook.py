"""Checkpoint at the next iteration when the job is told to stop."""
import os.path as osp
import signal
import threading

import torch
from mmengine import dist, fileio
from mmengine.hooks import Hook

from xdc_plugin.compat import atomic_backend_args
from xdc_plugin.registry import HOOKS


@HOOKS.register_module()
class PreemptionCheckpointHook(Hook):
    """On one of ``signals`` (SLURM sends SIGUSR2 before a preemption or the
    time limit with ``--signal=USR2@<s>``, and SIGTERM when it stops a job;
    ``kill`` sends SIGTERM), finish the current iteration, save
    ``iter_<n>.pth`` in the work_dir (resumed at the next batch by
    :class:`MidEpochResumeHook`; ``--resume`` picks it as the newest), and
    exit with status 128 + the signal's number. At most one iteration of
    work is lost. A second signal acts as it would without this hook.

    All ranks stop at the same iteration: they agree on the signal with an
    all-reduce after each iteration (one integer).
    """

    priority = 'LOWEST'

    def __init__(self, signals=('SIGUSR2', 'SIGTERM')):
        self.signals = [getattr(signal, name) for name in signals]
        self._previous = {}
        self._received = 0

    def before_train(self, runner):
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('PreemptionCheckpointHook: not in the main '
                                  'thread, signals cannot be handled.')
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def after_train(self, runner):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame):
        if self._received:
            signal.signal(signum, self._previous.pop(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self._received = signum

    def _agreed_signal(self):
        if dist.get_world_size() == 1:
            return self._received
        flag = torch.tensor(self._received)
        dist.all_reduce(flag, op='max')
        return int(flag)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        signum = self._agreed_signal()
        if not signum:
            return
        name = f'iter_{runner.iter + 1}.pth'
        backend_args = atomic_backend_args(runner.work_dir)
        runner.save_checkpoint(runner.work_dir, name, by_epoch=False,
                               backend_args=backend_args)
        if dist.is_main_process():
            fileio.put_text(osp.join(runner.work_dir, name),
                            osp.join(runner.work_dir, 'last_checkpoint'),
                            backend_args=backend_args)
        dist.barrier()
        runner.logger.warning(
            f'{signal.Signals(signum).name} received: saved {name} after '
            f'iteration {runner.iter + 1}; exiting with {128 + signum}. '
            'Continue with --resume.')
        raise SystemExit(128 + signum)
