"""xdc_plugin: cross-modal audio-video clustering (XDC) for mmengine."""
from xdc_plugin import compat

compat.install_missing_mmaction_drn()

from xdc_plugin import clustering, data, engine, models  # noqa: E402,F401
from xdc_plugin.registry import (  # noqa: E402,F401
    CLUSTERERS, DATASETS, HOOKS, MODELS)

__version__ = '0.1.0'
