"""Feature extraction for a clustering round: each rank encodes its own share
of the extraction loader (built by ``extract_loader.build_extract_loader``)
and keeps the rows on the model's device; nothing is gathered.

The forward runs under the autocast of training (``precision.autocast_dtype``
of the run's optimizer wrapper: bf16 with ``--amp``), so that the features
are those of the encoders as trained and ``tools/gpu_check.py`` times the
same pass; the rows are then stored in the hook's ``feature_dtype``."""
from typing import Any, Dict, Iterable, Optional, Tuple

import torch
from mmengine import dist
from mmengine.model import is_model_wrapper
from torch import nn
from torch.utils.data import DataLoader

from xdc_plugin.engine.round.feature_shard import FeatureShard


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def extract_batch(
        model: nn.Module, batch: Dict[str, Any],
        amp_dtype: Optional[torch.dtype] = None
) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Pooled encoder features of one collated batch, as a round extracts
    them: the forward under autocast to ``amp_dtype`` (None: fp32) on the
    model's device. The caller sets eval mode and the grad context."""
    data = model.data_preprocessor(batch, False)
    with torch.autocast(data['video'].device.type, dtype=amp_dtype,
                        enabled=amp_dtype is not None):
        return data, model.extract_feat(data['video'], data['audio'])


@torch.no_grad()
def extract_shard(model: nn.Module, loader: Iterable[Dict[str, Any]],
                  amp_dtype: Optional[torch.dtype] = None,
                  feature_dtype: torch.dtype = torch.float32) -> FeatureShard:
    """``FeatureShard`` of the clips ``loader`` gives this rank: the pooled
    encoder features in eval mode (``extract_batch``), on the model's device
    in ``feature_dtype``, keyed by each sample's ``index`` (the content
    returned: a clip that failed to decode is replaced by a neighbour, so an
    index can be missing and another held twice; see
    ``feature_shard.claim_rows``)."""
    model = unwrap(model)
    # Every rank extracts with rank 0's running statistics (BN): each
    # rank's own differ, and only rank 0's are checkpointed, so a resumed
    # run would otherwise extract other features on the other ranks.
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.broadcast(buffer, src=0)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [FeatureShard.empty(model.feat_dims, device, feature_dtype)]
    for batch in loader:
        # The indices as collated (CPU): no device-to-host copy.
        indices = torch.as_tensor(batch['index']).long().flatten()
        _, feats = extract_batch(model, batch, amp_dtype)
        parts.append(FeatureShard(
            indices, {m: f.to(feature_dtype) for m, f in feats.items()}))
    model.train(was_training)
    return FeatureShard.cat(parts)


def subset_loader(loader: DataLoader, indices: torch.Tensor, rank: int,
                  world_size: int) -> DataLoader:
    """``loader`` over this rank's share (``indices[rank::world_size]``) of
    the dataset ``indices``: the clips a feature bank lacks."""
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size,
        sampler=indices[rank::world_size].tolist(),
        num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        worker_init_fn=loader.worker_init_fn)
