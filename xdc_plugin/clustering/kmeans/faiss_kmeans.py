"""``FaissKMeans``: k-means trained by faiss (CPU or GPU)."""
import logging
import math

import numpy as np
import torch
from mmengine.logging import print_log

from xdc_plugin.clustering.kmeans.base import BaseKMeans
from xdc_plugin.registry import CLUSTERERS


def import_faiss():
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            'FaissKMeans needs faiss: pip install -e ".[cpu]" (or ".[gpu]" '
            'for the GPU build on a GPU machine)') from exc
    return faiss


@CLUSTERERS.register_module()
class FaissKMeans(BaseKMeans):
    """``faiss.Kmeans`` with our preprocessing, final assignment, re-split
    and inertia. ``use_gpu``: ``'auto'`` trains on the GPU when the features
    are on one (the model's device: the clustering hook keeps them there)
    and the installed faiss sees a GPU, else on the CPU; ``True`` requires
    faiss's GPU build; ``False`` forces the CPU. On the GPU faiss uses one
    device, the features' (CPU features: ``torch.cuda.current_device()``,
    the rank's own), never every GPU it sees. Preprocessing runs on the CPU
    (faiss takes host arrays). ``init='k-means++'`` needs a faiss with
    ``ClusteringInitMethod_KMEANS_PLUS_PLUS`` (1.13+). faiss draws its own
    random numbers from ``seed``, so the clustering differs from
    ``TorchKMeans``'s with the same seed.
    """

    _gpu_device = None  # set by each fit

    def fit(self, features, init_centroids=None):
        self._gpu_device = self._faiss_gpu_device(features)
        return super().fit(features, init_centroids)

    def _faiss_gpu_device(self, features):
        """The CUDA device faiss trains on for ``features``, or None."""
        if self.use_gpu is False:
            return None
        faiss = import_faiss()
        num_gpus = faiss.get_num_gpus() if hasattr(faiss,
                                                   'get_num_gpus') else 0
        on_cuda = getattr(features, 'is_cuda', False)
        if num_gpus == 0:
            if self.use_gpu is True:
                raise RuntimeError(
                    'FaissKMeans(use_gpu=True) but faiss sees no GPU (the '
                    'faiss-cpu build, or no device): pip install -e ".[gpu]"'
                    ' on a GPU machine')
            if on_cuda:
                print_log('FaissKMeans: the features are on the GPU but the '
                          'installed faiss is the CPU build; clustering on '
                          'the CPU (pip install -e ".[gpu]" for faiss-gpu)',
                          logger='current', level=logging.WARNING)
            return None
        if on_cuda:
            return features.device.index
        return torch.cuda.current_device() if self.use_gpu is True else None

    def _device(self, x):
        return torch.device('cpu')

    def _faiss_kmeans(self, n, d):
        faiss = import_faiss()
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
        kmeans = faiss.Kmeans(d, self.num_clusters, **kwargs)
        if self._gpu_device is not None:
            # faiss.Kmeans(gpu=...) would spread over GPUs 0..n-1: one
            # device only, this rank's.
            self._gpu_resources = faiss.StandardGpuResources()
            kmeans.index = faiss.index_cpu_to_gpu(
                self._gpu_resources, self._gpu_device, kmeans.index)
        return kmeans

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
