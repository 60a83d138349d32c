"""Moves an audio-visual batch to the model's device and normalises video."""
from collections.abc import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from xdc_plugin.encoders import XDC_MEAN, XDC_STD
from xdc_plugin.registry import MODELS


@MODELS.register_module()
class AVDataPreprocessor(BaseDataPreprocessor):
    """Batch dict in, batch dict out, on the model's device.

    Input (as collated by ``default_collate``)::

        {'video': uint8 (B, 3, T, H, W), 'audio': float (B, 1, F, T'),
         'index': long (B,), 'label': long (B,)}   # 'label' optional

    * ``video``: uint8 is converted to float and divided by 255; a floating
      video is taken to be in [0, 1] already. Then
      ``(video - mean) / std`` per channel (``XDC_MEAN``/``XDC_STD``: the
      released models' normalisation, RGB in [0, 1]).
    * ``audio``: cast to float32 (log-mels are normalised, if at all, by the
      data pipeline).
    * A list of per-sample tensors (``pseudo_collate``) is stacked.
    * Any other key is moved to the device and passed through unchanged.

    mmengine then calls ``model(**data, mode=...)``.
    """

    def __init__(self, mean: Sequence[float] = XDC_MEAN,
                 std: Sequence[float] = XDC_STD,
                 non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError('mean and std need one value per RGB channel')
        # Not persistent: they are config, not learned state, and must not
        # appear in (or be required by) checkpoints.
        self.register_buffer(
            'mean', torch.tensor(mean, dtype=torch.float32).view(
                1, 3, 1, 1, 1), persistent=False)
        self.register_buffer(
            'std', torch.tensor(std, dtype=torch.float32).view(
                1, 3, 1, 1, 1), persistent=False)

    @staticmethod
    def _stack(value):
        if (isinstance(value, Sequence) and value
                and all(isinstance(v, torch.Tensor) for v in value)):
            return torch.stack(list(value))
        return value

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict):
            raise TypeError('AVDataPreprocessor expects the collated batch '
                            f'dict, got {type(data).__name__}')
        for key in ('video', 'audio', 'index'):
            if key not in data:
                raise KeyError(f'batch has no {key!r} (keys: {list(data)})')
        data = {key: self._stack(value) for key, value in data.items()}
        if not isinstance(data.get('index'), torch.Tensor):
            data['index'] = torch.as_tensor(data['index'])
        if 'label' in data and not isinstance(data['label'], torch.Tensor):
            data['label'] = torch.as_tensor(data['label'])
        data = self.cast_data(data)
        video = data['video']
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError('video must be (B, 3, T, H, W), got '
                             f'{tuple(video.shape)}')
        if video.dtype == torch.uint8:
            video = video.float().div_(255.0)
        else:
            video = video.float()
        data['video'] = (video - self.mean) / self.std
        data['audio'] = data['audio'].float()
        data['index'] = data['index'].long()
        return data
