"""Build an mmengine Runner from a config and train (``tools/run_net.py``).

Before anything is written, the launcher initialises distributed training,
chooses the checkpoint to resume (a refused or missing one stops the run
here) and takes the work_dir's lock (rank 0; a second run on the same
work_dir fails at once). mmengine's own writes in the work_dir then replace
a symbolic link found there instead of writing through it.
"""
import argparse
import contextlib
import logging
import os
import os.path as osp
import sys
from typing import (Any, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

from mmengine import dist
from mmengine.config import Config
from mmengine.logging import print_log

from xdc_plugin import compat
from xdc_plugin.atomic_backend import atomic_backend_args
from xdc_plugin.atomic_write import WriteError, remove_orphan_temporaries
from xdc_plugin.data.manifest import ManifestError
from xdc_plugin.engine.hooks.resumed_schedule_hook import ScheduleMismatchError
from xdc_plugin.engine.launch import dry_run
from xdc_plugin.engine.round.round_clustering import TooFewClipsError
from xdc_plugin.engine.runner.checkpoint import (SafeResumeRunner,
                                                 UntrustedCheckpointError,
                                                 checkpoint_problem,
                                                 find_resume_checkpoint,
                                                 refuse_untrusted)
from xdc_plugin.engine.runner.config import (CONFIG_ERRORS, ConfigTypeError,
                                             check_dataloaders, load_config,
                                             shipped_config)
from xdc_plugin.engine.runner.device import (DEVICE_CHOICES, DeviceError,
                                             local_cuda_index, planned_device,
                                             resolve_device)
from xdc_plugin.engine.runner.lock import (WorkDirBusyError, WorkDirError,
                                           WorkDirLock)
from xdc_plugin.engine.runner.precision import (AMP_CHOICES, PrecisionError,
                                                check_amp,
                                                optim_wrapper_config)

DEFAULT_CONFIG = shipped_config('xdc_demo.yaml')


class ResumeError(RuntimeError):
    """The checkpoint to resume from is missing or not intact."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Pretrain video and audio encoders with XDC.')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG,
                        help='config file (default: the demo config)')
    parser.add_argument('--work-dir', help='overrides work_dir')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from the checkpoint last_checkpoint '
                        'names in the work dir (if damaged, the intact one '
                        'furthest in training), or from the given one')
    parser.add_argument('--resume-required', action='store_true',
                        help='like --resume, but fail if the work dir has '
                        'no checkpoint (instead of starting from scratch)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle the resumed checkpoint fully (only '
                        'for a checkpoint you made yourself that the safe '
                        'loader refuses)')
    parser.add_argument('--force', action='store_true',
                        help='run even if another run holds the work dir')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'])
    parser.add_argument('--device', default='auto', choices=DEVICE_CHOICES,
                        help='auto (default): CUDA under --launcher pytorch '
                        'or slurm, else CUDA when visible and the CPU '
                        'otherwise; cuda: fail unless CUDA is visible; cpu: '
                        'the CPU (gloo), also for several processes')
    parser.add_argument('--amp', nargs='?', const='bf16', choices=AMP_CHOICES,
                        help='mixed precision: --amp is bf16 autocast with no '
                        'loss scaler; --amp fp16 is fp16 autocast with a '
                        'dynamic loss scaler (GPUs without bf16)')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                        help='config overrides, e.g. train_cfg.max_epochs=4')
    dry_run.add_arguments(parser)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``build_parser().parse_args``, where a bare ``--amp`` followed by an
    override (``--amp work_dir=x``) means bf16: argparse would otherwise
    take the override for ``--amp``'s value."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == '--amp' and argv[i + 1:i + 2] not in [[c] for c in
                                                          AMP_CHOICES]:
            argv[i] = '--amp=bf16'
    return build_parser().parse_args(argv)


def prepare_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.cfg, args.overrides)
    check_dataloaders(cfg)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    cfg.setdefault('work_dir', osp.join(
        'work_dirs', osp.splitext(osp.basename(args.cfg))[0]))
    cfg.launcher = args.launcher
    cfg.resume, cfg.load_from = False, cfg.get('load_from')
    if args.dry_run:  # plans the run; CUDA need not be visible here
        cfg.device = planned_device(args.device, args.launcher,
                                    args.world_size)
    else:
        cfg.device = resolve_device(args.device, args.launcher,
                                    log=lambda m: print_log(
                                        m, logger='current'))
        check_amp(args.amp, cfg.device)
    cfg.optim_wrapper = optim_wrapper_config(cfg.optim_wrapper, args.amp)
    if cfg.device == 'cpu':
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg.backend = 'gloo'
        # mmengine's default wrapper passes device_ids=[LOCAL_RANK], which
        # DistributedDataParallel rejects for a CPU module.
        cfg.setdefault('model_wrapper_cfg', dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False))
    elif args.launcher != 'none' and not args.dry_run:
        # mmengine's default is device_ids=[LOCAL_RANK]: with one visible
        # device per task that names a device that is not there.
        cfg.setdefault('model_wrapper_cfg', dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
        cfg.model_wrapper_cfg.setdefault('device_ids', [local_cuda_index()])
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook and 'backend_args' not in checkpoint_hook:
        checkpoint_hook.backend_args = atomic_backend_args(
            checkpoint_hook.get('out_dir') or cfg.work_dir)
    return cfg


def init_distributed(cfg: Config) -> None:
    """Initialise the process group now (the Runner then keeps it), on the
    run's device (``cfg.device``), with ``env_cfg.dist_cfg`` (``timeout``:
    seconds any collective may wait)."""
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    timeout = dist_cfg.get('timeout')
    if timeout is not None and (type(timeout) not in (int, float)
                                or not timeout > 0):
        raise ConfigTypeError('env_cfg.dist_cfg.timeout must be a positive '
                              f'number of seconds, got {timeout!r}')
    if cfg.launcher == 'slurm':
        # srun's tasks: torch.distributed's variables from SLURM's, then the
        # pytorch path (mmengine's slurm launcher selects the CUDA device
        # by SLURM_LOCALID, wrong with one visible device per task).
        from xdc_plugin.engine.launch.slurm import slurm_task_env
        os.environ.update(slurm_task_env())
    if cfg.launcher in ('pytorch', 'slurm'):
        compat.init_dist_pytorch(
            device_index=local_cuda_index() if cfg.device == 'cuda' else None,
            **dist_cfg)


def _from_rank0(func):
    """``func()`` run on rank 0; every rank gets its result or raises its
    exception."""
    outcome = [None, None]
    if dist.is_main_process():
        try:
            outcome[0] = func()
        except Exception as exc:  # re-raised on every rank below
            outcome[1] = exc
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


def checkpoint_dir(cfg: Config) -> Optional[str]:
    """Where the checkpoint hook saves (mmengine's rule: ``out_dir`` gets
    the work dir's name), or None for a remote ``out_dir``."""
    out_dir = cfg.get('default_hooks', {}).get('checkpoint', {}).get(
        'out_dir')
    if not out_dir:
        return cfg.work_dir
    if '://' in out_dir:
        return None
    return osp.join(out_dir, osp.basename(osp.normpath(cfg.work_dir)))


def remove_orphans(folders: Iterable[Optional[str]]) -> List[str]:
    """Remove the temporary files that a save killed midway left in
    ``folders``; returns the messages to log."""
    messages = []
    for folder in dict.fromkeys(f for f in folders if f):
        removed = remove_orphan_temporaries(folder)
        if removed:
            names = ', '.join(name for name, _ in removed)
            megabytes = sum(size for _, size in removed) / 2**20
            messages.append(
                f'Removed the temporary files of an interrupted save from '
                f'{folder} ({len(removed)}, {megabytes:.1f} MiB): {names}.')
    return messages


@contextlib.contextmanager
def work_dir_lock(work_dir: str, force: bool,
                  orphan_dirs: Iterable[Optional[str]] = ()
                  ) -> Iterator[List[str]]:
    """Rank 0 holds the work_dir's lock for the block; every rank stops if
    another run holds it. Holding it (not sharing it with ``force``), rank 0
    first removes the temporary files of interrupted saves from
    ``orphan_dirs``: no other run can be saving there. Yields the messages
    to log."""
    lock = WorkDirLock(work_dir, force, on_force=lambda m: print_log(
        m, logger='current', level=logging.WARNING))

    def take():
        lock.__enter__()  # the lock object itself stays on rank 0
        return remove_orphans(orphan_dirs) if lock.held else []

    messages = _from_rank0(take)
    try:
        yield messages
    finally:
        lock.__exit__(None, None, None)


def choose_checkpoint(
        args: argparse.Namespace, work_dir: str
) -> Tuple[Optional[str], Optional[str], List[str]]:
    """``(checkpoint to resume or None, why it was chosen, warnings to
    log)``."""
    if args.resume not in (None, 'auto'):
        problem = checkpoint_problem(args.resume)
        if problem:
            raise ResumeError(f'--resume {args.resume}: {problem}')
        path, reason, notes = args.resume, 'given on the command line', []
    elif args.resume or args.resume_required:
        path, reason, notes = find_resume_checkpoint(work_dir,
                                                     args.trust_checkpoint)
        notes = [f'--resume: {note}' for note in notes]
        if path is None:
            missing = (f'--resume: no intact checkpoint in {work_dir} '
                       f'({reason}); is the work dir right?')
            if args.resume_required:
                raise ResumeError(missing + ' (--resume-required)')
            notes.append(missing + ' STARTING FROM SCRATCH.')
    else:
        return None, None, []
    if path and not args.trust_checkpoint:
        refuse_untrusted(path)
    return path, reason, notes


@compat.mmengine_logger_device_id(local_cuda_index)
def main(argv: Optional[Sequence[str]] = None
         ) -> Union[SafeResumeRunner, Dict[str, Any]]:
    args = parse_args(argv)
    cfg = prepare_config(args)
    if args.dry_run:
        return dry_run.run(cfg, args)
    init_distributed(cfg)
    path, reason, notes = _from_rank0(
        lambda: choose_checkpoint(args, cfg.work_dir))
    with work_dir_lock(cfg.work_dir, args.force,
                       (cfg.work_dir, checkpoint_dir(cfg))) as removed, \
            compat.work_dir_writes_replace_links(), \
            compat.mmengine_device(cfg.device):
        if path:
            cfg.resume, cfg.load_from = True, path
        runner = SafeResumeRunner.from_cfg(cfg)
        runner.trust_checkpoint = args.trust_checkpoint
        for note in notes:
            runner.logger.warning(note)
        for message in removed:
            runner.logger.info(message)
        if path:
            runner.logger.info(f'Resuming from {path}: {reason}.')
        runner.train()
    return runner


def cli(argv: Optional[Sequence[str]] = None
        ) -> Union[SafeResumeRunner, Dict[str, Any]]:
    """``main`` for the command line: a bad config, manifest, checkpoint or
    work dir, too few clips for k, or a failed save (disk full) ends the
    program with its message instead of a traceback."""
    try:
        return main(argv)
    except CONFIG_ERRORS + (
            ResumeError, ScheduleMismatchError, UntrustedCheckpointError,
            WorkDirBusyError, WorkDirError, dry_run.DryRunError,
            ManifestError, TooFewClipsError, DeviceError,
            PrecisionError) as exc:
        raise SystemExit(f'error: {exc}') from exc
    except WriteError as exc:  # every write of the run is atomic
        raise SystemExit(f'error: {exc}; the checkpoints saved before and '
                         'last_checkpoint are intact') from exc
