"""Empty clusters: the training-time split and the re-split after the final
assignment.

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
"""
import math

import torch

from xdc_plugin.clustering.collectives import LOCAL

# Training-time split: offset as a fraction of the donor's RMS radius.
_SPLIT_OFFSET = 1e-2


def _random_direction(dim, generator, device):
    u = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (u / u.norm().clamp_min(1e-300)).float().to(device)


def _draw_donor(counts, generator, min_size):
    """A cluster with at least ``min_size`` points, drawn with probability
    proportional to its size (``counts`` is a CPU int64 tensor)."""
    weights = torch.where(counts >= min_size, counts,
                          torch.zeros_like(counts)).double()
    return int(torch.multinomial(weights, 1, generator=generator))


def split_empty_centroids(centroids, counts, sq_radius, generator):
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
