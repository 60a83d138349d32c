"""Distributed sampler that balances pseudo-classes (DeepCluster style)."""
from typing import Iterator, Mapping, Optional, Sized

import numpy as np
import torch
from mmengine.dataset import DefaultSampler

from xdc_plugin import SOURCES
from xdc_plugin.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class PseudoClassBalancedSampler(DefaultSampler):
    """mmengine ``DefaultSampler`` that, once given pseudo-labels, draws
    every non-empty pseudo-class equally often.

    Without pseudo-labels it is a plain ``DefaultSampler``. After
    ``set_pseudo_labels(labels)`` (the dict ``XDCModel.set_pseudo_labels``
    takes; the sampler uses the clusters of its ``balance_by`` source) each
    epoch draws ``len(dataset)`` indices:

    * each of the ``C`` non-empty classes gets ``len(dataset) // C`` draws,
      and a random ``len(dataset) % C`` of them one more;
    * within a class of ``s`` members and ``q`` draws, every member is taken
      ``q // s`` times and a random ``q % s`` of them once more (uniform
      within the class, as sampling with replacement is in expectation, but
      covering as many members as the quota allows);
    * entries labelled -1 are never drawn;
    * with ``shuffle=True`` the list is then shuffled; with ``shuffle=False``
      it stays grouped by class (ascending label).

    All random draws use a generator seeded with ``seed + epoch``, so every
    rank draws the same global list (given the same labels and seed; a
    ``None`` seed is synchronised across ranks as in ``DefaultSampler``) and
    then takes its shard ``rank::world_size`` of it, padded first to a
    multiple of the world size when ``round_up``. The caller must give every
    rank the same labels.

    Args:
        dataset: the dataset (only its length is used).
        balance_by: the clustering source (``'video'``, ``'audio'`` or
            ``'joint'``) whose pseudo-classes are balanced.
        shuffle: shuffle the indices every epoch.
        seed: random seed, identical on every rank; ``None`` draws one and
            broadcasts rank 0's.
        round_up: pad the list so that every rank gets the same number of
            indices (as ``DefaultSampler``).
    """

    def __init__(self,
                 dataset: Sized,
                 balance_by: str,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed,
                         round_up=round_up)
        if balance_by not in SOURCES:
            raise ValueError(f'balance_by must be one of {SOURCES}, got '
                             f'{balance_by!r}')
        self.balance_by = balance_by
        self._labels = None
        self._class_members = None

    @property
    def pseudo_labels(self):
        """The current pseudo-labels (int32 (N,), a copy) or ``None``."""
        return None if self._labels is None else self._labels.copy()

    @property
    def num_classes(self):
        """Number of non-empty pseudo-classes (0 without labels)."""
        return 0 if self._class_members is None else len(self._class_members)

    def set_pseudo_labels(self, labels: Mapping) -> None:
        """Balance by ``labels[balance_by]`` (int, shape
        ``(len(dataset),)``, -1 for unlabelled) from the next iteration on.
        ``labels``: ``{source: labels}``, as ``XDCModel`` takes them."""
        if self.balance_by not in labels:
            raise ValueError(
                f'no pseudo-labels of balance_by={self.balance_by!r} among '
                f'those given ({sorted(labels)})')
        labels = labels[self.balance_by]
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.shape != (len(self.dataset), ):
            raise ValueError(f'expected pseudo-labels of shape '
                             f'({len(self.dataset)},), got {labels.shape}')
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f'pseudo-labels must be integers, got '
                             f'{labels.dtype}')
        if labels.size and (labels.min() < -1 or labels.max() >= 2**31):
            raise ValueError('pseudo-labels must be in [-1, 2**31) (-1: '
                             'unlabelled)')
        labels = labels.astype(np.int32)
        labelled = np.flatnonzero(labels >= 0)
        if len(labelled) == 0:
            raise ValueError('every pseudo-label is -1: nothing to sample')
        order = labelled[np.argsort(labels[labelled], kind='stable')]
        _, starts = np.unique(labels[order], return_index=True)
        self._labels = labels
        self._class_members = [
            torch.from_numpy(m) for m in np.split(order, starts[1:])
        ]

    def _balanced_indices(self, generator) -> torch.Tensor:
        size = len(self.dataset)
        num_classes = len(self._class_members)
        quota = torch.full((num_classes, ), size // num_classes,
                           dtype=torch.int64)
        extra = torch.randperm(num_classes, generator=generator)
        quota[extra[:size % num_classes]] += 1
        picks = []
        for members, q in zip(self._class_members, quota.tolist()):
            reps, rest = divmod(q, len(members))
            if reps:
                picks.append(members.repeat(reps))
            if rest:
                perm = torch.randperm(len(members), generator=generator)
                picks.append(members[perm[:rest]])
        indices = torch.cat(picks)
        if self.shuffle:
            indices = indices[torch.randperm(size, generator=generator)]
        return indices

    def global_indices(self) -> list:
        """This epoch's balanced list for all ranks, before padding and
        sharding (needs pseudo-labels)."""
        if self._class_members is None:
            raise RuntimeError('global_indices needs pseudo-labels; without '
                               'them the sampler is DefaultSampler')
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return self._balanced_indices(g).tolist()

    def __iter__(self) -> Iterator[int]:
        if self._class_members is None:
            return super().__iter__()
        # Padded and sharded as DefaultSampler pads and shards its list.
        indices = self.global_indices()
        if self.round_up:
            indices = (indices * int(self.total_size / len(indices) +
                                     1))[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size])
