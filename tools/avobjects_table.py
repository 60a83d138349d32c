"""Reproduce the avobjects results table: train each variant with the
shipped recipe, evaluate its frozen encoders, print a markdown table.

    python tools/avobjects_table.py                       # the whole table
    python tools/avobjects_table.py --variants random xdc \\
        train_cfg.max_epochs=2

For every variant (``random``, ``sdc``, ``mdc``, ``cdc``, ``xdc``) but
``random``, ``tools/run_net.py --cfg CONFIG model.variant=<v>`` trains into
``<work-root>/<v>`` (its log in ``<work-root>/<v>/table_train.log``; wall
time measured); then the last checkpoint's video and audio encoders are
evaluated on ``--data`` (coarse labels, stratified ``--folds``-fold):
``linear`` top-1 and ``knn`` k=1 / k=10. ``random`` evaluates the config's
encoders at random init (seeded). Extra ``KEY=VALUE`` arguments override
the config for training and for the random encoders alike. The checkpoints
are unpickled fully: this command wrote them. ``--skip-train`` reuses the
checkpoints already in the work dirs. ``--device`` trains and evaluates
there (``auto``: CUDA when visible); ``--amp`` trains with
``tools/run_net.py --amp`` (bf16).

Prints the table (mean +- std over folds, %) and writes every record, with
``variant``, ``train_seconds`` and ``eval_seconds``, to ``--json``.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time

import torch

from xdc_plugin import MODALITIES
from xdc_plugin.engine.runner.config import (CONFIG_ERRORS, load_config,
                                             shipped_config)
from xdc_plugin.evaluation.manifest_eval import evaluate_manifest
from xdc_plugin.probe.records import format_markdown, write_json

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RUN_NET = osp.join(REPO, 'tools', 'run_net.py')
VARIANTS = ('random', 'sdc', 'mdc', 'cdc', 'xdc')
COLUMNS = tuple((protocol, modality, metric)
                for protocol, metric in (('linear', 'top1'), ('knn', 'knn@1'),
                                         ('knn', 'knn@10'))
                for modality in MODALITIES)


def train(variant, cfg_path, work_dir, overrides, run_flags=()):
    """Train one variant in a subprocess (``run_flags``: more
    ``tools/run_net.py`` options); its wall time in seconds."""
    log_path = osp.join(work_dir, 'table_train.log')
    command = [sys.executable, RUN_NET, '--cfg', cfg_path, '--work-dir',
               work_dir, *run_flags, f'model.variant={variant}', *overrides]
    print(f'[{variant}] training: {" ".join(command)}', flush=True)
    started = time.monotonic()
    os.makedirs(work_dir, exist_ok=True)
    with open(log_path, 'w') as log:
        code = subprocess.run(command, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if code:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f'training {variant} failed (exit {code}); end of '
                           f'{log_path}:\n{tail}')
    return seconds


def last_checkpoint(work_dir):
    """The checkpoint mmengine names in ``<work_dir>/last_checkpoint``."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'no checkpoint in {work_dir} (no '
                                'last_checkpoint file); train it first')
    with open(marker) as f:
        return f.read().strip()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--cfg', default=shipped_config('xdc_avobjects.yaml'))
    parser.add_argument('--data', default=osp.join(
        REPO, '..', 'shared', 'data', 'avobjects', 'manifest.csv'))
    parser.add_argument('--label-column', default='coarse_label')
    parser.add_argument('--variants', nargs='+', choices=VARIANTS,
                        default=list(VARIANTS))
    parser.add_argument('--work-root', default='work_dirs/avobjects_table')
    parser.add_argument('--folds', type=int, default=5)
    parser.add_argument('--num-clips', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=0,
                        help='feature-extraction loader workers')
    parser.add_argument('--device', default='auto',
                        choices=['auto', 'cuda', 'cpu'])
    parser.add_argument('--amp', action='store_true',
                        help='train with bf16 autocast (tools/run_net.py '
                        '--amp)')
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--json', default=None,
                        help='default: <work-root>/table.json')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:  # fails early on a bad key
        cfg = load_config(args.cfg, args.overrides)
    except CONFIG_ERRORS as exc:
        raise SystemExit(f'error: {exc}') from exc
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    run_flags = ['--device', device] + (['--amp'] if args.amp else [])
    records, train_seconds = [], {}
    for variant in args.variants:
        work_dir = osp.join(args.work_root, variant)
        if variant == 'random':
            encoder, eval_cfg = 'random', cfg
        else:
            if not args.skip_train:
                train_seconds[variant] = train(variant, args.cfg, work_dir,
                                               args.overrides, run_flags)
            encoder, eval_cfg = last_checkpoint(work_dir), None
        started = time.monotonic()
        results = evaluate_manifest(
            encoder, args.label_column, data=args.data,
            protocols=('linear', 'knn'), modality='both', folds=args.folds,
            cfg=eval_cfg, num_clips=args.num_clips,
            seed=args.seed, num_workers=args.workers, device=device,
            progress=not args.no_progress)
        eval_seconds = time.monotonic() - started
        for record in results:
            record.update(variant=variant, eval_seconds=eval_seconds,
                          train_seconds=train_seconds.get(variant))
        records += results
        print(f'[{variant}] evaluated in {eval_seconds:.0f} s', flush=True)
    table = format_markdown(records, 'variant', COLUMNS, extra=[(
        'training time', lambda v: f'{train_seconds[v] / 60:.1f} min'
        if v in train_seconds else '-')])
    print(table)
    json_path = args.json or osp.join(args.work_root, 'table.json')
    write_json(records, json_path)
    print(f'records written to {json_path}')
    return records, table


if __name__ == '__main__':
    main()
