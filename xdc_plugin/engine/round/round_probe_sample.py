"""The per-round probe on sharded features: a bounded sample of labelled
rows reaches every rank, which runs its share of the jobs of
``xdc_plugin.probe.round_probe.probe_jobs``; the scores are
gathered, so no rank probes while the others wait."""
from typing import Dict

import numpy as np
import torch
from mmengine import dist

from xdc_plugin.clustering.collectives import Collectives
from xdc_plugin.clustering.distributed import index_keys, smallest_keys_mask
from xdc_plugin.engine.round.feature_shard import FeatureShard
from xdc_plugin.probe.round_probe import MAX_SAMPLES, mean_scores, probe_jobs


def probe_shard(shard: FeatureShard, labels: np.ndarray,
                collectives: Collectives,
                **probe_kwargs) -> Dict[str, float]:
    """``probe_round`` scalars (``'<modality>_linear_top1'``, ...) of the
    features all ranks hold, on every rank.

    At most ``max_samples`` labelled rows are probed (those whose index has
    the smallest seeded key: the same sample whatever the world size), so
    the gather is bounded (5000 x 512 floats = 10 MB by default). Rank r of
    W runs the jobs r, r + W, ... (one per protocol, modality and fold) and
    the scores are all-gathered: the scalars are those of ``probe_round``
    on the sample, in a W-th of its time.
    """
    labels = torch.as_tensor(np.asarray(labels, np.int64))
    max_samples = probe_kwargs.get('max_samples', MAX_SAMPLES)
    labelled = labels[shard.indices] >= 0
    keys = index_keys(shard.indices.numpy(), probe_kwargs.get('seed', 0))
    num_labelled = int(collectives.all_reduce_sum(labelled.sum()))
    chosen = labelled & smallest_keys_mask(
        torch.where(labelled, keys, torch.iinfo(torch.int64).max),
        min(num_labelled, max_samples), collectives)
    sample = shard.select(chosen)
    indices = collectives.all_gather_cat(sample.indices)
    order = torch.argsort(indices)  # rows in index order on any world size
    indices = indices[order]
    # The rows live on the encoders' device; the probe (scikit-learn)
    # takes float32 host arrays.
    features = {m: collectives.all_gather_cat(f)[order].float().cpu()
                for m, f in sample.features.items()}
    jobs = probe_jobs(features, labels[indices].numpy(), **probe_kwargs)
    rank, world = collectives.rank, collectives.world_size
    scored = [(j, jobs[j][0], jobs[j][1]())
              for j in range(rank, len(jobs), world)]
    if world > 1:
        scored = sorted(s for part in dist.all_gather_object(scored)
                        for s in part)
    return mean_scores([(name, score) for _, name, score in scored])
