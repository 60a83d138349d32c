"""Pseudo-label machinery: feature preprocessing, k-means, cluster metrics
and the pseudo-class balanced sampler. Importing it registers
``FaissKMeans``/``TorchKMeans`` in ``CLUSTERERS`` and
``PseudoClassBalancedSampler`` in ``DATA_SAMPLERS``."""
from xdc_plugin.clustering.kmeans import (ClusterResult, FaissKMeans,
                                          TorchKMeans)
from xdc_plugin.clustering.metrics import cluster_quality
from xdc_plugin.clustering.preprocess import FeaturePreprocessor
from xdc_plugin.clustering.sampler import PseudoClassBalancedSampler

__all__ = [
    'ClusterResult', 'FaissKMeans', 'TorchKMeans', 'cluster_quality',
    'FeaturePreprocessor', 'PseudoClassBalancedSampler'
]
