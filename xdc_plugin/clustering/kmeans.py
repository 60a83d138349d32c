"""k-means clusterers for pseudo-labels: ``fit(features) -> ClusterResult``.

Two registered implementations share arguments, preprocessing, the final
assignment's empty-cluster re-split and the reported inertia:

* ``FaissKMeans`` wraps ``faiss.Kmeans`` (on the GPUs when faiss sees any and
  ``use_gpu`` allows);
* ``TorchKMeans`` is pure torch and runs on the features' device;
  ``DistributedKMeans`` (``distributed.py``) runs its iteration on rows
  sharded across ranks (the statistics go through ``collectives``).

One fit is: preprocess (``FeaturePreprocessor``), train ``num_iters`` Lloyd
iterations (``num_redo`` times, keeping the lowest objective), assign every
point to its nearest centroid, re-split the clusters that came out empty,
and report the inertia of that final assignment. The final assignment
yields each point's squared distance (faiss's search returns it), so the
inertia needs no further pass over the points; only the rows of re-split
clusters get theirs recomputed.

Empty clusters
--------------
*During training* an empty cluster takes the place of half of a donor
cluster, as faiss does: the donor is drawn with probability proportional to
its size and its centroid ``c`` is replaced by ``c + s*u`` and ``c - s*u``
(``u`` a random unit direction, ``s`` 1% of the donor's RMS radius), and the
next assignment splits the donor's points between the two.

*After the final assignment* (where k-means leaves no guarantee) each empty
cluster is filled in the same way, except that only the donor's points are
reassigned, to the nearer of ``c +- s*u``, that is by the sign of their
projection on ``u`` (for any ``s > 0``), and both centroids are then set to
the mean of their points. Donors must hold at least 2 points, so a split
never empties another cluster and ``num_resplit`` is exactly the number of
clusters that were empty; with ``N >= K`` a donor always exists. If every
donor point projects to the same side (duplicate points) the points are
split in half by rank of projection instead. After a re-split, a moved point
is labelled with the nearer of the split pair, not necessarily its nearest
centroid overall.

Random choices (initial centroids, subsampling, donors, directions) come from
a CPU ``torch.Generator`` seeded with ``seed``, so a CPU fit is deterministic
and a GPU fit starts from the same centroids as a CPU fit.
"""
import logging
import math
import types
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from mmengine.logging import print_log

from xdc_plugin.clustering.collectives import LOCAL
from xdc_plugin.clustering.preprocess import (FeaturePreprocessor,
                                              as_float_tensor)
from xdc_plugin.registry import CLUSTERERS

DEFAULT_PREPROCESS = types.MappingProxyType(
    dict(pca_dim=None, whiten=False, l2_normalize=True))

# Elements of one (rows x K) block of squared distances (64 MiB in float32).
_BLOCK_ELEMENTS = 1 << 24
# Training-time split: offset as a fraction of the donor's RMS radius.
_SPLIT_OFFSET = 1e-2


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


def _rows_per_block(columns):
    return max(1, _BLOCK_ELEMENTS // max(1, columns))


def assign(x, centroids):
    """Nearest centroid of every row of ``x``: (labels int64, squared
    distances float32), as ``|x|^2 + min_c (|c|^2 - 2 x.c)`` (float32
    arithmetic, also for float16 rows). Row blocks reuse one distance
    buffer, and ``|x|^2`` is added to the minimum only, not to every entry.
    """
    c_sq = (centroids * centroids).sum(1)
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    dists = torch.empty(len(x), dtype=torch.float32, device=x.device)
    # Blocks bound both the distances and a float16 block's float32 copy.
    step = _rows_per_block(max(len(centroids), x.shape[1]))
    block = torch.empty(min(step, len(x)), len(centroids),
                        dtype=torch.float32, device=x.device)
    for start in range(0, len(x), step):
        xb = x[start:start + step].float()
        d = torch.addmm(c_sq, xb, centroids.T, alpha=-2.0,
                        out=block[:len(xb)])
        best, idx = dists[start:start + step], labels[start:start + step]
        torch.min(d, dim=1, out=(best, idx))
        best += torch.linalg.vector_norm(xb, dim=1).square_()
    return labels, dists.clamp_min_(0)


def _membership(labels, num_clusters):
    """Sparse (K, n) 0/1 matrix of the clusters' members: its product with
    the rows sums them per cluster. (On the CPU, ``index_add_`` along rows
    adds one row at a time and was 5-50x slower on 2 threads.)"""
    n = len(labels)
    index = torch.stack([labels, torch.arange(n, device=labels.device)])
    return torch.sparse_coo_tensor(
        index, torch.ones(n, device=labels.device), (num_clusters, n),
        check_invariants=True)  # bounds of the labels: O(n)


def cluster_statistics(x, labels, dists, num_clusters):
    """Per-cluster ``[sum of rows (D), count, sum of squared distances]``
    as one float64 (K, D + 2) tensor, ready for a single all-reduce. Row
    sums are float32 within blocks of rows and float64 across them (as fast
    as a float32 sum, about as exact as a float64 one)."""
    dim = x.shape[1]
    stats = torch.zeros(num_clusters, dim + 2, dtype=torch.float64,
                        device=x.device)
    step = _rows_per_block(dim)
    for start in range(0, len(x), step):
        rows = slice(start, start + step)
        stats[:, :dim] += torch.sparse.mm(
            _membership(labels[rows], num_clusters), x[rows].float())
    stats[:, dim] = torch.bincount(labels, minlength=num_clusters)
    stats[:, dim + 1].index_add_(0, labels, dists.double())
    return stats


def all_finite(x):
    """True when ``x`` holds no NaN or Inf. Its minimum and maximum carry
    both (NaN propagates, +-Inf is an extreme): one read of ``x`` and no
    temporary (``isfinite(x).all()`` allocates masks as large as ``x``)."""
    if x.numel() == 0:  # e.g. a rank that holds no rows
        return True
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def _random_direction(dim, generator, device):
    u = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (u / u.norm().clamp_min(1e-300)).float().to(device)


def _draw_donor(counts, generator, min_size):
    """A cluster with at least ``min_size`` points, drawn with probability
    proportional to its size (``counts`` is a CPU int64 tensor)."""
    weights = torch.where(counts >= min_size, counts,
                          torch.zeros_like(counts)).double()
    return int(torch.multinomial(weights, 1, generator=generator))


def _split_empty_centroids(centroids, counts, sq_radius, generator):
    """Training-time split (in place): each empty cluster becomes a shifted
    copy of a donor drawn by size. ``counts``/``sq_radius`` are CPU tensors
    (points and mean squared distance to the centroid per cluster)."""
    num_split = 0
    for e in torch.nonzero(counts == 0).flatten().tolist():
        j = _draw_donor(counts, generator, min_size=1)
        rms = math.sqrt(max(float(sq_radius[j]), 0.0))
        if rms == 0.0:
            rms = float(centroids[j].norm()) / math.sqrt(centroids.shape[1])
        offset = _SPLIT_OFFSET * (rms if rms > 0 else 1.0)
        u = _random_direction(centroids.shape[1], generator, centroids.device)
        centroids[e] = centroids[j] + offset * u
        centroids[j] -= offset * u
        counts[e] = counts[j] // 2
        counts[j] -= counts[e]
        sq_radius[e] = sq_radius[j]
        num_split += 1
    return num_split


def _largest_projections(proj, indices, num, collectives):
    """Mask of the local entries among the ``num`` largest projections of
    all ranks (ties: lower dataset index first, i.e. what a stable sort of
    the rows in dataset order picks)."""
    all_proj = collectives.all_gather_cat(proj)
    all_indices = collectives.all_gather_cat(indices)
    by_index = torch.argsort(all_indices, stable=True)
    order = by_index[torch.argsort(all_proj[by_index], descending=True,
                                   stable=True)]
    return torch.isin(indices, all_indices[order[:num]])


def resplit_empty_clusters(x, labels, centroids, generator, indices=None,
                           collectives=LOCAL, sq_dists=None):
    """Fill every empty cluster of the assignment ``labels`` by splitting a
    donor (see the module docstring). Returns ``(labels, centroids,
    num_resplit)``; ``labels`` and ``centroids`` are updated in place, and
    so are the squared distances ``sq_dists`` (N,) when given (only the
    rows of the clusters a split touched are recomputed).

    With ``collectives`` over several ranks, ``x``/``labels`` are this
    rank's rows and ``indices`` their dataset indices (default: row
    numbers); every decision is taken from all-reduced counts and the
    shared ``generator``, so every rank makes the same splits.
    """
    num_clusters = len(centroids)
    counts = collectives.all_reduce_sum(
        torch.bincount(labels, minlength=num_clusters)).cpu()
    if int(counts.sum()) < num_clusters:
        raise ValueError(f'cannot fill {num_clusters} clusters with '
                         f'{int(counts.sum())} points')
    if indices is None:
        indices = torch.arange(len(x), device=x.device)
    touched = torch.zeros(num_clusters, dtype=torch.bool, device=x.device)
    num_resplit = 0
    for e in torch.nonzero(counts == 0).flatten().tolist():
        j = _draw_donor(counts, generator, min_size=2)
        members = torch.nonzero(labels == j).flatten()
        u = _random_direction(x.shape[1], generator, x.device)
        proj = (x[members] - centroids[j]) @ u
        to_new = proj > 0
        num_new = int(collectives.all_reduce_sum(to_new.sum()))
        if num_new == 0 or num_new == int(counts[j]):
            num_new = int(counts[j]) // 2
            to_new = _largest_projections(proj, indices[members], num_new,
                                          collectives)
        labels[members[to_new]] = e
        halves = torch.stack([x[members[to_new]].double().sum(0),
                              x[members[~to_new]].double().sum(0)])
        halves = collectives.all_reduce_sum(halves)
        centroids[e] = (halves[0] / num_new).float()
        centroids[j] = (halves[1] / (int(counts[j]) - num_new)).float()
        counts[e] = num_new
        counts[j] -= num_new
        touched[[e, j]] = True
        num_resplit += 1
    if sq_dists is not None and num_resplit:
        rows = torch.nonzero(touched[labels]).flatten()
        sq_dists[rows] = (x[rows] - centroids[labels[rows]]).pow(2).sum(1)
    return labels, centroids, num_resplit


def _kmeans_plus_plus(x, k, generator):
    """Greedy k-means++: each new centre is the best (lowest resulting
    potential) of ``2 + ln(k)`` candidates drawn with probability
    proportional to the squared distance to the nearest chosen centre.
    Candidates are drawn by inverse CDF with CPU random numbers, so any N
    and any device work and CPU/GPU draws agree."""
    n = len(x)
    trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(1)

    def sq_dists(points):  # (n, len(points)), clamped at 0
        d = torch.addmm((points * points).sum(1), x, points.T, alpha=-2.0)
        return (d + x_sq[:, None]).clamp_min_(0)

    centroids = x.new_empty((k, x.shape[1]))
    first = int(torch.randint(n, (1, ), generator=generator))
    centroids[0] = x[first]
    closest = sq_dists(x[first:first + 1])[:, 0].double()
    for i in range(1, k):
        cdf = torch.cumsum(closest, 0)
        total = float(cdf[-1])
        u = torch.rand(trials, generator=generator, dtype=torch.float64)
        if total <= 0:  # every point coincides with a chosen centre
            picks = (u * n).long().clamp_max(n - 1).to(x.device)
        else:
            picks = torch.searchsorted(cdf, (u * total).to(x.device),
                                       right=True).clamp_max(n - 1)
        candidate = torch.minimum(closest[:, None],
                                  sq_dists(x[picks]).double())
        best = int(candidate.sum(0).argmin())
        centroids[i] = x[picks[best]]
        closest = candidate[:, best].contiguous()
    return centroids


class _BaseKMeans:
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


@CLUSTERERS.register_module()
class FaissKMeans(_BaseKMeans):
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


@CLUSTERERS.register_module()
class TorchKMeans(_BaseKMeans):
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
        return _kmeans_plus_plus(x, k, generator)

    def _lloyd(self, x, centroids, generator, collectives=LOCAL):
        """``num_iters`` Lloyd iterations from ``centroids`` on the rows
        ``x`` (this rank's share of them when ``collectives`` spans several
        ranks: the statistics are all-reduced, so every rank holds the same
        centroids). Returns (centroids, objective of the last
        assignment)."""
        k, dim = centroids.shape
        objective = math.inf
        for it in range(self.num_iters):
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
                num_split = _split_empty_centroids(centroids, counts_cpu,
                                                   sq_radius, generator)
                self._log(f'iter {it}: split {num_split} empty clusters')
            self._log(f'iter {it}: objective {objective:.6g}')
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
