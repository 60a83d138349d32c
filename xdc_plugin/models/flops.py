"""Forward FLOPs of an ``XDCModel`` per clip, and the fraction of a GPU's
peak that a measured throughput uses (MFU).

``torch.utils.flop_counter.FlopCounterMode`` counts the matmuls and
convolutions (2 FLOPs per multiply-add; BatchNorm, activations, pooling and
the loss are not counted, as is usual for MFU). The forward runs on a copy
of the model on the ``meta`` device, so counting at paper input sizes costs
no memory and about a second, on any machine.
"""
import copy
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's
# datasheets; the first name contained in the device's name wins, so the
# more specific names come first.
PEAK_BF16_TFLOPS = (
    ('GH200', 989.5), ('H200 NVL', 835.5), ('H200', 989.5),
    ('H100 NVL', 835.5), ('H100 PCIe', 756.5), ('H100', 989.5),
    ('B200', 2250.0), ('A100', 312.0), ('L40S', 362.0), ('L40', 181.0),
    ('L4', 121.0), ('A10', 125.0))
# A training step (forward + backward) counted in forwards.
TRAIN_FORWARDS = 3


def forward_flops(model: nn.Module, video_shape: Sequence[int],
                  audio_shape: Sequence[int]) -> Dict[str, int]:
    """FLOPs of one forward of ``model`` (encoders and heads) on one clip.

    Args:
        model: an ``XDCModel`` (left untouched: a meta copy runs).
        video_shape: ``(3, T, H, W)`` of one preprocessed clip.
        audio_shape: ``(1, n_mels, frames)`` of its spectrogram.

    Returns:
        dict with ``video`` (video encoder), ``audio`` (audio encoder),
        ``heads`` and ``total``, in FLOPs (ints).
    """
    meta = copy.deepcopy(model).to('meta')
    video = torch.empty((1, *video_shape), device='meta')
    audio = torch.empty((1, *audio_shape), device='meta')
    feats = {m: torch.empty(1, dim, device='meta')
             for m, dim in meta.feat_dims.items()}
    counts = {}
    with torch.no_grad():
        for name, run in (('video', lambda: meta.video_encoder(video)),
                          ('audio', lambda: meta.audio_encoder(audio)),
                          ('heads', lambda: meta.head_logits(feats))):
            with FlopCounterMode(display=False) as counter:
                run()
            counts[name] = counter.get_total_flops()
    counts['total'] = sum(counts.values())
    return counts


def peak_bf16_tflops(device_name: str) -> Optional[float]:
    """The dense bf16 peak (TFLOP/s) of a GPU by its name, e.g.
    ``torch.cuda.get_device_name()``; None if not in the table."""
    for name, tflops in PEAK_BF16_TFLOPS:
        if name.lower() in device_name.lower():
            return tflops
    return None


def model_flops_utilisation(forward_flops_per_clip: float, clips_per_s: float,
                            tflops: Optional[float]) -> Optional[float]:
    """Training MFU: forward+backward counted as ``TRAIN_FORWARDS``
    forwards; None without a peak."""
    if not tflops:
        return None
    flops_per_s = TRAIN_FORWARDS * forward_flops_per_clip * clips_per_s
    return flops_per_s / (tflops * 1e12)
