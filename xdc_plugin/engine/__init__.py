from xdc_plugin.engine.checkpoint import (SafeResumeRunner,
                                          UntrustedCheckpointError,
                                          WeightsOnlyCheckpointHook)
from xdc_plugin.engine.clustering_hook import CrossModalClusteringHook
from xdc_plugin.engine.config import (ConfigKeyError, ConfigTypeError,
                                      load_config)
from xdc_plugin.engine.dataset_epoch_hook import DatasetEpochHook
from xdc_plugin.engine.lock import WorkDirBusyError, WorkDirLock
from xdc_plugin.engine.mid_epoch_resume_hook import (MidEpochLogProcessor,
                                                    MidEpochResumeHook)
from xdc_plugin.engine.precision import Bf16OptimWrapper
from xdc_plugin.engine.preemption_hook import PreemptionCheckpointHook
from xdc_plugin.engine.resumed_schedule_hook import ResumedScheduleHook
from xdc_plugin.engine.step_seed_hook import StepSeedHook

__all__ = ['Bf16OptimWrapper', 'CrossModalClusteringHook', 'ConfigKeyError',
           'ConfigTypeError', 'load_config', 'DatasetEpochHook',
           'SafeResumeRunner', 'UntrustedCheckpointError',
           'WeightsOnlyCheckpointHook', 'WorkDirBusyError', 'WorkDirLock',
           'MidEpochLogProcessor', 'MidEpochResumeHook',
           'PreemptionCheckpointHook', 'ResumedScheduleHook', 'StepSeedHook']
