"""Memory per rank of one clustering round, before and after sharding.

A model (arithmetic on array sizes, no allocation) of the largest arrays a
round holds, phase by phase; the peak is the largest phase. It counts what
the code allocates, not what the allocator or the process adds (Python,
torch and CUDA contexts, fragmentation, gloo's buffers beyond one copy of
a reduced tensor): read it as the clustering's share of a rank's memory.

* ``sharded=False`` is the path that gathers on rank 0 (the hook of this
  release): rank 0 receives every rank's features of every modality, places
  them by dataset index, copies the rows that decoded, preprocesses them and
  runs k-means on all N rows; the labels are broadcast by pickling.
* ``sharded=True`` is ``DistributedKMeans.fit_sharded`` on each rank's
  ``ceil(N / world)`` rows, then ``gather_labels``.

Both keep the model's label buffer (one row per clustering source; int64
in the release that gathered on rank 0, int32 since) and replace it through
``XDCModel.set_pseudo_labels``, which holds the new rows, their stack and
the old buffer at once.
"""
import math
from dataclasses import dataclass, field

from xdc_plugin.clustering.distributed import LABEL_GATHER_BYTES
from xdc_plugin.clustering.kmeans.ops import BLOCK_ELEMENTS

_FEATURE_BYTES = {'float32': 4, 'float16': 2}
# Bytes of a pseudo-label: int64 on the path that gathered on rank 0, int32
# on the sharded one (the code of this release).
_GATHERED_LABEL_BYTES, _LABEL_BYTES = 8, 4


@dataclass
class MemoryEstimate:
    """Bytes per phase and array; ``peak`` is the largest phase."""
    phases: dict = field(default_factory=dict)

    @property
    def peak(self):
        return max(sum(terms.values()) for terms in self.phases.values())

    @property
    def peak_phase(self):
        return max(self.phases, key=lambda p: sum(self.phases[p].values()))

    def describe(self):
        """Multi-line text: every phase with its arrays, in GiB."""
        lines = []
        for phase, terms in self.phases.items():
            lines.append(f'{phase}: {_gib(sum(terms.values()))}')
            lines += [f'  {name}: {_gib(size)}' for name, size in
                      terms.items()]
        lines.append(f'peak ({self.peak_phase}): {_gib(self.peak)}')
        return '\n'.join(lines)


def _gib(num_bytes):
    return f'{num_bytes / 2**30:.2f} GiB'


def _assignment(rows, dim, num_clusters):
    """labels int64 + distances float32 of ``rows``, and the distance block
    of ``kmeans.ops.assign`` with a row block's float32 copy (float16 rows)."""
    assign_rows = min(rows, BLOCK_ELEMENTS // max(num_clusters, dim))
    return rows * 12 + assign_rows * (num_clusters + dim) * 4


def _centroids(dim, num_clusters, num_redo):
    """Centroids (current, next, initial), the float64 statistics and their
    float32 block, and the gathered initial sample (rows and sorted)."""
    return (3 * num_clusters * dim * 4 + num_clusters * (dim + 2) * 8 * 2 +
            num_clusters * dim * 4 + 2 * num_redo * num_clusters * dim * 4)


def clustering_memory(num_clips, dim, num_clusters, world_size,
                      sharded=True, feature_dtype='float32', feat_dim=512,
                      num_modalities=2, num_sources=2, num_redo=1):
    """Per-rank memory of one round (the largest rank: rank 0 when not
    sharded).

    Args:
        num_clips: N, clips clustered.
        dim: dimension clustered (``feat_dim``, or the PCA's).
        num_clusters: K.
        world_size: ranks.
        sharded: ``DistributedKMeans`` (True) or the gather on rank 0.
        feature_dtype: storage of the preprocessed rows (sharded only).
        feat_dim: encoder feature dimension (what extraction yields).
        num_modalities: feature matrices extracted per clip (2 for XDC).
        num_sources: clusterings per round, i.e. label rows (2 for XDC).
        num_redo: k-means runs (initial samples gathered).
    """
    if feature_dtype not in _FEATURE_BYTES:
        raise ValueError(f'feature_dtype must be one of '
                         f'{tuple(_FEATURE_BYTES)}, got {feature_dtype!r}')
    if sharded:
        return _sharded(num_clips, dim, num_clusters, world_size,
                        feature_dtype, feat_dim, num_modalities, num_sources,
                        num_redo)
    return _gathered(num_clips, dim, num_clusters, feat_dim, num_modalities,
                     num_sources, num_redo)


def _label_update(num_clips, num_sources, label_bytes):
    """``set_pseudo_labels``: new rows, their stack, the old buffer."""
    return {'label buffer (old, new rows, stack)':
            3 * num_sources * num_clips * label_bytes}


def _gathered(n, dim, k, feat_dim, modalities, sources, num_redo):
    features = modalities * n * feat_dim * 4
    buffer = {'label buffer': sources * n * _GATHERED_LABEL_BYTES}
    pca = n * feat_dim * 4 + n * dim * 4 if dim < feat_dim else 0
    return MemoryEstimate({
        'gather': dict(buffer, **{
            'gathered features': features,
            'features placed by index': features}),
        'cluster': dict(buffer, **{
            'features': features,
            'rows that decoded': n * feat_dim * 4,
            'preprocessed rows': n * dim * 4,
            'PCA temporaries': pca,
            'assignment': _assignment(n, dim, k),
            'centroids, statistics': _centroids(dim, k, num_redo),
            'labels of earlier sources': (sources - 1) * n * 8}),
        'labels': dict(_label_update(n, sources, _GATHERED_LABEL_BYTES), **{
            'features': features,
            'labels (results, by index, pickled)': sources * n * 24}),
    })


def sharded_fit_phases(rows, num_total, dim, num_clusters,
                       feature_dtype='float32', num_redo=1):
    """What ``DistributedKMeans.fit_sharded`` allocates on a rank holding
    ``rows`` of ``num_total`` rows, beyond the rows it is given: phase ->
    array -> bytes (default L2 preprocessing or PCA: the shard is
    copied)."""
    return {
        'index check': {'held-index bytes (and reduce copy)': 2 * num_total},
        'cluster': {
            'preprocessed shard': rows * dim * _FEATURE_BYTES[feature_dtype],
            'keys, indices': rows * 16,
            'assignment': _assignment(rows, dim, num_clusters),
            'centroids, statistics': _centroids(dim, num_clusters,
                                                num_redo)},
    }


def _sharded(n, dim, k, world, feature_dtype, feat_dim, modalities,
             sources, num_redo):
    rows = math.ceil(n / world)
    held = {'label buffer': sources * n * _LABEL_BYTES,
            'features': modalities * rows * feat_dim * 4}
    phases = {name: dict(held, **terms) for name, terms in
              sharded_fit_phases(rows, n, dim, k, feature_dtype,
                                 num_redo).items()}
    phases['labels'] = dict(_label_update(n, sources, _LABEL_BYTES), **{
        'features': held['features'],
        'gathered labels (int32)': sources * n * 4,
        'received pairs': 2 * LABEL_GATHER_BYTES})
    return MemoryEstimate(phases)
