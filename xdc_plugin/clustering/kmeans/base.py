"""What every clusterer shares: ``ClusterResult`` and ``BaseKMeans`` (the
arguments and the fit pipeline).

One fit is: preprocess (``FeaturePreprocessor``), train ``num_iters`` Lloyd
iterations (``num_redo`` times, keeping the lowest objective), assign every
point to its nearest centroid, re-split the clusters that came out empty
(``empty_clusters.py``), and report the inertia of that final assignment.
The final assignment yields each point's squared distance (faiss's search
returns it), so the inertia needs no further pass over the points; only the
rows of re-split clusters get theirs recomputed.

Random choices (initial centroids, subsampling, donors, directions) come from
a CPU ``torch.Generator`` seeded with ``seed``, so a CPU fit is deterministic
and a GPU fit starts from the same centroids as a CPU fit.
"""
import logging
import types
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from mmengine.logging import print_log

from xdc_plugin.clustering.collectives import LOCAL
from xdc_plugin.clustering.kmeans.empty_clusters import resplit_empty_clusters
from xdc_plugin.clustering.kmeans.ops import all_finite, assign
from xdc_plugin.clustering.preprocess import (FeaturePreprocessor,
                                              as_float_tensor)

DEFAULT_PREPROCESS = types.MappingProxyType(
    dict(pca_dim=None, whiten=False, l2_normalize=True))


@dataclass
class ClusterResult:
    """Outcome of a clusterer's ``fit``.

    Attributes:
        labels: int64 (N,), cluster of every point, in ``[0, K)``.
        centroids: float32 (K, D'), in the preprocessed feature space.
        inertia: sum of squared distances of every point to the centroid of
            its label (each in float32, as ``|x|^2 + |c|^2 - 2 x.c``;
            summed in float64).
        num_resplit: number of clusters that the final assignment left empty
            and that were re-split.
        counts: int64 (K,), points per cluster (all > 0).
        distances: float32, for the points of ``labels``: Euclidean
            distance to the centroid of their label, in the preprocessed
            space.
        preprocess: ``FeaturePreprocessor.state_dict()`` of the space the
            centroids live in, or None (raw features).
    """
    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    num_resplit: int
    counts: np.ndarray
    distances: np.ndarray
    preprocess: Optional[dict] = None

    @property
    def num_clusters(self):
        return len(self.counts)


class BaseKMeans:
    """Arguments and the fit pipeline shared by the clusterers.

    Args:
        num_clusters: K.
        num_iters: Lloyd iterations per run.
        num_redo: runs from different initialisations; the one with the
            lowest training objective is kept.
        seed: seed of every random choice.
        preprocess: ``FeaturePreprocessor`` arguments, or ``None`` for the
            raw features. The centroids live in the preprocessed space.
        max_points_per_centroid: train on a random subset of
            ``K * max_points_per_centroid`` points when there are more
            (faiss's default is 256); ``None`` trains on every point. The
            final assignment always covers every point.
        use_gpu: ``'auto'``, ``True`` or ``False`` (see each class).
        verbose: log the per-iteration objective and a summary.
        init: ``'random'`` (K distinct random points, faiss's default) or
            ``'k-means++'``.
    """

    INITS = ('random', 'k-means++')

    def __init__(self, num_clusters, num_iters=20, num_redo=1, seed=0,
                 preprocess=DEFAULT_PREPROCESS, max_points_per_centroid=None,
                 use_gpu='auto', verbose=False, init='random'):
        if int(num_clusters) < 1:
            raise ValueError(f'num_clusters must be >= 1, got {num_clusters}')
        if int(num_iters) < 1 or int(num_redo) < 1:
            raise ValueError('num_iters and num_redo must be >= 1')
        if (max_points_per_centroid is not None
                and int(max_points_per_centroid) < 1):
            raise ValueError('max_points_per_centroid must be >= 1 or None')
        if use_gpu not in ('auto', True, False):
            raise ValueError(f"use_gpu must be 'auto', True or False, got "
                             f'{use_gpu!r}')
        if init not in self.INITS:
            raise ValueError(f'init must be one of {self.INITS}, got {init!r}')
        self.num_clusters = int(num_clusters)
        self.num_iters = int(num_iters)
        self.num_redo = int(num_redo)
        self.seed = int(seed)
        self.preprocess = None if preprocess is None else dict(preprocess)
        self.max_points_per_centroid = (None if max_points_per_centroid is None
                                        else int(max_points_per_centroid))
        self.use_gpu = use_gpu
        self.verbose = bool(verbose)
        self.init = init
        self.preprocessor = None
        # Lloyd iterations the last fit ran, over its runs (``num_redo``);
        # fewer than ``num_iters`` a run when it converged.
        self.iterations_run_ = 0

    def _device(self, x):
        raise NotImplementedError

    def _train(self, x, generator, init_centroids=None):
        """Centroids (K, D') trained on ``x`` (on ``x``'s device), from
        ``init_centroids`` (one run) when given."""
        raise NotImplementedError

    def _assign(self, x, centroids):
        """(labels int64, squared distances float32) of the rows of ``x``
        to their nearest centroid, on ``x``'s device."""
        return assign(x, centroids)

    def _log(self, msg):
        if self.verbose:
            print_log(f'{type(self).__name__}: {msg}', logger='current',
                      level=logging.INFO)

    def fit(self, features, init_centroids=None):
        """Cluster ``features`` (N, D), a numpy array or a torch tensor,
        starting from ``init_centroids`` (K, D') in the preprocessed space
        when given (one run: needs ``num_redo=1``)."""
        x = as_float_tensor(features)
        n = len(x)
        if n < self.num_clusters:
            raise ValueError(f'cannot make {self.num_clusters} clusters from '
                             f'{n} points (need N >= num_clusters)')
        x = x.to(self._device(x))
        if self.preprocess is not None:
            self.preprocessor = FeaturePreprocessor(**self.preprocess)
            x = self.preprocessor.fit_transform(x)
        else:
            self.preprocessor = None
        if not all_finite(x):
            raise ValueError('features contain NaN or Inf')
        if init_centroids is not None:
            init_centroids = self._check_init(init_centroids, x)
        generator = torch.Generator().manual_seed(self.seed)
        self.iterations_run_ = 0
        centroids = self._train(x, generator, init_centroids).to(
            x.device, torch.float32)
        centroids = centroids.contiguous().clone()
        labels, sq_dists = self._assign(x, centroids)
        return self._result(x, labels, sq_dists, centroids, generator)

    def _result(self, x, labels, sq_dists, centroids, generator,
                indices=None, collectives=LOCAL):
        """Re-split the empty clusters of the final assignment and report
        it (``x``, ``labels`` and their squared distances ``sq_dists``:
        this rank's rows under ``collectives``; see
        ``resplit_empty_clusters``). The inertia is the float64 sum of the
        assignment's squared distances, so it costs no pass over ``x``."""
        labels, centroids, num_resplit = resplit_empty_clusters(
            x, labels, centroids, generator, indices, collectives, sq_dists)
        inertia = float(collectives.all_reduce_sum(
            sq_dists.sum(dtype=torch.float64)))
        counts = collectives.all_reduce_sum(
            torch.bincount(labels, minlength=self.num_clusters))
        self._log(f'N={int(counts.sum())} K={self.num_clusters} ranks='
                  f'{collectives.world_size} inertia={inertia:.6g} '
                  f'resplit={num_resplit}')
        return ClusterResult(
            labels=labels.cpu().numpy().astype(np.int64),
            centroids=centroids.cpu().numpy().astype(np.float32),
            inertia=inertia, num_resplit=num_resplit,
            counts=counts.cpu().numpy().astype(np.int64),
            distances=sq_dists.sqrt().cpu().numpy(),
            preprocess=(None if self.preprocessor is None else
                        self.preprocessor.state_dict()))

    def _check_init(self, init_centroids, x):
        """``init_centroids`` as float32 on ``x``'s device, or a clear
        error."""
        if self.num_redo != 1:
            raise ValueError('init_centroids gives a single run; set '
                             f'num_redo=1 (got {self.num_redo})')
        init = as_float_tensor(init_centroids).to(x.device)
        if init.shape != (self.num_clusters, x.shape[1]):
            raise ValueError(f'init_centroids must have shape '
                             f'({self.num_clusters}, {x.shape[1]}) (the '
                             f'preprocessed space), got {tuple(init.shape)}')
        return init.clone()

    def __repr__(self):
        return (f'{type(self).__name__}(num_clusters={self.num_clusters}, '
                f'num_iters={self.num_iters}, num_redo={self.num_redo}, '
                f'seed={self.seed}, preprocess={self.preprocess}, '
                f'max_points_per_centroid={self.max_points_per_centroid}, '
                f'use_gpu={self.use_gpu!r}, init={self.init!r})')
