"""Data rate (clips/s per DataLoader worker) of a config's feature-extraction
pass against its training loop.

Both loaders are built as a run builds them: the train loader from
``train_dataloader``, the extraction loader by ``build_extract_loader``
from the ``extract_dataloader`` of the config's clustering hook (the train
dataset with the extraction pipeline). Each is timed with its own batch size
and with ``--num-workers`` workers (0: the main process, counted as one),
in alternation (``--repeats`` rounds), after one warm-up batch. Data only:
the encoders' forward pass is not timed.

    python bench/bench_extract_rate.py [--config configs/xdc_avobjects.yaml]
        [--num-workers 0 2] [--clips 192] [--repeats 2]
"""
import argparse
import itertools
import time
from types import SimpleNamespace

import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import xdc_plugin.data  # noqa: F401  (registers AVClipDataset, transforms)
from xdc_plugin.engine.round.extract_loader import build_extract_loader
from xdc_plugin.engine.runner.config import load_config, shipped_config
from xdc_plugin.registry import SCOPE


def _extract_cfg(cfg):
    hooks = [h for h in [*(cfg.get('default_hooks') or {}).values(),
                         *(cfg.get('custom_hooks') or ())]
             if h and 'extract_dataloader' in h]
    if not hooks:
        raise SystemExit('the config has no hook with an extract_dataloader')
    return hooks[0]['extract_dataloader']


def build_loaders(cfg, workers):
    """(train loader, extraction loader) of ``cfg`` with ``workers``."""
    train_cfg = dict(cfg.train_dataloader, num_workers=workers,
                     persistent_workers=False)
    train = Runner.build_dataloader(train_cfg, seed=0)
    # What build_extract_loader reads of a runner.
    runner = SimpleNamespace(cfg=cfg, train_dataloader=train, seed=0)
    extract = build_extract_loader(runner, dict(
        _extract_cfg(cfg), num_workers=workers, persistent_workers=False))
    return train, extract


def _timed(loader, clips):
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = 0
    for batch in itertools.islice(it, max(1, -(-clips // loader.batch_size))):
        n += len(batch['video'])
    return n, time.perf_counter() - t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config',
                        default=shipped_config('xdc_avobjects.yaml'))
    parser.add_argument('--num-workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--clips', type=int, default=192,
                        help='clips timed per loader and round')
    parser.add_argument('--repeats', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    rows = []
    for workers in args.num_workers:
        with DefaultScope.overwrite_default_scope(SCOPE):
            train, extract = build_loaders(cfg, workers)
        totals = {'train': [0, 0.0], 'extract': [0, 0.0]}
        for _ in range(args.repeats):
            for name, loader in (('train', train), ('extract', extract)):
                n, sec = _timed(loader, args.clips)
                totals[name][0] += n
                totals[name][1] += sec
        per_worker = {k: n / sec / max(workers, 1)
                      for k, (n, sec) in totals.items()}
        rows.append((workers, train.batch_size, extract.batch_size,
                     per_worker))
    print(f'{args.config}: data only, {args.clips} clips x {args.repeats} '
          'rounds per loader\n')
    print('| workers | train batch | extract batch | train clips/s/worker '
          '| extract clips/s/worker | extract / train |')
    print('|---:|---:|---:|---:|---:|---:|')
    for workers, tb, eb, r in rows:
        print(f'| {workers} | {tb} | {eb} | {r["train"]:.1f} | '
              f'{r["extract"]:.1f} | {r["extract"] / r["train"]:.2f}x |')
    return rows


if __name__ == '__main__':
    main()
