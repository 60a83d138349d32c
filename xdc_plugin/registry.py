"""Registries of the ``xdc`` scope, children of mmengine's.

Build a component by ``type='XDCModel'`` under ``default_scope='xdc'``, or by
``type='xdc.XDCModel'`` from any mmengine or mmaction2 config that has
``custom_imports=dict(imports=['xdc_plugin'])``.
"""
import sys

import mmengine.registry
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import (DefaultScope, Registry, build_from_cfg,
                               build_model_from_cfg)

from xdc_plugin import compat

SCOPE = 'xdc'
compat.alias_scope_registry(SCOPE, sys.modules[__name__])


def _in_scope(build):
    """Build from our registries in the ``xdc`` scope whatever scope the
    caller has made current (an mmaction2 runner, say), so that
    ``MODELS.build(dict(type='XDCModel'))`` always finds our modules."""

    def build_in_scope(cfg, registry, default_args=None):
        with DefaultScope.overwrite_default_scope(SCOPE):
            return build(cfg, registry, default_args)

    return build_in_scope


def _child(name, parent, location, build=build_from_cfg):
    return Registry(name, parent=parent, scope=SCOPE,
                    locations=[f'xdc_plugin.{location}'],
                    build_func=_in_scope(build))


MODELS = _child('model', MMENGINE_MODELS, 'models', build_model_from_cfg)
DATASETS = _child('dataset', MMENGINE_DATASETS, 'data')
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, 'data')
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, 'clustering')
HOOKS = _child('hook', MMENGINE_HOOKS, 'engine')
# ``Bf16OptimWrapper`` (``--amp``).
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, 'engine')
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS, 'engine')
# k-means and friends: ``fit(features) -> ClusterResult``.
CLUSTERERS = _child('clusterer', None, 'clustering')

# The other mmengine registries get an (empty) xdc child too, so that a
# runner with ``default_scope='xdc'`` finds loops, optimizers, schedulers,
# ... through the parent without a warning per registry.
for _name in ('RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'STRATEGIES',
              'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'OPTIMIZERS',
              'OPTIM_WRAPPER_CONSTRUCTORS', 'FUNCTIONS',
              'PARAM_SCHEDULERS', 'METRICS', 'EVALUATOR', 'TASK_UTILS',
              'VISUALIZERS', 'VISBACKENDS', 'INFERENCERS'):
    _parent = getattr(mmengine.registry, _name)
    Registry(_parent.name, parent=_parent, scope=SCOPE)
