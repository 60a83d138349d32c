"""xdc_plugin: cross-modal audio-video clustering (XDC) for mmengine."""
import importlib.util

__version__ = '0.1.0'

# The encoders' modalities, and the sources a clustering runs on: each
# modality's features and their concatenation ('joint', CDC's).
MODALITIES = ('video', 'audio')
SOURCES = MODALITIES + ('joint', )

# ``xdc_plugin.encoders`` and ``xdc_plugin.weights`` (hence ``hubconf.py``)
# need only torch, so nothing here may import mmengine when it is absent.
# With mmengine, importing the registry creates the ``xdc`` scope, which is
# what ``custom_imports=['xdc_plugin']`` is for; each registry imports its
# modules (``xdc_plugin.models``, ``.data``, ...) on first lookup.
if importlib.util.find_spec('mmengine') is not None:
    from xdc_plugin import compat

    compat.install_missing_mmaction_drn()

    from xdc_plugin.registry import (  # noqa: F401
        CLUSTERERS, DATASETS, HOOKS, MODELS)
