"""The few collective operations clustering needs, for one or many processes.

The k-means and PCA code is written once against this interface: with
``LOCAL`` (one process) every collective is the identity, so the
single-process clusterers run exactly the iteration the sharded one runs on
many ranks with ``ProcessGroupCollectives``.
"""
import contextlib
import functools
import os
import socket
from typing import Protocol

import torch
import torch.distributed as torch_dist

from xdc_plugin.compat import default_group_timeout


class Collectives(Protocol):
    """The interface: this process's ``rank`` of ``world_size``, and the
    collectives (every rank calls each at the same point)."""

    world_size: int
    rank: int

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the ranks."""

    def all_reduce_min(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise minimum over the ranks."""

    def all_gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """The ranks' tensors concatenated along dim 0, in rank order."""


class LocalCollectives:
    """One process holds every row: each collective returns its input."""

    world_size = 1
    rank = 0

    def all_reduce_sum(self, tensor):
        return tensor

    def all_reduce_min(self, tensor):
        return tensor

    def all_gather_cat(self, tensor):
        return tensor


LOCAL = LocalCollectives()


def gloo_interface(environ=None, interfaces=None):
    """The network interface(s) of the gloo side group, as
    ``GLOO_SOCKET_IFNAME`` takes them, or None (gloo then resolves the
    hostname).

    ``GLOO_SOCKET_IFNAME`` when set; else NCCL's, so that both groups use
    the same network: ``NCCL_SOCKET_IFNAME=ib0,eth1`` names prefixes (the
    first interface of this host that matches one is used: every rank then
    has one device, as gloo needs the same count everywhere),
    ``=ib0,eth1`` exact names (used as given). NCCL's exclusion form
    (``^docker,lo``) has no gloo equivalent and is not followed.
    ``interfaces``: this host's interface names (default: the OS's).
    """
    environ = os.environ if environ is None else environ
    if environ.get('GLOO_SOCKET_IFNAME'):
        return environ['GLOO_SOCKET_IFNAME']
    nccl = environ.get('NCCL_SOCKET_IFNAME', '').strip()
    if not nccl or nccl.startswith('^'):
        return None
    if nccl.startswith('='):
        return nccl[1:]
    prefixes = [p for p in nccl.split(',') if p]
    if interfaces is None:
        interfaces = [name for _, name in socket.if_nameindex()]
    return next((name for name in interfaces
                 if name.startswith(tuple(prefixes))), None)


@contextlib.contextmanager
def _environ(key, value):
    """``os.environ[key] = value`` within the block (None: unchanged)."""
    saved = os.environ.get(key)
    if value is not None:
        os.environ[key] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


@functools.lru_cache(maxsize=None)
def _gloo_group():
    # new_group is itself a collective: every rank reaches this on its first
    # CPU collective under NCCL, in the same order, since the clustering code
    # is symmetric across ranks. torch's gloo backend takes its interface
    # from GLOO_SOCKET_IFNAME when the group is created (new_group's
    # pg_options do not reach gloo), so the rule's choice goes there. A new
    # group takes its backend's default timeout (30 min for gloo), not the
    # default group's: given the run's here.
    with _environ('GLOO_SOCKET_IFNAME', gloo_interface()):
        return torch_dist.new_group(backend='gloo',
                                    timeout=default_group_timeout())


class ProcessGroupCollectives:
    """``torch.distributed`` collectives over the default group.

    A tensor is reduced on its own device when the backend can: CPU tensors
    under NCCL go through a gloo group (features may stay in host memory
    while training uses NCCL), and CUDA tensors under gloo through a CPU
    copy.
    """

    def __init__(self):
        if not (torch_dist.is_available() and torch_dist.is_initialized()):
            raise RuntimeError('ProcessGroupCollectives needs an initialised '
                               'torch.distributed process group')
        self.world_size = torch_dist.get_world_size()
        self.rank = torch_dist.get_rank()
        self._backend = torch_dist.get_backend()

    def _route(self, tensor):
        """(tensor on a device the backend takes, its group)."""
        if tensor.is_cuda and self._backend == 'gloo':
            return tensor.cpu(), None
        if not tensor.is_cuda and self._backend != 'gloo':
            return tensor, _gloo_group()
        return tensor, None

    def _all_reduce(self, tensor, op):
        """``op`` over ranks (in place where possible); returns the result
        on ``tensor``'s device."""
        routed, group = self._route(tensor.contiguous())
        torch_dist.all_reduce(routed, op=op, group=group)
        return routed.to(tensor.device)

    def all_reduce_sum(self, tensor):
        return self._all_reduce(tensor, torch_dist.ReduceOp.SUM)

    def all_reduce_min(self, tensor):
        """Element-wise minimum (gloo takes no int16: use int32 or
        wider)."""
        return self._all_reduce(tensor, torch_dist.ReduceOp.MIN)

    def all_gather_cat(self, tensor):
        """Every rank's ``tensor`` (first dimensions may differ) concatenated
        in rank order, on every rank."""
        routed, group = self._route(tensor.contiguous())
        size = torch.tensor([routed.shape[0]], device=routed.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        torch_dist.all_gather(sizes, size, group=group)
        sizes = [int(s) for s in sizes]
        padded = routed.new_zeros((max(sizes), ) + routed.shape[1:])
        padded[:routed.shape[0]] = routed
        parts = [torch.empty_like(padded) for _ in sizes]
        torch_dist.all_gather(parts, padded, group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(
            tensor.device)


def default_collectives():
    """``ProcessGroupCollectives`` when a process group of more than one
    rank is initialised, else ``LOCAL``."""
    if (torch_dist.is_available() and torch_dist.is_initialized()
            and torch_dist.get_world_size() > 1):
        return ProcessGroupCollectives()
    return LOCAL
