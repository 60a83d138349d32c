"""FeatureShard and claim_rows: one owner per dataset index, on one and on
two gloo processes."""
import os

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from xdc_plugin.clustering.collectives import (LOCAL,
                                               ProcessGroupCollectives)
from xdc_plugin.engine.round.feature_shard import (FeatureShard, claim_rows,
                                                   first_occurrences)


def shard_of(indices, offset=0.0):
    """Row of index i holds i + offset, so a test sees which row was kept."""
    indices = torch.tensor(indices)
    return FeatureShard(indices, {'video': indices[:, None].float() + offset,
                                  'audio': torch.zeros(len(indices), 2)})


def test_first_occurrences_keeps_the_first_row_of_each_index():
    mask = first_occurrences(torch.tensor([4, 1, 4, 3, 1, 1]))
    assert mask.tolist() == [True, True, False, True, False, False]
    assert first_occurrences(torch.empty(0, dtype=torch.long)).numel() == 0


def test_claim_drops_repeated_rows_and_names_the_missing_indices():
    shard = FeatureShard.cat([shard_of([5, 2]), shard_of([5], 0.25),
                              shard_of([0], 0.5)])
    claimed, missing = claim_rows(shard, 7, LOCAL)
    assert claimed.indices.tolist() == [5, 2, 0]
    # The first row of index 5 (5.0), not the repeat (5.25).
    assert claimed.features['video'][:, 0].tolist() == [5.0, 2.0, 0.5]
    assert missing.tolist() == [1, 3, 4, 6]
    assert len(FeatureShard.empty({'video': 3})) == 0


def _claim_worker(rank, world_size, init_file, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    # Index 3 on both ranks (a round_up sampler's padding), 6 on neither.
    held = [[0, 3, 1, 3], [3, 2, 4, 5]][rank]
    claimed, missing = claim_rows(shard_of(held, offset=rank / 10), 7,
                                  ProcessGroupCollectives())
    np.savez(os.path.join(out_dir, f'rank{rank}.npz'),
             indices=claimed.indices.numpy(), missing=missing.numpy(),
             video=claimed.features['video'][:, 0].numpy())
    torch_dist.destroy_process_group()


def test_an_index_held_by_two_ranks_goes_to_the_lowest(tmp_path):
    mp.start_processes(_claim_worker,
                       args=(2, str(tmp_path / 'init'), str(tmp_path)),
                       nprocs=2, start_method='fork')
    rank0, rank1 = (np.load(tmp_path / f'rank{r}.npz') for r in (0, 1))
    assert rank0['indices'].tolist() == [0, 3, 1]
    assert rank1['indices'].tolist() == [2, 4, 5]
    np.testing.assert_allclose(rank1['video'], [2.1, 4.1, 5.1])
    for ranked in (rank0, rank1):
        assert ranked['missing'].tolist() == [6]
