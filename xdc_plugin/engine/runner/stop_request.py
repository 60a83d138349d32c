"""A request to stop the run, made by a signal, acted on where stopping loses
nothing.

The signals: USR2 (SLURM's ``--signal=USR2@<s>`` before a preemption or the
time limit), TERM (``kill``, ``scancel``, torchrun stopping its workers) and
INT (Ctrl-C). The handler records the signal; the training loop acts on it
after the current iteration (``PreemptionCheckpointHook``), a clustering
round as soon as it can (``CrossModalClusteringHook``):

* in one process, inside :meth:`StopRequest.interruptible` the handler
  raises :class:`StopRequested` at once. Python runs a handler between two
  bytecodes, and inside C code that polls for signals (faiss's k-means does
  after every iteration), so a long round ends within a second or so;
* with several ranks, a rank never stops alone, which would leave the others
  waiting in a collective: the ranks agree (an all-reduce of the signal
  number) at points that every rank reaches in the same order,
  :meth:`StopRequest.check`, and all stop at the same one. The round checks
  after every extraction batch and before every collective of its k-means,
  label gather and probe. Whether the signal reached every rank (SLURM,
  torchrun) or one, every rank stops at the next such point.

Between two such points a rank finishes what it is doing: a k-means
iteration, an extraction batch, and with several ranks the main process's
probe (at most ``max_samples`` rows, 5000 by default) while the others wait
for its result.

The handler ignores the signals in a forked child (a DataLoader worker
inherits it): Ctrl-C reaches the whole process group, and the workers must
keep serving the batch that the main process finishes. A second signal acts
as it would without the handler (a second Ctrl-C forces the exit), unless
it comes within :data:`SAME_STOP_S` of the first: then it is the same stop
delivered twice (the terminal and torchrun both signal a worker on Ctrl-C;
torchrun passes on the TERM that SLURM also sends to every task).
"""
import contextlib
import os
import signal
import time
from typing import Iterable, Iterator, Sequence, TypeVar

import torch
from mmengine import dist

from xdc_plugin.clustering.collectives import Collectives

T = TypeVar('T')

_END = object()
# A second signal within this many seconds of the first is the same stop.
SAME_STOP_S = 1.0


class StopRequested(Exception):
    """Raised where a stop is acted on; ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f'{signal.Signals(signum).name} received')
        self.signum = signum


class StopRequest:
    """The handler of ``signals`` (names) and the signal it received
    (``signum``, 0 while none)."""

    def __init__(self, signals: Sequence[str]) -> None:
        self.signals = [getattr(signal, name) for name in signals]
        self.signum = 0
        self._received_at = None
        self._previous = {}
        self._pid = None
        self._raise_at_once = False

    def install(self) -> None:
        """Handle the signals from now on (main thread only)."""
        self._pid = os.getpid()
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        """Give the signals back to their previous handlers."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame):
        if os.getpid() != self._pid:
            return  # a forked worker: the main process decides
        if self.signum:
            if time.monotonic() - self._received_at < SAME_STOP_S:
                return
            signal.signal(signum, self._previous.pop(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.signum, self._received_at = signum, time.monotonic()
        if self._raise_at_once:
            self._raise_at_once = False
            raise StopRequested(signum)

    def agreed(self) -> int:
        """The signal any rank received (the largest number), 0 if none; an
        all-reduce with several ranks: every rank calls it at the same
        point."""
        if dist.get_world_size() == 1:
            return self.signum
        flag = torch.tensor(self.signum)
        dist.all_reduce(flag, op='max')
        return int(flag)

    def check(self) -> None:
        """Raise :class:`StopRequested` on every rank if any rank received
        a signal (call on every rank at the same point)."""
        signum = self.agreed()
        if signum:
            raise StopRequested(signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """In one process, a signal within the block (or before it) raises
        :class:`StopRequested` at once; with several ranks nothing changes
        (the block's :meth:`check` points stop it)."""
        if dist.get_world_size() > 1:
            yield
            return
        try:
            self._raise_at_once = True
            self.check()  # a signal before the block
            yield
        finally:
            self._raise_at_once = False

    def each(self, iterable: Iterable[T]) -> Iterator[T]:
        """The items of ``iterable`` (a sized one, a DataLoader), with a
        :meth:`check` after each is fetched. With several ranks, a rank with
        fewer items goes on checking until the rank with the most has
        fetched its last (the lengths are all-reduced once), so that the
        checks pair up."""
        steps = len(iterable)
        if dist.get_world_size() > 1:
            longest = torch.tensor(steps)
            dist.all_reduce(longest, op='max')
            steps = int(longest)
        items = iter(iterable)
        for _ in range(steps):
            item = next(items, _END)
            self.check()
            if item is not _END:
                yield item

    def checked(self, collectives: Collectives) -> Collectives:
        """``collectives`` (``clustering.collectives``) whose every
        operation first agrees on a stop: ranks run the same collectives in
        the same order, so these checks pair up."""
        return _CheckedCollectives(collectives, self)


class _CheckedCollectives:

    def __init__(self, collectives, stop):
        self._collectives, self._stop = collectives, stop
        self.world_size = collectives.world_size
        self.rank = collectives.rank

    def all_reduce_sum(self, tensor):
        self._stop.check()
        return self._collectives.all_reduce_sum(tensor)

    def all_reduce_min(self, tensor):
        self._stop.check()
        return self._collectives.all_reduce_min(tensor)

    def all_gather_cat(self, tensor):
        self._stop.check()
        return self._collectives.all_gather_cat(tensor)
