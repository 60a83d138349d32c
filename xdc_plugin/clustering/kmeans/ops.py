"""Blockwise tensor kernels of Lloyd's algorithm, shared by every clusterer
(also the sharded one): nearest-centroid assignment, per-cluster
statistics, the finiteness check and k-means++ seeding."""
import math

import torch

# Elements of one (rows x K) block of squared distances (64 MiB in float32).
BLOCK_ELEMENTS = 1 << 24


def _rows_per_block(columns):
    return max(1, BLOCK_ELEMENTS // max(1, columns))


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


def kmeans_plus_plus(x, k, generator):
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
