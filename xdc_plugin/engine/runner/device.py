"""The device a run trains on, decided once, before anything is built.

``--device auto|cuda|cpu`` (``tools/run_net.py``). There is no silent
fallback from CUDA to the CPU:

* ``cuda``: CUDA must be visible, else the run stops at once with one line
  naming torch's CUDA build and the NVIDIA driver (a CUDA 13 wheel on a node
  whose driver is older sees no GPU);
* ``cpu``: the CPU, gloo between ranks, even where a GPU is visible;
* ``auto``: with a distributed launcher (``pytorch``, ``slurm``) it means
  ``cuda``: a multi-process run on the CPU asks for it with
  ``--device cpu``. Without one, CUDA when visible, else the CPU (logged).

Each process uses one CUDA device, ``local_cuda_index``: device 0 when it
sees a single device (SLURM's ``--gpus-per-task``, or
``CUDA_VISIBLE_DEVICES`` set per rank), else its ``LOCAL_RANK``.
"""
import os
import shutil
import subprocess
from typing import Callable, Optional

import torch

DEVICE_CHOICES = ('auto', 'cuda', 'cpu')
DISTRIBUTED_LAUNCHERS = ('pytorch', 'slurm')


class DeviceError(RuntimeError):
    """The device asked for is not there."""


def driver_version() -> Optional[str]:
    """The NVIDIA driver's version without going through CUDA
    (``nvidia-smi``, else ``/proc/driver/nvidia/version``), or None when
    no driver is found."""
    if shutil.which('nvidia-smi'):
        try:
            out = subprocess.run(
                ['nvidia-smi', '--query-gpu=driver_version',
                 '--format=csv,noheader'], capture_output=True, text=True,
                timeout=30)
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    try:
        with open('/proc/driver/nvidia/version') as f:
            words = f.readline().split()
    except OSError:
        return None
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  ..."
    return next((w for w in words if w[:1].isdigit() and '.' in w), None)


def cuda_versions() -> str:
    """``'torch 2.x built with CUDA 13.0, NVIDIA driver 550.54.15'`` (or
    ``'no NVIDIA driver found'``)."""
    driver = driver_version()
    return (f'torch {torch.__version__} built with CUDA '
            f'{torch.version.cuda or "none (a CPU-only build)"}, '
            + (f'NVIDIA driver {driver}' if driver else
               'no NVIDIA driver found (no nvidia-smi, no '
               '/proc/driver/nvidia/version)'))


def planned_device(requested: str, launcher: str, world_size: int = 1) -> str:
    """The device a run of ``world_size`` ranks started with ``requested``
    and ``launcher`` will use, decided without needing CUDA here (the dry
    run plans a GPU run from a machine without one)."""
    if requested not in DEVICE_CHOICES:
        raise DeviceError(f'--device must be one of {DEVICE_CHOICES}, got '
                          f'{requested!r}')
    if requested != 'auto':
        return requested
    if launcher in DISTRIBUTED_LAUNCHERS or world_size > 1:
        return 'cuda'
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def resolve_device(requested: str, launcher: str,
                   log: Optional[Callable[[str], object]] = None) -> str:
    """The device of this run (``'cuda'`` or ``'cpu'``); ``DeviceError``
    when CUDA is asked for (``cuda``, or ``auto`` under a distributed
    launcher) and not visible. ``log(message)`` is told what ``auto``
    chose."""
    device = planned_device(requested, launcher)
    if device == 'cuda' and not torch.cuda.is_available():
        asked = ('--device cuda' if requested == 'cuda' else
                 f'--launcher {launcher} (NCCL, --device auto)')
        raise DeviceError(
            f'{asked} needs CUDA, but torch sees no GPU: {cuda_versions()}. '
            "Install a torch build for this driver's CUDA version, or pass "
            '--device cpu to train on the CPU (gloo).')
    if requested == 'auto' and log is not None:
        log(f'--device auto: training on {device}' + (
            f' ({torch.cuda.get_device_name()})' if device == 'cuda' else
            ' (torch sees no GPU)'))
    return device


def local_cuda_index() -> int:
    """This process's CUDA device: 0 when it sees one device, else
    ``LOCAL_RANK`` (which must name one of the devices it sees)."""
    count = torch.cuda.device_count()
    if count == 1:
        return 0
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    if not 0 <= local_rank < count:
        raise DeviceError(
            f'LOCAL_RANK={local_rank}, but this process sees {count} CUDA '
            'devices (CUDA_VISIBLE_DEVICES='
            f'{os.environ.get("CUDA_VISIBLE_DEVICES", "unset")}): give each '
            'task one device, or every task all of the node\'s devices')
    return local_rank
