"""mmengine's ``xdc://<name>`` checkpoint scheme, registered on request.

Nothing registers it at import: call :func:`register_xdc_scheme` before
handing an ``xdc://`` path to mmengine's own loaders (``load_checkpoint``,
``CheckpointLoader.load_checkpoint``, a ``Pretrained`` init config of a
module other than ``XDCBackbone``). ``XDCBackbone``'s ``init_cfg=dict(
type='Pretrained', checkpoint='xdc://<name>')`` does not need it: the
backbone loads through :mod:`xdc_plugin.weights` itself.
"""
from typing import Dict, Optional

import torch
from mmengine.runner import CheckpointLoader

from xdc_plugin.weights import (XDC_SCHEME, check_state_dict,
                                read_weights_file, reference_model,
                                resolve_weights)


def load_from_xdc(filename: str, map_location: Optional[str] = None,
                  logger=None) -> Dict[str, torch.Tensor]:
    """The released file of ``xdc://<name>`` (cached download,
    hash-checked, ``weights_only=True``), checked key by key against the
    official layout."""
    path = resolve_weights(filename)
    state_dict = read_weights_file(path)
    check_state_dict(reference_model(), state_dict, source=path)
    if map_location not in (None, 'cpu'):
        state_dict = {k: v.to(map_location) for k, v in state_dict.items()}
    return state_dict


def register_xdc_scheme() -> None:
    """Make mmengine's checkpoint loaders resolve ``xdc://<name>``."""
    CheckpointLoader.register_scheme(prefixes=XDC_SCHEME,
                                     loader=load_from_xdc, force=True)
