"""The feature bank: the features of the training forward pass, kept per
dataset index during the epoch before a clustering round, so that the round
clusters them instead of decoding the dataset again.

Why the training pass and not an eval-mode pass on the same batch: it is
free (the encoders' outputs are there; detaching and copying them costs
about nothing), where an eval-mode forward costs about a third of a
training step (forward + backward), i.e. some 30% of an epoch, far over the
round's budget. The rows differ from extraction's: random clips and crops,
batch-statistics BN, and weights that move during the epoch (each row is
from the step that saw the clip). ``bench/bench_round_cost.py`` measures
what this does to cluster quality.

The bank holds only the rows of this rank (O(N * D / world)), on the
encoders' device in the hook's feature dtype: the forward hook only detaches
and casts (no copy to the host, which would synchronise every step); it is
never checkpointed (see ``CrossModalClusteringHook``: a run resumed in the
middle
of a bank epoch extracts at the next round).
"""
from typing import Sequence, Union

import torch

from xdc_plugin.engine.round.feature_shard import (FeatureShard,
                                                   first_occurrences)
from xdc_plugin.models.xdc_model import XDCModel


class FeatureBank:
    """Captures each training batch's pooled encoder features.

    ``open(epoch)`` installs forward hooks on the model's encoders;
    between ``expect(indices)`` (before a training step) and ``commit()``
    (after it) every encoder output is kept for the batch's dataset
    indices; ``close()`` removes the hooks. ``shard()`` gives the rows,
    one per index (its last occurrence: the latest weights).
    """

    def __init__(self, model: XDCModel,
                 feature_dtype: torch.dtype = torch.float32) -> None:
        self.model = model
        self.feature_dtype = feature_dtype
        self.epoch = None
        self._parts = []
        self._handles = []
        self._indices = None
        self._pending = {}

    def open(self, epoch: int) -> None:
        self.close()
        self.epoch = epoch
        self._parts = [FeatureShard.empty(
            self.model.feat_dims, next(self.model.parameters()).device,
            self.feature_dtype)]
        for modality in self.model.feat_dims:
            encoder = self.model.encoder(modality)
            self._handles.append(encoder.register_forward_hook(
                self._capture_hook(modality)))

    def _capture_hook(self, modality):
        def capture(module, inputs, output):
            if self._indices is not None:
                self._pending[modality].append(
                    output.detach().to(self.feature_dtype))
        return capture

    def expect(self, indices: Union[torch.Tensor, Sequence[int]]) -> None:
        """The dataset indices of the batch the next step trains on."""
        if self._handles:
            self._indices = torch.as_tensor(indices).long().cpu().flatten()
            self._pending = {m: [] for m in self.model.feat_dims}

    def commit(self) -> None:
        """Keep the features the step computed for the expected batch."""
        if self._indices is None:
            return
        indices, self._indices = self._indices, None
        features = {}
        for modality, outputs in self._pending.items():
            if len(outputs) != 1 or len(outputs[0]) != len(indices):
                raise RuntimeError(
                    f'feature bank: the {modality} encoder ran '
                    f'{len(outputs)} time(s) on a batch of {len(indices)} '
                    'clips in one training step (expected once, on the '
                    'whole batch); turn feature_bank off for this model')
            features[modality] = outputs[0]
        self._parts.append(FeatureShard(indices, features))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._indices = [], None

    def discard(self) -> None:
        self.close()
        self.epoch, self._parts = None, []

    def shard(self) -> FeatureShard:
        """The rows captured since ``open``, the last one of each index."""
        rows = FeatureShard.cat(self._parts)
        flipped = torch.arange(len(rows) - 1, -1, -1)
        last = flipped[first_occurrences(rows.indices[flipped])]
        return rows.select(torch.sort(last).values)
