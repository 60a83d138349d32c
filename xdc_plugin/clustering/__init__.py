"""Pseudo-label machinery: feature preprocessing, k-means (single-process
and sharded across ranks), cluster metrics and the pseudo-class balanced
sampler. Importing it registers ``FaissKMeans``/``TorchKMeans``/
``DistributedKMeans`` in ``CLUSTERERS`` and ``PseudoClassBalancedSampler``
in ``DATA_SAMPLERS``."""
from xdc_plugin.clustering.distributed import DistributedKMeans, gather_labels
from xdc_plugin.clustering.kmeans import (ClusterResult, FaissKMeans,
                                          TorchKMeans)
from xdc_plugin.clustering.metrics import cluster_quality
from xdc_plugin.clustering.preprocess import FeaturePreprocessor
from xdc_plugin.clustering.sampler import PseudoClassBalancedSampler

__all__ = [
    'ClusterResult', 'DistributedKMeans', 'FaissKMeans', 'TorchKMeans',
    'cluster_quality', 'FeaturePreprocessor', 'PseudoClassBalancedSampler',
    'gather_labels'
]
