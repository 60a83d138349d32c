"""Distributed sampler that balances pseudo-classes (DeepCluster style)."""
import math
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from xdc_plugin.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class PseudoClassBalancedSampler(Sampler):
    """mmengine ``DefaultSampler`` that, once given pseudo-labels, draws
    every non-empty pseudo-class equally often.

    Without pseudo-labels it yields exactly what ``DefaultSampler`` yields.
    After ``set_pseudo_labels(labels)`` each epoch draws ``len(dataset)``
    indices:

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
        shuffle: shuffle the indices every epoch.
        seed: random seed, identical on every rank; ``None`` draws one and
            broadcasts rank 0's.
        round_up: pad the list so that every rank gets the same number of
            indices (as ``DefaultSampler``).
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        rank, world_size = get_dist_info()
        self.rank = rank
        self.world_size = world_size
        self.dataset = dataset
        self.shuffle = shuffle
        if seed is None:
            seed = sync_random_seed()
        self.seed = seed
        self.epoch = 0
        self.round_up = round_up
        size = len(dataset)
        if round_up:
            self.num_samples = math.ceil(size / world_size)
            self.total_size = self.num_samples * world_size
        else:
            self.num_samples = math.ceil((size - rank) / world_size)
            self.total_size = size
        self._labels = None
        self._class_members = None

    @property
    def pseudo_labels(self):
        """The current pseudo-labels (int64 (N,), a copy) or ``None``."""
        return None if self._labels is None else self._labels.copy()

    @property
    def num_classes(self):
        """Number of non-empty pseudo-classes (0 without labels)."""
        return 0 if self._class_members is None else len(self._class_members)

    def set_pseudo_labels(self, labels) -> None:
        """Use ``labels`` (int, shape ``(len(dataset),)``, -1 for
        unlabelled) from the next iteration on; ``None`` goes back to plain
        ``DefaultSampler`` behaviour."""
        if labels is None:
            self._labels = None
            self._class_members = None
            return
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.shape != (len(self.dataset), ):
            raise ValueError(f'expected pseudo-labels of shape '
                             f'({len(self.dataset)},), got {labels.shape}')
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f'pseudo-labels must be integers, got '
                             f'{labels.dtype}')
        labels = labels.astype(np.int64)
        if (labels < -1).any():
            raise ValueError('pseudo-labels must be >= -1 (-1: unlabelled)')
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
        """This epoch's list for all ranks, before padding and sharding."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        if self._class_members is not None:
            return self._balanced_indices(g).tolist()
        if self.shuffle:
            return torch.randperm(len(self.dataset), generator=g).tolist()
        return list(range(len(self.dataset)))

    def __iter__(self) -> Iterator[int]:
        indices = self.global_indices()
        if self.round_up and indices:
            indices = (indices * int(self.total_size / len(indices) +
                                     1))[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
