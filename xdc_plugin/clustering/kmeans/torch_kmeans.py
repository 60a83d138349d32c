"""``TorchKMeans``: pure-torch Lloyd iterations on the features' device."""
import math

import torch

from xdc_plugin.clustering.collectives import LOCAL
from xdc_plugin.clustering.kmeans.base import BaseKMeans
from xdc_plugin.clustering.kmeans.empty_clusters import split_empty_centroids
from xdc_plugin.clustering.kmeans.ops import (assign, cluster_statistics,
                                              kmeans_plus_plus)
from xdc_plugin.registry import CLUSTERERS


@CLUSTERERS.register_module()
class TorchKMeans(BaseKMeans):
    """Pure-torch k-means on the features' device. ``use_gpu``: ``'auto'``
    keeps the features where they are, ``True`` moves them to CUDA
    (required), ``False`` to the CPU. Distances are computed in blocks of
    ``2**24`` entries (N=100k, D=512, K=256 needs the features plus ~64 MiB).
    """

    def _device(self, x):
        if self.use_gpu is True:
            if not torch.cuda.is_available():
                raise RuntimeError('TorchKMeans(use_gpu=True) but CUDA is '
                                   'not available')
            return torch.device('cuda') if x.device.type != 'cuda' else \
                x.device
        if self.use_gpu is False:
            return torch.device('cpu')
        return x.device

    def _init_centroids(self, x, generator):
        n, k = len(x), self.num_clusters
        if self.init == 'random':
            idx = torch.randperm(n, generator=generator)[:k].to(x.device)
            return x[idx].clone()
        return kmeans_plus_plus(x, k, generator)

    def _lloyd(self, x, centroids, generator, collectives=LOCAL):
        """Up to ``num_iters`` Lloyd iterations from ``centroids`` on the
        rows ``x`` (this rank's share of them when ``collectives`` spans
        several ranks: the statistics are all-reduced, so every rank holds
        the same centroids). Stops once an iteration leaves the centroids
        unchanged (no label moved: every later iteration would repeat it;
        faiss stops there too). Returns (centroids, objective of the last
        assignment)."""
        k, dim = centroids.shape
        objective = math.inf
        for it in range(self.num_iters):
            self.iterations_run_ += 1
            previous = centroids
            labels, dists = assign(x, centroids)
            stats = collectives.all_reduce_sum(
                cluster_statistics(x, labels, dists, k))
            sums, counts, sse = stats[:, :dim], stats[:, dim], stats[:, -1]
            objective = float(sse.sum())
            centroids = torch.where(
                counts[:, None] > 0,
                (sums / counts.clamp_min(1)[:, None]).float(), centroids)
            counts_cpu = counts.long().cpu()
            if (counts_cpu == 0).any():
                sq_radius = (sse / counts.clamp_min(1) / dim).cpu()
                num_split = split_empty_centroids(centroids, counts_cpu,
                                                  sq_radius, generator)
                self._log(f'iter {it}: split {num_split} empty clusters')
            self._log(f'iter {it}: objective {objective:.6g}')
            if torch.equal(centroids, previous):
                self._log(f'converged after {it + 1} iterations')
                break
        return centroids, objective

    def _train(self, x, generator, init_centroids=None):
        mppc = self.max_points_per_centroid
        if mppc is not None and len(x) > self.num_clusters * mppc:
            idx = torch.randperm(len(x), generator=generator)
            x = x[idx[:self.num_clusters * mppc].to(x.device)]
        if init_centroids is not None:
            return self._lloyd(x, init_centroids, generator)[0]
        best, best_obj = None, math.inf
        for _ in range(self.num_redo):
            centroids, objective = self._lloyd(
                x, self._init_centroids(x, generator), generator)
            if best is None or objective < best_obj:
                best, best_obj = centroids, objective
        return best
