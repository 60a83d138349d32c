"""Build an mmengine Runner from a config and train (``tools/run_net.py``)."""
import argparse
import os.path as osp

import torch
from mmengine import dist
from mmengine.logging import print_log
from mmengine.runner import Runner

from xdc_plugin.data.demo import make_demo_dataset
from xdc_plugin.engine.config import load_config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO_ROOT, 'configs', 'xdc_demo.yaml')


def build_parser():
    parser = argparse.ArgumentParser(
        description='Pretrain video and audio encoders with XDC.')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG,
                        help='config file (default: the demo config)')
    parser.add_argument('--work-dir', help='overrides work_dir')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from the latest checkpoint in the work '
                        'dir, or from the given checkpoint')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'])
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (AmpOptimWrapper) on GPU')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                        help='config overrides, e.g. train_cfg.max_epochs=4')
    return parser


def prepare_config(args):
    cfg = load_config(args.cfg, args.overrides)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    cfg.setdefault('work_dir', osp.join(
        'work_dirs', osp.splitext(osp.basename(args.cfg))[0]))
    cfg.launcher = args.launcher
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    if args.amp:
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
        else:
            print_log('--amp ignored: no GPU', logger='current')
    if not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg.backend = 'gloo'
        # mmengine's default wrapper passes device_ids=[LOCAL_RANK], which
        # DistributedDataParallel rejects for a CPU module.
        cfg.setdefault('model_wrapper_cfg', dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False))
    return cfg


def ensure_demo_data(cfg):
    """Generate the built-in demo set on first use (``demo_data`` key).

    Rank 0 writes it while the other ranks wait (the runner builds its
    datasets lazily, in ``train()``).
    """
    if cfg.get('demo_data'):
        if dist.is_main_process():
            make_demo_dataset(**cfg.demo_data)
        dist.barrier()


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg = prepare_config(args)
    runner = Runner.from_cfg(cfg)  # initialises distributed training
    ensure_demo_data(cfg)
    runner.train()
    return runner
