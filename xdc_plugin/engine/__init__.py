"""The training engine, by kind of work (each folder imports only those
listed before it):

* ``runner``: configs, checkpoints, the work_dir lock, device, precision,
  stop requests;
* ``round``: the parts of a clustering round;
* ``hooks``: the registered hooks (the clustering hook runs a ``round``);
* ``launch``: the launcher, SLURM, the dry run, run cost and the GPU
  check's report.

Importing it registers the hooks, ``Bf16OptimWrapper`` and
``MidEpochLogProcessor`` (the registry's location for them).
"""
from xdc_plugin.engine.hooks.clustering_hook import CrossModalClusteringHook
from xdc_plugin.engine.hooks.dataset_epoch_hook import DatasetEpochHook
from xdc_plugin.engine.hooks.mid_epoch_resume_hook import (
    MidEpochLogProcessor, MidEpochResumeHook)
from xdc_plugin.engine.hooks.preemption_hook import PreemptionCheckpointHook
from xdc_plugin.engine.hooks.resumed_schedule_hook import ResumedScheduleHook
from xdc_plugin.engine.hooks.step_seed_hook import StepSeedHook
from xdc_plugin.engine.runner.checkpoint import (SafeResumeRunner,
                                                 UntrustedCheckpointError,
                                                 WeightsOnlyCheckpointHook)
from xdc_plugin.engine.runner.config import (ConfigKeyError, ConfigTypeError,
                                             load_config)
from xdc_plugin.engine.runner.lock import WorkDirBusyError, WorkDirLock
from xdc_plugin.engine.runner.precision import Bf16OptimWrapper

__all__ = ['Bf16OptimWrapper', 'CrossModalClusteringHook', 'ConfigKeyError',
           'ConfigTypeError', 'load_config', 'DatasetEpochHook',
           'SafeResumeRunner', 'UntrustedCheckpointError',
           'WeightsOnlyCheckpointHook', 'WorkDirBusyError', 'WorkDirLock',
           'MidEpochLogProcessor', 'MidEpochResumeHook',
           'PreemptionCheckpointHook', 'ResumedScheduleHook', 'StepSeedHook']
