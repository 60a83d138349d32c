"""The per-round probe on shards: a bounded, world-size independent sample
of labelled rows gives probe_round's scalars."""
import numpy as np
import torch

from xdc_plugin.clustering.collectives import LOCAL
from xdc_plugin.engine.feature_shard import FeatureShard
from xdc_plugin.engine.round_probe_sample import probe_shard
from xdc_plugin.evaluation.round_probe import probe_round


def planted(n=60):
    """Video separates the 3 classes, audio is noise; index 0-5 unlabelled."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    labels[:6] = -1
    video = np.eye(3)[labels % 3] * 5 + rng.normal(size=(n, 3)) * 0.1
    audio = rng.normal(size=(n, 3))
    return labels, {'video': torch.tensor(video, dtype=torch.float32),
                    'audio': torch.tensor(audio, dtype=torch.float32)}


def test_probe_of_a_shard_is_probe_round_on_its_labelled_rows():
    labels, features = planted()
    order = torch.from_numpy(np.random.default_rng(1).permutation(60))
    shard = FeatureShard(order, {m: f[order] for m, f in features.items()})
    scalars = probe_shard(shard, labels, LOCAL, folds=3)
    assert scalars == probe_round(features, labels, folds=3)
    assert scalars['video_linear_top1'] == 1.0
    assert scalars['video_knn_top1'] == 1.0
    assert scalars['audio_linear_top1'] < 0.7


def test_at_most_max_samples_rows_are_probed(monkeypatch):
    import xdc_plugin.engine.round_probe_sample as module
    seen = {}

    def record(features, labels, **kwargs):
        seen.update(rows=len(labels), labelled=bool((labels >= 0).all()))
        return {}

    monkeypatch.setattr(module, 'probe_round', record)
    labels, features = planted()
    probe_shard(FeatureShard(torch.arange(60), features), labels, LOCAL,
                max_samples=20)
    assert seen == dict(rows=20, labelled=True)
