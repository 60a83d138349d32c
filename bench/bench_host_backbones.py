"""XDC on the demo set with our R(2+1)D-18 and with host backbones, same
data, schedule, rounds and seed: cluster NMI per round, parameters, FLOPs
per clip, time per epoch (and its ratio to ours, measured in the same
process), and the linear probe of each trained encoder against the same
encoder at its random init.

    python bench/bench_host_backbones.py           # the page's table
    python bench/bench_host_backbones.py --recipes ours x3d \\
        train_cfg.max_epochs=2 param_scheduler.0.T_max=2

Each recipe (``configs/xdc_demo*.yaml``) trains into ``<work-root>/<name>``
in this process (its log there); the epoch time is the mean training time
of an epoch, the round that opens it excluded. Then ``tools/evaluate.py``'s
protocol: the last checkpoint's encoders, and the recipe's encoders at
random init (seeded), on the demo's labelled manifest, linear probe,
stratified 5-fold. Extra ``KEY=VALUE`` arguments override every recipe.
Prints two markdown tables and writes every number to ``--json``.
"""
import argparse
import json
import os.path as osp

from bench_round_cost import EpochTimer  # this folder, as a script runs

from xdc_plugin.engine.launch.dry_run import clip_shapes
from xdc_plugin.engine.launch.launch import build_parser, prepare_config
from xdc_plugin.engine.runner.checkpoint import SafeResumeRunner
from xdc_plugin.engine.runner.config import shipped_config
from xdc_plugin.evaluation.manifest_eval import evaluate_manifest
from xdc_plugin.models.flops import forward_flops
from xdc_plugin.tables import markdown_table

RECIPES = {'ours': 'xdc_demo', 'x3d': 'xdc_demo_x3d',
           'slowonly': 'xdc_demo_slowonly', 'swin': 'xdc_demo_swin',
           'pytorchvideo': 'xdc_demo_pytorchvideo',
           'resnet_audio': 'xdc_demo_resnet_audio'}


def _encoder_name(encoder):
    backbone = getattr(encoder, 'backbone', None)
    return type(backbone or encoder).__name__


def train(recipe, work_dir, overrides):
    """Train ``recipe``; its rounds, sizes, costs and last checkpoint."""
    args = build_parser().parse_args([
        '--cfg', shipped_config(recipe + '.yaml'),
        '--work-dir', work_dir, *overrides])
    cfg = prepare_config(args)
    timer = EpochTimer()
    runner = SafeResumeRunner.from_cfg(cfg)
    runner.register_hook(timer)
    runner.train()
    model = runner.model
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    video, audio = clip_shapes(cfg.train_dataloader.dataset)
    flops = forward_flops(model, video, audio)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    return dict(
        recipe=recipe, config=cfg, checkpoint=checkpoint,
        rounds=[dict(round=r['round'], epoch=r['epoch'], source=r['source'],
                     nmi=r['nmi']) for r in hook.history],
        encoders={m: _encoder_name(model.encoder(m))
                  for m in ('video', 'audio')},
        parameters={m: sum(p.numel() for p in model.encoder(m).parameters())
                    for m in ('video', 'audio')},
        gflops={m: flops[m] / 1e9 for m in ('video', 'audio')},
        epoch_seconds=sum(timer.seconds) / len(timer.seconds))


def probe(encoder, cfg, data, folds, workers):
    """Linear-probe top-1 (mean, std over folds) per modality."""
    records = evaluate_manifest(
        encoder, 'label', data=data, protocols=('linear', ), modality='both',
        folds=folds, cfg=cfg, num_workers=workers, progress=False)
    return {r['modality']: (r['accuracy'], r['std']) for r in records}


def _pct(value):
    return f'{100 * value[0]:.1f} ± {100 * value[1]:.1f}'


def tables(rows):
    """The NMI trajectory and the summary, as markdown."""
    rounds = [(r['round'], r['epoch']) for r in rows[0]['rounds']
              if r['source'] == 'video']
    nmi = {(row['recipe'], r['round'], r['source']): r['nmi']
           for row in rows for r in row['rounds']}
    trajectory = markdown_table(
        ['round (epoch)'] + [f"{row['recipe']} {m}" for row in rows
                             for m in ('video', 'audio')],
        [[f'{rid} ({epoch})'] + [
            f"{nmi.get((row['recipe'], rid, m), float('nan')):.3f}"
            for row in rows for m in ('video', 'audio')]
         for rid, epoch in rounds])
    ours = rows[0]['epoch_seconds']
    summary = markdown_table(
        ['recipe', 'video encoder', 'audio encoder', 'parameters (video / '
         'audio)', 'GFLOPs per clip (video / audio)', 's per epoch',
         f"epoch time / {rows[0]['recipe']}", 'linear video: trained / '
         'random', 'linear audio: trained / random'],
        [[row['recipe'], row['encoders']['video'], row['encoders']['audio'],
          f"{row['parameters']['video'] / 1e6:.2f}M / "
          f"{row['parameters']['audio'] / 1e6:.2f}M",
          f"{row['gflops']['video']:.3f} / {row['gflops']['audio']:.3f}",
          f"{row['epoch_seconds']:.1f}",
          f"{row['epoch_seconds'] / ours:.2f}"] +
         [f"{_pct(row['trained'][m])} / {_pct(row['random'][m])}"
          for m in ('video', 'audio')] for row in rows])
    return trajectory, summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--recipes', nargs='+', choices=list(RECIPES),
                        default=['ours', 'x3d', 'slowonly', 'swin'],
                        help='the first is the baseline of the time ratio')
    parser.add_argument('--work-root', default='work_dirs/host_backbones')
    parser.add_argument('--data', default=osp.join(
        'data', 'xdc_demo', 'manifest.csv'), help="the demo's manifest")
    parser.add_argument('--folds', type=int, default=5)
    parser.add_argument('--workers', type=int, default=0,
                        help='feature-extraction loader workers')
    parser.add_argument('--json', help='default: <work-root>/table.json')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = parser.parse_args(argv)
    rows = []
    for name in args.recipes:
        row = train(RECIPES[name], osp.join(args.work_root, name),
                    args.overrides)
        row['recipe'] = name
        row['trained'] = probe(row['checkpoint'], None, args.data,
                               args.folds, args.workers)
        row['random'] = probe('random', row.pop('config'), args.data,
                              args.folds, args.workers)
        rows.append(row)
        print(f"[{name}] {row['epoch_seconds']:.1f} s per epoch", flush=True)
    trajectory, summary = tables(rows)
    print('\ncluster NMI per round (round 0: random init)\n' + trajectory)
    print('\n' + summary)
    path = args.json or osp.join(args.work_root, 'table.json')
    with open(path, 'w') as f:
        json.dump(rows, f, indent=2)
    print(f'numbers written to {path}')
    return rows


if __name__ == '__main__':
    main()
