"""What XDC learns on real clips at the paper's input, on one GPU: the
avobjects table (random init, SDC, MDC, CDC, XDC; linear and kNN probes of
the frozen encoders) for seeds 0-2, as mean and spread over the seeds.

    python tools/avobjects_study.py                 # one GPU, paper input
    python tools/avobjects_study.py --plan          # the sizing only
    python tools/avobjects_study.py --cpu --tiny    # the same code, tiny (CI)

Each seed is one ``tools/avobjects_table.py`` run (``--seed S``,
``randomness.seed=S``) of ``configs/xdc_avobjects_paper_input.yaml``
(full-width encoders, 8x112x112 crops, 2 s log-mel at a 10 ms hop; the
avobjects recipe's 48 epochs and 4 rounds), trained with ``--amp`` on the
GPU; ``--jobs`` seeds run at once (they share the GPU, each with its own
data-loading processes). Every seed's records are in
``<work-root>/seed_<S>/table.json``; the study's table (the mean over seeds
of each fold-mean, ± their standard deviation over seeds) is printed and
written to ``<work-root>/study.md`` and ``study.json``.

Sizing (``--plan`` prints it from the config): the FLOPs counted on the
model at the config's input (``xdc_plugin.models.flops``), a training step
being 3 forward passes, times the clips each part sees: training (variants
x seeds x epochs x clips), the rounds' extraction (variants x seeds x
rounds x clips) and the evaluation (5 encoder pairs x seeds x clips x
``--num-clips``), at ``PLAN_TFLOPS`` of an H100 (our guess, as the shipped
``throughput_estimate``: 20% of its dense bf16 peak), then ``--jobs``
streams for the rest (data loading, process start, per-epoch and per-round
work), which the FLOPs do not count. At the paper's input it is about two
minutes of compute; the 10-minute budget leaves the rest for those.
"""
import argparse
import csv
import json
import os
import os.path as osp
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from xdc_plugin import MODALITIES
from xdc_plugin.engine.runner.config import load_config, shipped_config
from xdc_plugin.tables import markdown_table

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TABLE = osp.join(REPO, 'tools', 'avobjects_table.py')
CONFIG = shipped_config('xdc_avobjects_paper_input.yaml')
DATA = osp.join(REPO, '..', 'shared', 'data', 'avobjects', 'manifest.csv')
VARIANTS = ('random', 'sdc', 'mdc', 'cdc', 'xdc')
COLUMNS = tuple((protocol, modality, metric)
                for protocol, metric in (('linear', 'top1'), ('knn', 'knn@1'),
                                         ('knn', 'knn@10'))
                for modality in MODALITIES)
# 20% of an H100 SXM's dense bf16 peak (989.5 TFLOP/s): a guess, not a
# measurement (the same as configs/_base_/throughput_estimate.yaml).
PLAN_TFLOPS = 0.2 * 989.5
# --tiny: the same commands at sizes a CPU runs in about a minute.
TINY_OVERRIDES = ['model.video_encoder.width=0.125',
                  'model.audio_encoder.width=0.125', 'train_cfg.max_epochs=1',
                  'param_scheduler.0.T_max=1',
                  'default_hooks.clustering.interval=1',
                  'train_dataloader.num_workers=0',
                  'default_hooks.clustering.extract_dataloader.num_workers=0',
                  'default_hooks.clustering.clusterers.num_redo=1',
                  '+default_hooks.clustering.evaluate_after_train=false',
                  'model.num_clusters=2',
                  'default_hooks.clustering.probe=null']


def tiny_manifest(data, path, per_class=2):
    """``per_class`` clips of each coarse class of ``data``, paths made
    absolute."""
    root = osp.dirname(osp.abspath(data))
    chosen = {}
    with open(data, newline='') as f:
        for row in csv.DictReader(f):
            members = chosen.setdefault(row['coarse_label'], [])
            if len(members) < per_class:
                members.append(row)
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'coarse_label'])
        for label, members in sorted(chosen.items()):
            writer.writerows([osp.join(root, r['path']), label]
                             for r in members)
    return path


def plan(cfg, num_clips, seeds, variants, eval_clips, jobs):
    """The study's FLOPs and their time at ``PLAN_TFLOPS`` (see the module
    docstring); returns the lines to print."""
    from mmengine.registry import init_default_scope

    from xdc_plugin.engine.launch.dry_run import clip_shapes
    from xdc_plugin.engine.launch.run_cost import clustering_rounds, duration
    from xdc_plugin.models.flops import TRAIN_FORWARDS, forward_flops
    from xdc_plugin.registry import MODELS
    init_default_scope('xdc')
    video, audio = clip_shapes(cfg.train_dataloader.dataset)
    forward = forward_flops(MODELS.build(cfg.model), video, audio)['total']
    trained = [v for v in variants if v != 'random']
    epochs = cfg.train_cfg.max_epochs
    interval = cfg.default_hooks.clustering.interval
    rounds = clustering_rounds(epochs, interval) + 1  # and the final one
    parts = {
        'training': TRAIN_FORWARDS * forward * num_clips * epochs *
        len(trained) * len(seeds),
        'round extraction': forward * num_clips * rounds * len(trained) *
        len(seeds),
        'evaluation': forward * num_clips * eval_clips * len(variants) *
        len(seeds)}
    lines = [f'input video {video}, audio {audio}: {forward / 1e9:.1f} '
             f'GFLOP per clip forward ({TRAIN_FORWARDS}x for a training '
             f'step); {num_clips} clips, {epochs} epochs, {rounds} rounds, '
             f'{len(trained)} trained variants x {len(seeds)} seeds']
    for name, flops in parts.items():
        lines.append(f'  {name}: {flops / 1e15:.2f} PFLOP = '
                     f'{duration(flops / (PLAN_TFLOPS * 1e12))} at '
                     f'{PLAN_TFLOPS:.0f} TFLOP/s')
    total = sum(parts.values()) / (PLAN_TFLOPS * 1e12)
    lines.append(f'  compute: {duration(total)} in all (guessed rate, not '
                 f'measured); data loading, process starts and per-epoch '
                 f'work come on top, in {jobs} parallel streams')
    return lines


def seed_command(args, seed, work_root, data, overrides):
    return [sys.executable, TABLE, '--cfg', args.cfg, '--data', data,
            '--variants', *args.variants, '--work-root', work_root,
            '--seed', str(seed), '--num-clips', str(args.num_clips),
            '--folds', str(args.folds), '--workers', str(args.workers),
            '--device', 'cpu' if args.cpu else 'cuda', '--no-progress',
            *(['--amp'] if not args.cpu else []),
            f'randomness.seed={seed}', *overrides]


def run_seed(command, work_root):
    """One seed's table; its records, or a RuntimeError with the log."""
    os.makedirs(work_root, exist_ok=True)
    log_path = osp.join(work_root, 'study_seed.log')
    with open(log_path, 'w') as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                              cwd=REPO).returncode
    if code:
        with open(log_path) as log:
            raise RuntimeError(f'{" ".join(command)} failed (exit {code}); '
                               f'end of {log_path}:\n{log.read()[-3000:]}')
    with open(osp.join(work_root, 'table.json')) as f:
        return json.load(f)


def summarise(records_by_seed, variants):
    """``{variant: {column: (mean, std over seeds, seeds)}}``: each seed's
    fold-mean, then their mean and standard deviation."""
    summary = {}
    for variant in variants:
        for column in COLUMNS:
            values = [r['accuracy'] for records in records_by_seed
                      for r in records if r['variant'] == variant and
                      (r['protocol'], r['modality'], r['metric']) == column]
            if values:
                summary.setdefault(variant, {})[column] = (
                    float(np.mean(values)), float(np.std(values)),
                    len(values))
    return summary


def format_summary(summary):
    header = ('variant', ) + tuple(f'{p} {m} {k}' for p, m, k in COLUMNS)
    rows = [(variant, ) + tuple(
        f'{100 * values[c][0]:.1f} ± {100 * values[c][1]:.1f}'
        if c in values else '-' for c in COLUMNS)
        for variant, values in summary.items()]
    return markdown_table(header, rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--cfg', default=CONFIG)
    parser.add_argument('--data', default=DATA)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--variants', nargs='+', choices=VARIANTS,
                        default=list(VARIANTS))
    parser.add_argument('--work-root', default='work_dirs/avobjects_study')
    parser.add_argument('--jobs', type=int, default=3,
                        help='seeds run at once')
    parser.add_argument('--folds', type=int, default=5)
    parser.add_argument('--num-clips', type=int, default=10)
    parser.add_argument('--workers', type=int, default=4,
                        help='evaluation loader workers per seed')
    parser.add_argument('--cpu', action='store_true')
    parser.add_argument('--tiny', action='store_true',
                        help='2 clips per class, 1 epoch, width-0.125 '
                        'encoders, 2 folds, 1 clip per file')
    parser.add_argument('--plan', action='store_true',
                        help='print the sizing and stop')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = parser.parse_args(argv)
    if args.tiny:
        args.overrides = TINY_OVERRIDES + args.overrides
        args.folds, args.num_clips, args.workers = 2, 1, 0
    return args


def main(argv=None):
    args = parse_args(argv)
    data = args.data
    overrides = list(args.overrides)
    if args.tiny:
        data = tiny_manifest(data, osp.join(args.work_root, 'tiny.csv'))
        overrides.append(f'train_dataloader.dataset.ann_file={data}')
    cfg = load_config(args.cfg, overrides)  # a bad key fails here
    with open(data) as f:
        num_clips = sum(1 for _ in f) - 1
    lines = plan(cfg, num_clips, args.seeds, args.variants, args.num_clips,
                 args.jobs)
    print('\n'.join(lines), flush=True)
    if args.plan:
        return None
    roots = [osp.join(args.work_root, f'seed_{s}') for s in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(
            lambda seed, root: run_seed(
                seed_command(args, seed, root, data, overrides), root),
            args.seeds, roots))
    summary = summarise(results, args.variants)
    table = format_summary(summary)
    text = (f'avobjects at the paper\'s input ({args.cfg}); seeds '
            f'{args.seeds}; mean ± std over seeds of the {args.folds}-fold '
            f'means, %\n\n{table}\n')
    print(text)
    with open(osp.join(args.work_root, 'study.md'), 'w') as f:
        f.write(text + '\n' + '\n'.join(lines) + '\n')
    with open(osp.join(args.work_root, 'study.json'), 'w') as f:
        json.dump(dict(config=args.cfg, seeds=args.seeds, plan=lines,
                       summary={v: {' '.join(c): dict(zip(
                           ('mean', 'std', 'seeds'), s)) for c, s in
                           values.items()} for v, values in summary.items()},
                       records={s: r for s, r in zip(args.seeds, results)}),
                  f, indent=2)
    return summary


if __name__ == '__main__':
    main()
