"""The per-round probe on sharded features: a bounded sample of labelled
rows comes to the main process, which runs
``xdc_plugin.evaluation.round_probe.probe_round`` on it."""
import numpy as np
import torch
from mmengine import dist

from xdc_plugin.clustering.distributed import index_keys, smallest_keys_mask
from xdc_plugin.evaluation.round_probe import MAX_SAMPLES, probe_round


def probe_shard(shard, labels, collectives, **probe_kwargs):
    """``probe_round`` scalars (``'<modality>_linear_top1'``, ...) of the
    features all ranks hold, on every rank.

    At most ``max_samples`` labelled rows are probed (those whose index has
    the smallest seeded key: the same sample whatever the world size), so
    the gather is bounded (5000 x 512 floats = 10 MB by default), and
    ``probe_round`` uses them all.
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
    scalars = [None]
    if dist.is_main_process():
        scalars[0] = probe_round(features, labels[indices].numpy(),
                                 **probe_kwargs)
    if collectives.world_size > 1:
        dist.broadcast_object_list(scalars, src=0)
    return scalars[0]
