"""k-means clusterers for pseudo-labels: ``fit(features) -> ClusterResult``.

Two registered implementations share arguments, preprocessing, the final
assignment's empty-cluster re-split and the reported inertia (``base.py``):

* ``FaissKMeans`` (``faiss_kmeans.py``) wraps ``faiss.Kmeans`` (on the
  features' GPU when faiss sees one and ``use_gpu`` allows);
* ``TorchKMeans`` (``torch_kmeans.py``) is pure torch and runs on the
  features' device; ``DistributedKMeans`` (``clustering/distributed.py``)
  runs its iteration on rows sharded across ranks (the statistics go
  through ``collectives``).

The tensor kernels they share are in ``ops.py``, the handling of empty
clusters in ``empty_clusters.py``.
"""
from xdc_plugin.clustering.kmeans.base import (DEFAULT_PREPROCESS,
                                               BaseKMeans, ClusterResult)
from xdc_plugin.clustering.kmeans.empty_clusters import resplit_empty_clusters
from xdc_plugin.clustering.kmeans.faiss_kmeans import FaissKMeans
from xdc_plugin.clustering.kmeans.ops import (all_finite, assign,
                                              cluster_statistics)
from xdc_plugin.clustering.kmeans.torch_kmeans import TorchKMeans

__all__ = [
    'BaseKMeans', 'ClusterResult', 'DEFAULT_PREPROCESS', 'FaissKMeans',
    'TorchKMeans', 'all_finite', 'assign', 'cluster_statistics',
    'resplit_empty_clusters'
]
