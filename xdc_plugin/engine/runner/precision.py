"""Mixed precision of a run: what ``--amp`` builds, and the autocast dtype
that training and feature extraction share.

* ``--amp`` (``bf16``): bf16 autocast through ``Bf16OptimWrapper``, with no
  loss scaler. bf16 keeps fp32's exponent range, so gradients do not
  underflow and need no scaling; a scaler would only add its per-step
  inf/NaN check (a device sync).
* ``--amp fp16``: fp16 autocast with mmengine's ``AmpOptimWrapper`` and its
  dynamic loss scaler, for GPUs without bf16 (before Ampere).

``optim_wrapper_config`` is the one place that turns ``--amp`` into the
optimizer wrapper's config (``tools/run_net.py`` and ``tools/gpu_check.py``
both call it) and ``autocast_dtype`` reads back the dtype a built wrapper
trains in, which the clustering hook's extraction then uses
(``feature_extraction.extract_batch``).
"""
import contextlib
from typing import Any, Dict, Iterator, Mapping, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from xdc_plugin.registry import OPTIM_WRAPPERS

AMP_CHOICES = ('bf16', 'fp16')


class PrecisionError(ValueError):
    """``--amp`` asks for a precision the device cannot run."""


@OPTIM_WRAPPERS.register_module()
class Bf16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under bf16 autocast on the
    model's device (CUDA or CPU); backward and step are the plain ones: no
    loss scaler exists. ``cast_dtype`` is named as ``AmpOptimWrapper``'s."""

    cast_dtype = torch.bfloat16

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(
                device, dtype=self.cast_dtype):
            yield


def check_amp(amp: Optional[str], device: str) -> None:
    """``PrecisionError`` when ``device`` ('cuda' or 'cpu') cannot run
    ``amp`` (None, 'bf16' or 'fp16')."""
    if amp is None:
        return
    if amp not in AMP_CHOICES:
        raise PrecisionError(f'--amp must be one of {AMP_CHOICES}, got '
                             f'{amp!r}')
    if device == 'cuda' and amp == 'bf16' and not \
            torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name()
        raise PrecisionError(
            f'--amp: {name} has no native bf16 (compute capability '
            f'{".".join(map(str, torch.cuda.get_device_capability()))}, bf16 '
            'needs 8.0); use --amp fp16 (fp16 autocast with a dynamic loss '
            'scaler)')
    if device == 'cpu' and amp == 'fp16':
        raise PrecisionError('--amp fp16 needs CUDA (its loss scaler is '
                             "torch's CUDA GradScaler); on the CPU use --amp "
                             '(bf16)')


def optim_wrapper_config(optim_cfg: Mapping[str, Any],
                         amp: Optional[str]) -> Dict[str, Any]:
    """The optimizer wrapper config of a run: ``optim_cfg`` (the config's
    ``optim_wrapper``) with ``amp`` (None, 'bf16', 'fp16') applied."""
    cfg = dict(optim_cfg)
    if amp == 'bf16':
        # scoped: found from any default scope (an mmaction2 config too)
        cfg.update(type='xdc.Bf16OptimWrapper')
    elif amp == 'fp16':
        cfg.update(type='AmpOptimWrapper', dtype='float16',
                   loss_scale='dynamic')
    elif amp is not None:
        raise PrecisionError(f'--amp must be one of {AMP_CHOICES}, got '
                             f'{amp!r}')
    return cfg


def autocast_dtype(optim_wrapper: OptimWrapper) -> Optional[torch.dtype]:
    """The dtype the built ``optim_wrapper`` trains the forward in (bf16,
    fp16), or None for fp32."""
    if isinstance(optim_wrapper, (Bf16OptimWrapper, AmpOptimWrapper)):
        # AmpOptimWrapper without a dtype autocasts to fp16 on CUDA.
        return optim_wrapper.cast_dtype or torch.float16
    return None
