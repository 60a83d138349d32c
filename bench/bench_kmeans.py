"""One clustering step: bare faiss.Kmeans vs our clusterers vs scikit-learn.

Data: L2-normalised rows of a mixture of 256 overlapping Gaussians (centres
N(0, 0.3^2), unit noise, ``--dim`` dimensions): the rows a round clusters
after its default preprocessing, on which Lloyd's iterations keep moving
points for at least 20 iterations as they do on encoder features (on well
separated blobs scikit-learn stops after a few, once no label changes).
Every method runs up to the same number of Lloyd iterations on every row
from the same initial centroids (``K`` rows drawn by a seeded permutation)
and ends with the assignment of every row to the final centroids; that is
the timed work. Each stops early once an iteration changes nothing (faiss
and ours: the objective or the centroids; scikit-learn: the labels), as all
do with fewer than a few points per centroid; the ``iters`` column says how
many each ran.

* ``faiss.Kmeans``: ``train(x, init_centroids=...)`` (no subsampling) and
  ``index.search(x, 1)``: the baseline (1.00);
* ``FaissKMeans``, ``TorchKMeans``, ``DistributedKMeans`` (one process):
  ``fit(x, init_centroids=...)`` with the default preprocessing (L2
  normalisation: a near no-op on these rows that still costs its pass), so
  the ratio includes everything our step adds (checks, normalisation,
  final assignment, re-split, inertia, copies);
* ``sklearn KMeans``: ``algorithm='lloyd'``, ``n_init=1``, ``tol=0``,
  ``max_iter`` iterations.

``inertia/faiss``: the inertia of each method's final labels and centroids,
all measured by one explicit float64 computation outside the timed part.
``time/faiss`` is the wall-time ratio, ``cpu/faiss`` the ratio of process
CPU time (less sensitive to other load on a shared machine). Each method
first runs once, untimed, on a small slice (thread pools and lazy
initialisation); with ``--repeats R`` the methods then run R times, each
time in a rotated order, and the table keeps each one's fastest run.

    python bench/bench_kmeans.py --sizes 10000 100000 --clusters 256
    python bench/bench_kmeans.py --sizes 1000000 --clusters 256 4096 \\
        --heavy-iters 5
"""
import argparse
import math
import os
import platform
import time

import faiss
import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_info, threadpool_limits

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import (DistributedKMeans, FaissKMeans,
                                   TorchKMeans)

_BLOCK_ROWS = 16384


def bare_faiss(x, init, iters):
    n, d = x.shape
    k = len(init)
    no_subsampling = math.ceil(n / k)
    km = faiss.Kmeans(d, k, niter=iters, min_points_per_centroid=1,
                      max_points_per_centroid=no_subsampling)
    km.train(x, init_centroids=init)
    _, idx = km.index.search(x, 1)
    return km.centroids, idx[:, 0], len(km.iteration_stats)


def ours(cls):
    def run(x, init, iters):
        clusterer = cls(len(init), num_iters=iters, use_gpu=False)
        result = clusterer.fit(x, init_centroids=init)
        return result.centroids, result.labels, clusterer.iterations_run_
    return run


def sklearn_lloyd(x, init, iters):
    km = KMeans(len(init), init=init, n_init=1, max_iter=iters, tol=0,
                algorithm='lloyd').fit(x)
    return km.cluster_centers_, km.labels_, km.n_iter_


METHODS = {
    'faiss.Kmeans': bare_faiss,
    'FaissKMeans': ours(FaissKMeans),
    'TorchKMeans': ours(TorchKMeans),
    'DistributedKMeans': ours(DistributedKMeans),
    'sklearn KMeans': sklearn_lloyd,
}
BASELINE = 'faiss.Kmeans'


def inertia(x, centroids, labels):
    """Sum of ``|x_i - c_{labels_i}|^2`` in float64, by explicit
    differences."""
    centroids = np.asarray(centroids, np.float64)
    total = 0.0
    for start in range(0, len(x), _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        total += float(((x[rows] - centroids[labels[rows]])**2).sum())
    return total


def overlapping_mixture(n, dim, seed, num_centres=256, separation=0.3):
    """(n, dim) float32 rows of unit norm (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = separation * rng.standard_normal((num_centres, dim),
                                               dtype=np.float32)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    labels = rng.integers(0, num_centres, n)
    for start in range(0, n, _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        x[rows] += centres[labels[rows]]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def measure(methods, x, init, iters, repeats):
    """{method: (wall s, cpu s, iterations run, inertia)}, fastest run of
    each."""
    for name in methods:
        METHODS[name](x[:2 * len(init)], x[:len(init)], 1)
    best = {}
    for repeat in range(repeats):
        turn = repeat % len(methods)  # no method always follows the same one
        for name in methods[turn:] + methods[:turn]:
            wall, cpu = time.perf_counter(), time.process_time()
            centroids, labels, ran = METHODS[name](x, init, iters)
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, ran, centroids, labels)
    return {name: (wall, cpu, ran, inertia(x, centroids, labels))
            for name, (wall, cpu, ran, centroids, labels) in best.items()}


def cpu_name():
    with open('/proc/cpuinfo') as info:
        for line in info:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[10000, 100000])
    parser.add_argument('--clusters', type=int, nargs='+', default=[256])
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--heavy-iters', type=int, default=None,
                        help='iterations where N*K > --heavy-work')
    parser.add_argument('--heavy-work', type=float, default=1e9)
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        default=list(METHODS),
                        help=f'{BASELINE} always runs (the baseline)')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None,
                        help='threads of every library (default: theirs)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
        threadpool_limits(args.threads)
    methods = [BASELINE] + [m for m in args.methods if m != BASELINE]
    heavy_iters = args.heavy_iters or args.iters

    pools = ', '.join(sorted({f"{p['internal_api']} {p['num_threads']}"
                              for p in threadpool_info()}))
    print(f'{cpu_name()}, {os.cpu_count()} CPUs, load average '
          f'{os.getloadavg()[0]:.1f} at start')
    print(f'faiss {faiss.__version__}, torch {torch.__version__}, threads: '
          f'torch {torch.get_num_threads()}, faiss '
          f'{faiss.omp_get_max_threads()}, thread pools: {pools}')
    print(f'd={args.dim}, {args.iters} Lloyd iterations'
          + (f' ({heavy_iters} where N*K > {args.heavy_work:.0e}: compare '
             'the ratios, not the times)' if heavy_iters != args.iters
             else '')
          + f', fastest of {args.repeats} run(s)\n')
    print('| N | K | method | iters | time s | time/faiss | cpu/faiss '
          '| inertia/faiss |')
    print('|---:|---:|---|---:|---:|---:|---:|---:|')
    for n in args.sizes:
        x = overlapping_mixture(n, args.dim, args.seed)
        for k in args.clusters:
            iters = heavy_iters if n * k > args.heavy_work else args.iters
            pick = np.random.default_rng(args.seed).permutation(n)[:k]
            rows = measure(methods, x, x[pick], iters, args.repeats)
            base_wall, base_cpu, _, base_inertia = rows[BASELINE]
            for name, (wall, cpu, ran, value) in rows.items():
                print(f'| {n} | {k} | {name} | {ran} | {wall:.2f} | '
                      f'{wall / base_wall:.3f} | {cpu / base_cpu:.3f} | '
                      f'{value / base_inertia:.5f} |', flush=True)
    print(f'\nload average {os.getloadavg()[0]:.1f} at the end')


if __name__ == '__main__':
    main()
