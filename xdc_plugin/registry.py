"""Registries of the ``xdc`` scope, children of mmengine's.

Build a component by ``type='XDCModel'`` under ``default_scope='xdc'``, or by
``type='xdc.XDCModel'`` from any mmengine or mmaction2 config that has
``custom_imports=dict(imports=['xdc_plugin'])``.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'xdc'

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE,
                  locations=['xdc_plugin.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=['xdc_plugin.data'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
                      locations=['xdc_plugin.data'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS,
                         scope=SCOPE, locations=['xdc_plugin.clustering'])
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope=SCOPE,
                     locations=['xdc_plugin.data'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE,
                 locations=['xdc_plugin.engine'])
# k-means and friends: ``fit(features) -> ClusterResult``.
CLUSTERERS = Registry('clusterer', scope=SCOPE,
                      locations=['xdc_plugin.clustering'])
