"""Time and memory per rank: DistributedKMeans on 1, 2, 4 gloo ranks vs
single-process FaissKMeans and TorchKMeans.

Data: a Gaussian mixture (``--clusters`` centres N(0, 1), unit noise),
generated block by block so that a rank makes only its own contiguous shard
and every world size sees the same rows. Every method runs ``--iters``
Lloyd iterations from a random start on every row, with the default
preprocessing (L2 normalisation), so inertias are comparable (they differ
by the start only). Each configuration runs in freshly spawned processes;
the ranks share ``--cores`` cores (``cores // world`` threads each, the
single-process baselines use them all).

Memory is the resident set (``VmHWM``/``VmRSS`` of ``/proc/self/status``):
it sees every allocation (torch's CPU allocator, faiss's C++ buffers, numpy,
gloo), which ``tracemalloc`` (Python objects only) and torch's counters
(CUDA only) do not. The high-water mark is reset (``/proc/self/clear_refs``)
after the rows are made, so ``fit MiB`` is what the fit adds on top of its
input; ``peak MiB`` also counts the input shard and the interpreter with
torch loaded. ``model MiB`` is ``memory_model.sharded_fit_phases``.

    python bench/bench_distributed_kmeans.py --num-points 100000
"""
import argparse
import json
import math
import os
import os.path as osp
import tempfile
import time

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

_BLOCK_ROWS = 4096


def mixture_rows(start, stop, dim, num_centres, seed):
    """Rows ``[start, stop)`` of the benchmark's mixture (any slice is the
    same whoever makes it)."""
    centres = np.random.default_rng(seed).standard_normal(
        (num_centres, dim), dtype=np.float32)
    out = np.empty((stop - start, dim), np.float32)
    for block in range(start // _BLOCK_ROWS, math.ceil(stop / _BLOCK_ROWS)):
        rng = np.random.default_rng([seed, block])
        labels = rng.integers(0, num_centres, _BLOCK_ROWS)
        rows = centres[labels] + rng.standard_normal((_BLOCK_ROWS, dim),
                                                     dtype=np.float32)
        first = block * _BLOCK_ROWS
        lo, hi = max(start, first), min(stop, first + _BLOCK_ROWS)
        out[lo - start:hi - start] = rows[lo - first:hi - first]
    return out


def _status_kib(key):
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{key} not in /proc/self/status')


def _worker(rank, method, world_size, opts, init_file, out_dir):
    import faiss

    from xdc_plugin import clustering
    threads = max(1, opts['cores'] // world_size)
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    if method == 'DistributedKMeans':
        torch_dist.init_process_group(
            'gloo', init_method=f'file://{init_file}', rank=rank,
            world_size=world_size)
    n = opts['num_points']
    start, stop = rank * n // world_size, (rank + 1) * n // world_size
    rows = mixture_rows(start, stop, opts['dim'], opts['clusters'],
                        opts['seed'])
    clusterer = getattr(clustering, method)(
        num_clusters=opts['clusters'], num_iters=opts['iters'],
        seed=opts['seed'], use_gpu=False)
    rss_before = _status_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # reset VmHWM to the current RSS
    if method == 'DistributedKMeans':
        torch_dist.barrier()
    began = time.perf_counter()
    if method == 'DistributedKMeans':
        result = clusterer.fit_sharded(rows, np.arange(start, stop), n)
    else:
        result = clusterer.fit(rows)
    seconds = time.perf_counter() - began
    report = dict(seconds=seconds, peak_kib=_status_kib('VmHWM'),
                  rss_before_kib=rss_before, inertia=result.inertia,
                  rows=stop - start, threads=threads)
    with open(osp.join(out_dir, f'{method}_{world_size}_{rank}.json'),
              'w') as out:
        json.dump(report, out)
    if method == 'DistributedKMeans':
        torch_dist.destroy_process_group()


def run(method, world_size, opts, out_dir):
    """Per-rank reports of one configuration, in fresh processes."""
    init_file = osp.join(out_dir, f'init_{method}_{world_size}')
    mp.start_processes(_worker, nprocs=world_size, start_method='spawn',
                       args=(method, world_size, opts, init_file, out_dir))
    reports = []
    for rank in range(world_size):
        with open(osp.join(out_dir,
                           f'{method}_{world_size}_{rank}.json')) as f:
            reports.append(json.load(f))
    return reports


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-points', type=int, default=100_000)
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--clusters', type=int, default=256)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--worlds', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--cores', type=int, default=os.cpu_count())
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    from xdc_plugin.clustering.memory_model import (MemoryEstimate,
                                                    sharded_fit_phases)
    opts = vars(args)
    print(f'N={args.num_points} d={args.dim} k={args.clusters} '
          f'iters={args.iters} cores={args.cores}, torch '
          f'{torch.__version__}; gloo ranks on one machine')
    configs = [('FaissKMeans', 1), ('TorchKMeans', 1)] + [
        ('DistributedKMeans', w) for w in args.worlds]
    header = (f"{'method':<18} {'world':>5} {'thr':>3} {'time s':>7} "
              f"{'time/base':>9} {'peak MiB':>8} {'peak/base':>9} "
              f"{'input MiB':>9} {'fit MiB':>7} {'model MiB':>9} "
              f"{'inertia/base':>12}")
    print(header)
    print('-' * len(header))
    base = None
    with tempfile.TemporaryDirectory() as out_dir:
        for method, world_size in configs:
            reports = run(method, world_size, opts, out_dir)
            seconds = max(r['seconds'] for r in reports)
            peak = max(r['peak_kib'] for r in reports) / 1024
            fit = max(r['peak_kib'] - r['rss_before_kib']
                      for r in reports) / 1024
            rows = max(r['rows'] for r in reports)
            inertia = reports[0]['inertia']
            base = base or (seconds, peak, inertia)
            model = '-'
            if method == 'DistributedKMeans':
                model = MemoryEstimate(sharded_fit_phases(
                    rows, args.num_points, args.dim,
                    args.clusters)).peak / 2**20
                model = f'{model:.0f}'
            print(f'{method:<18} {world_size:>5} {reports[0]["threads"]:>3} '
                  f'{seconds:>7.2f} {seconds / base[0]:>9.2f} {peak:>8.0f} '
                  f'{peak / base[1]:>9.2f} {rows * args.dim * 4 / 2**20:>9.0f}'
                  f' {fit:>7.0f} {model:>9} {inertia / base[2]:>12.4f}')


if __name__ == '__main__':
    main()
