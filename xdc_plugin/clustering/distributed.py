"""k-means over rows sharded across ranks: no rank ever holds the dataset.

``DistributedKMeans.fit_sharded`` runs on every rank with that rank's rows
and their dataset indices. It is ``TorchKMeans``'s iteration with every
statistic all-reduced (``clustering.collectives``):

* PCA (optional) from all-reduced moments: the same PCA as one process
  fitting all rows, applied to each shard; the preprocessed shard can be
  stored in float16 (arithmetic stays float32);
* E-step on the rank's rows; M-step from all-reduced per-cluster sums,
  counts and squared distances (float64), so every rank holds the same
  centroids; empty clusters are split from those all-reduced statistics
  and a generator seeded identically everywhere, so every rank makes the
  same split;
* initial centroids from a sample gathered once: every dataset index gets
  a pseudo-random key (a bijective hash of index and seed) and the sample is
  the rows with the smallest keys, found by a bisection on the key with
  all-reduced counts; the sample, and so the whole fit, does not depend on
  the world size or on how the rows are spread over ranks (except where a
  row is equally near two centroids, e.g. duplicate points: the rounding of
  the distance product, which depends on how many rows it holds, decides);
* ``max_points_per_centroid`` trains on the rows with the smallest keys in
  the same way; the final assignment and re-split cover every row.

Per-rank memory is O(N * D / world + K * D) plus one byte per dataset index
(the check that no index is held twice). Labels stay with the rank that owns
the rows; ``gather_labels`` builds the whole label vector on every rank.
"""
import math

import numpy as np
import torch

from xdc_plugin.clustering.collectives import LOCAL, default_collectives
from xdc_plugin.clustering.kmeans.ops import (all_finite, assign,
                                              kmeans_plus_plus)
from xdc_plugin.clustering.kmeans.torch_kmeans import TorchKMeans
from xdc_plugin.clustering.preprocess import (FeaturePreprocessor,
                                              as_float_tensor)
from xdc_plugin.registry import CLUSTERERS

# Rows preprocessed at a time (bounds the temporaries).
_TRANSFORM_ROWS = 4096
_FEATURE_DTYPES = {'float32': torch.float32, 'float16': torch.float16}
_MASK64 = (1 << 64) - 1
# (index, value) pairs a rank receives per round of ``gather_values``.
LABEL_GATHER_BYTES = 64 << 20


def index_keys(indices, seed):
    """A pseudo-random int64 key per dataset index: splitmix64's finaliser
    (a bijection of 64-bit integers) of ``index + seed * golden``, so
    distinct indices get distinct keys. ``indices``: int numpy array."""
    z = np.asarray(indices).astype(np.uint64) + np.uint64(
        (int(seed) * 0x9E3779B97F4A7C15 + 1) & _MASK64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return torch.from_numpy(z.view(np.int64))


def smallest_keys_mask(keys, num, collectives=LOCAL):
    """Mask of the local ``keys`` that are among the ``num`` smallest keys
    of all ranks (keys distinct): bisection on the threshold, 64 all-reduced
    counts, no gather."""
    low, high = -(1 << 63), (1 << 63) - 1
    while low < high:
        mid = (low + high) // 2
        count = int(collectives.all_reduce_sum((keys <= mid).sum()))
        if count >= num:
            high = mid
        else:
            low = mid + 1
    return keys <= low


def _raise_if_any(problem, collectives):
    """Raise ``ValueError(problem)`` on every rank when any rank has one:
    a rank that raised alone would leave the others in a collective."""
    failed = int(collectives.all_reduce_sum(
        torch.tensor(int(problem is not None))))
    if failed:
        raise ValueError(problem or f'invalid clustering input on {failed} '
                         'other rank(s) (see their error)')


def _check_shard(local_features, local_indices, num_total, collectives):
    """``(rows as a float32 tensor, or float16 kept as given, indices as a
    CPU int64 tensor, global row count)`` after checking, on every rank
    together, that the shards
    are well formed and that no dataset index is held twice."""
    problem, x, indices = None, None, None
    try:
        x = as_float_tensor(local_features, keep_float16=True)
        indices = torch.as_tensor(local_indices).long().cpu().flatten()
    except (TypeError, ValueError) as error:
        problem = str(error)
    if problem is None and len(indices) != len(x):
        problem = f'{len(indices)} indices for {len(x)} rows'
    elif problem is None and len(x) and (int(indices.min()) < 0 or
                                         int(indices.max()) >= num_total):
        problem = (f'local indices must be in [0, {num_total}), got '
                   f'[{int(indices.min())}, {int(indices.max())}]')
    _raise_if_any(problem, collectives)
    dims = collectives.all_gather_cat(torch.tensor([x.shape[1]]))
    if len(set(dims.tolist())) > 1:
        raise ValueError(f'ranks hold features of different dimensions: '
                         f'{dims.tolist()}')
    held = torch.zeros(num_total, dtype=torch.uint8)
    held[indices] = 1
    held = collectives.all_reduce_sum(held)
    total = int(collectives.all_reduce_sum(torch.tensor(len(x))))
    if total != int(held.count_nonzero()):
        raise ValueError(f'{total} rows but only {int(held.count_nonzero())}'
                         ' distinct dataset indices: an index is held twice '
                         '(shards must be disjoint)')
    return x, indices, total


@CLUSTERERS.register_module()
class DistributedKMeans(TorchKMeans):
    """``TorchKMeans`` on rows sharded across ranks (see the module
    docstring). Same arguments as ``TorchKMeans``, plus:

    Args:
        feature_dtype: ``'float32'`` or ``'float16'``: storage of the
            preprocessed shard (float16 halves it; distances, sums and
            centroids stay float32/float64).
        init_sample_per_centroid: ``init='k-means++'`` runs on a gathered
            sample of ``K * init_sample_per_centroid`` rows (``'random'``
            gathers ``K * num_redo`` rows).

    ``fit(features)`` runs the same algorithm in this process alone (every
    row here, no collective call); ``fit_sharded`` is the distributed entry.
    After a fit, ``init_centroids_`` holds the initial centroids of the run
    that was kept (identical on every rank).
    """

    def __init__(self, num_clusters, feature_dtype='float32',
                 init_sample_per_centroid=16, **kwargs):
        super().__init__(num_clusters, **kwargs)
        if feature_dtype not in _FEATURE_DTYPES:
            raise ValueError(f'feature_dtype must be one of '
                             f'{tuple(_FEATURE_DTYPES)}, got '
                             f'{feature_dtype!r}')
        if int(init_sample_per_centroid) < 1:
            raise ValueError('init_sample_per_centroid must be >= 1')
        self.feature_dtype = feature_dtype
        self.init_sample_per_centroid = int(init_sample_per_centroid)
        self.init_centroids_ = None

    def fit(self, features, init_centroids=None):
        """Cluster all of ``features`` (N, D) in this process."""
        n = len(features)
        return self.fit_sharded(features, np.arange(n), n, init_centroids,
                                collectives=LOCAL)

    def fit_sharded(self, local_features, local_indices, num_total,
                    init_centroids=None, collectives=None):
        """Cluster the rows of all ranks; call on every rank.

        Args:
            local_features: this rank's rows (N_r, D), numpy or torch (on
                the GPU, the matmuls run there; float16 rows are not copied
                to float32 whole).
            local_indices: their dataset indices (N_r,), in
                ``[0, num_total)``; no index may be held twice.
            num_total: dataset size (indices held by no rank, e.g. clips
                that failed to decode, are simply not clustered).
            init_centroids: (K, D') start in the preprocessed space,
                identical on every rank (needs ``num_redo=1``).
            collectives: default: the initialised process group, else
                ``LOCAL``.

        Returns:
            ``ClusterResult`` whose ``labels`` are those of this rank's rows
            (in the order given); centroids, inertia, ``num_resplit`` and
            ``counts`` are global and identical on every rank.
        """
        collectives = (default_collectives() if collectives is None else
                       collectives)
        x, indices, total = _check_shard(local_features, local_indices,
                                         int(num_total), collectives)
        if total < self.num_clusters:
            raise ValueError(f'cannot make {self.num_clusters} clusters from '
                             f'{total} points (need N >= num_clusters)')
        x = x.to(self._device(x))
        self.preprocessor = None
        if self.preprocess is not None:
            self.preprocessor = FeaturePreprocessor(**self.preprocess).fit(
                x, collectives)
        x = self._stored(x)
        _raise_if_any(None if all_finite(x) else
                      'features contain NaN or Inf', collectives)
        if init_centroids is not None:
            init_centroids = self._check_init(init_centroids, x)
        keys = index_keys(indices.numpy(), self.seed).to(x.device)

        train, train_keys, num_train = x, keys, total
        mppc = self.max_points_per_centroid
        if mppc is not None and total > self.num_clusters * mppc:
            num_train = self.num_clusters * mppc
            chosen = smallest_keys_mask(keys, num_train, collectives)
            train, train_keys = x[chosen], keys[chosen]
        generator = torch.Generator().manual_seed(self.seed)
        best, best_obj = None, math.inf
        self.iterations_run_ = 0
        for init in self._initial_centroids(train, train_keys, num_train,
                                            init_centroids, collectives):
            centroids, objective = self._lloyd(train, init, generator,
                                               collectives)
            if best is None or objective < best_obj:
                best, best_obj = centroids, objective
                self.init_centroids_ = init
        del train, train_keys

        return self._result(x, *assign(x, best), best, generator,
                            indices.to(x.device), collectives)

    def _stored(self, x):
        """This rank's rows, preprocessed, in ``feature_dtype`` (chunk by
        chunk: no whole-shard float32 temporary)."""
        dtype = _FEATURE_DTYPES[self.feature_dtype]
        if self.preprocessor is None and x.dtype == dtype:
            return x  # never written to
        out_dim = (x.shape[1] if self.preprocessor is None else
                   self.preprocessor.out_dim)
        out = torch.empty(len(x), out_dim, dtype=dtype, device=x.device)
        for start in range(0, len(x), _TRANSFORM_ROWS):
            chunk = x[start:start + _TRANSFORM_ROWS]
            if self.preprocessor is not None:
                chunk = self.preprocessor.transform(chunk)
            out[start:start + _TRANSFORM_ROWS] = chunk
        return out

    def _initial_centroids(self, train, keys, num_train, init_centroids,
                           collectives):
        """The start of each run: ``init_centroids``, or draws from the
        gathered sample of the rows with the smallest keys (in key order),
        with a generator of its own so that the Lloyd iterations draw what
        ``TorchKMeans.fit(x, init_centroids)`` draws."""
        if init_centroids is not None:
            yield init_centroids
            return
        k = self.num_clusters
        per_run = (self.num_redo if self.init == 'random' else
                   self.init_sample_per_centroid)
        num = min(num_train, k * per_run)
        chosen = smallest_keys_mask(keys, num, collectives)
        rows = collectives.all_gather_cat(train[chosen].float())
        order = torch.argsort(collectives.all_gather_cat(keys[chosen]))
        sample = rows[order]
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.num_redo):
            if self.init == 'random':
                pick = torch.randperm(num, generator=generator)[:k]
                yield sample[pick.to(sample.device)].clone()
            else:
                yield kmeans_plus_plus(sample, k, generator)

    def __repr__(self):
        return (super().__repr__()[:-1] +
                f', feature_dtype={self.feature_dtype!r}, '
                f'init_sample_per_centroid={self.init_sample_per_centroid})')


def gather_labels(local_labels, local_indices, num_total, collectives=None):
    """The label of every dataset index, on every rank: int32
    ``(num_total,)`` tensor, -1 where no rank holds the index (what
    ``XDCModel.set_pseudo_labels`` takes). See ``gather_values``."""
    collectives = (default_collectives() if collectives is None else
                   collectives)
    labels = torch.as_tensor(local_labels).flatten().cpu()
    problem = None
    if labels.numel() and not 0 <= int(labels.min()) <= int(
            labels.max()) < 1 << 31:
        problem = 'labels must be in [0, 2**31)'
    _raise_if_any(problem, collectives)
    return gather_values(labels.to(torch.int32), local_indices, num_total,
                         -1, collectives)


def gather_values(local_values, local_indices, num_total, fill,
                  collectives=None):
    """The value of every dataset index, on every rank: ``(num_total,)``
    tensor of the values' dtype (int32 or float32), ``fill`` where no rank
    holds the index.

    Each rank sends its (index, value) pairs as two 4-byte words, 8 bytes
    per clip (values alone would need the shard layout to be known), in
    rounds of ``LABEL_GATHER_BYTES`` received per rank (plus one copy),
    whatever the world size. An index held by two ranks is an error.
    """
    collectives = (default_collectives() if collectives is None else
                   collectives)
    if num_total >= 1 << 31:
        raise ValueError(f'num_total={num_total} does not fit int32 indices')
    values = torch.as_tensor(local_values).flatten().cpu()
    indices = torch.as_tensor(local_indices).flatten().cpu()
    if values.dtype not in (torch.int32, torch.float32):
        raise TypeError(f'values must be int32 or float32, not {values.dtype}')
    problem = None
    if values.shape != indices.shape:
        problem = f'{values.numel()} values for {indices.numel()} indices'
    elif indices.numel() and (int(indices.min()) < 0
                              or int(indices.max()) >= num_total):
        problem = f'indices must be in [0, {num_total})'
    _raise_if_any(problem, collectives)
    pairs = torch.stack([indices.to(torch.int32),
                         values.view(torch.int32)], 1)
    longest = int(collectives.all_gather_cat(
        torch.tensor([len(pairs)])).max())
    chunk_rows = max(1, LABEL_GATHER_BYTES // (8 * collectives.world_size))
    full = torch.full((int(num_total), ), fill, dtype=values.dtype)
    held = torch.zeros(int(num_total), dtype=torch.bool)
    received = 0
    for start in range(0, longest, chunk_rows):
        part = collectives.all_gather_cat(pairs[start:start + chunk_rows])
        rows = part[:, 0].long()
        full[rows] = part[:, 1].view(values.dtype)
        held[rows] = True
        received += len(part)
    if int(held.sum()) != received:
        raise ValueError('a dataset index is held by more than one rank')
    return full
