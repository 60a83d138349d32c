from xdc_plugin.engine.clustering_hook import (CrossModalClusteringHook,
                                               extract_features)
from xdc_plugin.engine.config import ConfigKeyError, load_config
from xdc_plugin.engine.dataset_epoch_hook import DatasetEpochHook

__all__ = ['CrossModalClusteringHook', 'extract_features', 'ConfigKeyError',
           'load_config', 'DatasetEpochHook']
