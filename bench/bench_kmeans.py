"""Wall time and inertia: raw faiss.Kmeans vs FaissKMeans vs TorchKMeans.

Data: a Gaussian mixture with 256 true centres (N(0, 1) in d dimensions)
and unit-variance noise, fixed seed. Every method runs ``--iters`` Lloyd
iterations with random initialisation on every point (faiss's
``max_points_per_centroid`` raised so it does not subsample), without
preprocessing, so the inertias are comparable. The inertia of every method
is the exact sum of squared distances of each point to its assigned final
centroid (the baseline's assignment is faiss's ``index.search``).

    python bench/bench_kmeans.py --sizes 10000 100000 --iters 10
"""
import argparse
import math
import time

import faiss
import numpy as np
import torch

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import FaissKMeans, TorchKMeans
from xdc_plugin.clustering.kmeans import exact_inertia


def mixture(n, d, k, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d), dtype=np.float32)
    labels = rng.integers(0, k, n)
    noise = rng.standard_normal((n, d), dtype=np.float32)
    return centres[labels] + noise


def raw_faiss(x, k, iters, seed):
    n, d = x.shape
    km = faiss.Kmeans(d, k, niter=iters, seed=seed,
                      max_points_per_centroid=math.ceil(n / k),
                      min_points_per_centroid=1)
    km.train(x)
    _, idx = km.index.search(x, 1)
    return km.centroids, idx[:, 0]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[10000, 100000])
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--clusters', type=int, default=256)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    print(f'faiss {faiss.__version__}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} torch threads, '
          f'{faiss.omp_get_max_threads()} faiss threads, '
          f'd={args.dim}, k={args.clusters}, iters={args.iters}')
    header = (f"{'method':<12} {'N':>7} {'time s':>8} {'inertia':>14} "
              f"{'time/base':>9} {'inertia/base':>12}")
    print(header)
    print('-' * len(header))
    common = dict(num_clusters=args.clusters, num_iters=args.iters,
                  seed=args.seed, preprocess=None, use_gpu=False)
    for n in args.sizes:
        x = mixture(n, args.dim, args.clusters, args.seed)
        xt = torch.from_numpy(x)
        base_time, (centroids, labels) = timed(
            lambda: raw_faiss(x, args.clusters, args.iters, args.seed))
        base_inertia = exact_inertia(xt, torch.from_numpy(centroids),
                                     torch.from_numpy(labels))
        rows = [('faiss.Kmeans', base_time, base_inertia)]
        for name, cls in (('FaissKMeans', FaissKMeans),
                          ('TorchKMeans', TorchKMeans)):
            seconds, result = timed(lambda: cls(**common).fit(x))
            rows.append((name, seconds, result.inertia))
        for name, seconds, inertia in rows:
            print(f'{name:<12} {n:>7} {seconds:>8.2f} {inertia:>14.6g} '
                  f'{seconds / base_time:>9.2f} '
                  f'{inertia / base_inertia:>12.4f}')


if __name__ == '__main__':
    main()
