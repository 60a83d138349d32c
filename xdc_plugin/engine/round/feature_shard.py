"""The features a clustering round works on: each rank's own rows.

A ``FeatureShard`` is the (dataset index, feature per modality) rows one
rank holds, from extraction or from the feature bank. No rank ever holds
the whole dataset's features: ``claim_rows`` makes the shards disjoint
(one owner per dataset index) so that ``DistributedKMeans.fit_sharded``
can cluster them where they are.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple, Union

import torch

from xdc_plugin.clustering.collectives import Collectives


@dataclass
class FeatureShard:
    """Rows held by this rank: ``indices`` int64 CPU (n,), ``features``
    modality -> (n, D) on the encoders' device, in the round's feature
    dtype (float32 or float16), row i being dataset index ``indices[i]``."""
    indices: torch.Tensor
    features: Dict[str, torch.Tensor]

    @classmethod
    def empty(cls, feat_dims: Mapping[str, int],
              device: Union[str, torch.device] = 'cpu',
              dtype: torch.dtype = torch.float32) -> 'FeatureShard':
        return cls(torch.empty(0, dtype=torch.long),
                   {m: torch.empty(0, d, device=device, dtype=dtype)
                    for m, d in feat_dims.items()})

    @classmethod
    def cat(cls, shards: Sequence['FeatureShard']) -> 'FeatureShard':
        return cls(torch.cat([s.indices for s in shards]),
                   {m: torch.cat([s.features[m] for s in shards])
                    for m in shards[0].features})

    def __len__(self) -> int:
        return len(self.indices)

    def select(self, rows: torch.Tensor) -> 'FeatureShard':
        """The shard restricted to ``rows`` (bool mask or positions)."""
        return FeatureShard(self.indices[rows],
                            {m: f[rows] for m, f in self.features.items()})


def first_occurrences(indices: torch.Tensor) -> torch.Tensor:
    """Bool mask keeping the first row of every dataset index."""
    order = torch.argsort(indices, stable=True)
    ordered = indices[order]
    first = torch.ones(len(indices), dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = torch.zeros(len(indices), dtype=torch.bool)
    keep[order[first]] = True
    return keep


def claim_rows(shard: FeatureShard, num_total: int,
               collectives: Collectives) -> Tuple[FeatureShard, torch.Tensor]:
    """``(shard, missing)``: the rows of ``shard`` this rank owns and the
    dataset indices no rank holds.

    A dataset index can be held twice: by the same rank (an undecodable clip
    replaced by its neighbour; a sampler that draws an index again) or by
    two ranks (the padding of a ``round_up`` sampler). Each index goes to
    the lowest rank holding it, and within a rank to its first row. Costs
    one int32 all-reduce over the dataset (4 bytes per clip).
    """
    shard = shard.select(first_occurrences(shard.indices))
    world = collectives.world_size
    owner = torch.full((int(num_total), ), world, dtype=torch.int32)
    owner[shard.indices] = collectives.rank
    owner = collectives.all_reduce_min(owner)
    mine = owner[shard.indices] == collectives.rank
    missing = torch.nonzero(owner == world).flatten()
    return shard.select(mine), missing
