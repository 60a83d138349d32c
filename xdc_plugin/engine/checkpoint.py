"""Reading our mmengine training checkpoints (not the torch-only weights
package: a full checkpoint holds mmengine objects)."""
from typing import Dict

import torch

from xdc_plugin.weights import IncompatibleWeightsError


def load_training_checkpoint(path: str, trusted: bool = False
                             ) -> Dict[str, torch.Tensor]:
    """The model state dict of one of our mmengine checkpoints, read with
    ``weights_only=True`` unless ``trusted`` (mmengine checkpoints hold
    logging objects, ``message_hub``, that only a full unpickle reads)."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError subclasses
        if not trusted:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
                path)
            raise IncompatibleWeightsError(
                f'{path} cannot be read with weights_only=True (it holds '
                f'{unsafe}). If you produced it yourself, pass --trusted '
                '(trusted=True) to unpickle it fully.') from exc
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise IncompatibleWeightsError(
            f'{path} is not an mmengine checkpoint (no "state_dict")')
    return checkpoint['state_dict']
