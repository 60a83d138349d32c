"""``FaissKMeans``: k-means trained by faiss (CPU or GPU)."""
import math

import numpy as np
import torch

from xdc_plugin.clustering.kmeans.base import BaseKMeans
from xdc_plugin.registry import CLUSTERERS


@CLUSTERERS.register_module()
class FaissKMeans(BaseKMeans):
    """``faiss.Kmeans`` with our preprocessing, final assignment, re-split
    and inertia. ``use_gpu``: ``'auto'`` uses every GPU faiss sees (none:
    CPU), ``True`` requires one, ``False`` forces the CPU. Preprocessing
    runs on the CPU (faiss takes host arrays). ``init='k-means++'`` needs a
    faiss with ``ClusteringInitMethod_KMEANS_PLUS_PLUS`` (1.13+). faiss
    draws its own random numbers from ``seed``, so the clustering differs
    from ``TorchKMeans``'s with the same seed.
    """

    def _gpu(self):
        import faiss
        num_gpus = faiss.get_num_gpus() if hasattr(faiss,
                                                   'get_num_gpus') else 0
        if self.use_gpu is True and num_gpus == 0:
            raise RuntimeError('FaissKMeans(use_gpu=True) but faiss sees no '
                               'GPU (faiss-cpu build or no device)')
        return self.use_gpu is not False and num_gpus > 0

    def _device(self, x):
        return torch.device('cpu')

    def _faiss_kmeans(self, n, d):
        import faiss
        mppc = self.max_points_per_centroid
        if mppc is None:  # faiss subsamples above K * mppc points
            mppc = max(1, math.ceil(n / self.num_clusters))
        kwargs = dict(niter=self.num_iters, nredo=self.num_redo,
                      seed=self.seed, verbose=self.verbose,
                      max_points_per_centroid=mppc,
                      # only silences faiss's "too few points" warning
                      min_points_per_centroid=1)
        if self.init == 'k-means++':
            method = getattr(faiss, 'ClusteringInitMethod_KMEANS_PLUS_PLUS',
                             None)
            if method is None:
                raise RuntimeError(f'faiss {faiss.__version__} has no '
                                   "k-means++ init; use init='random'")
            kwargs['init_method'] = method
        if self._gpu():
            kwargs['gpu'] = True
        return faiss.Kmeans(d, self.num_clusters, **kwargs)

    def _train(self, x, generator, init_centroids=None):
        xn = np.ascontiguousarray(x.numpy())
        self._kmeans = self._faiss_kmeans(*xn.shape)
        self._kmeans.train(xn, init_centroids=None if init_centroids is None
                           else init_centroids.numpy())
        self.iterations_run_ = len(self._kmeans.iteration_stats)
        return torch.from_numpy(
            np.array(self._kmeans.centroids, dtype=np.float32))

    def _assign(self, x, centroids):
        # The trained index holds ``centroids``; its search returns squared
        # L2 distances, so the inertia comes with the labels.
        sq_dists, idx = self._kmeans.index.search(x.numpy(), 1)
        labels = torch.from_numpy(idx[:, 0])
        if (labels < 0).any():  # faiss returns -1 for NaN distances
            raise RuntimeError('faiss assignment returned -1 labels')
        return labels, torch.from_numpy(sq_dists[:, 0]).clamp_min_(0)
