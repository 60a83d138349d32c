"""The per-round probe on shards: a bounded, world-size independent sample
of labelled rows gives probe_round's scalars; the ranks share its jobs."""
import json

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

import xdc_plugin.engine.round.round_probe_sample as module
from xdc_plugin.clustering.collectives import LOCAL, ProcessGroupCollectives
from xdc_plugin.engine.round.feature_shard import FeatureShard
from xdc_plugin.engine.round.round_probe_sample import probe_shard
from xdc_plugin.probe.round_probe import probe_round


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
    seen = {}

    def record(features, labels, **kwargs):
        seen.update(rows=len(labels), labelled=bool((labels >= 0).all()))
        return []

    monkeypatch.setattr(module, 'probe_jobs', record)
    labels, features = planted()
    probe_shard(FeatureShard(torch.arange(60), features), labels, LOCAL,
                max_samples=20)
    assert seen == dict(rows=20, labelled=True)


def _probe_worker(rank, world_size, init_file, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    labels, features = planted()
    ran = []
    jobs_of = module.probe_jobs

    def recorded_jobs(*args, **kwargs):
        jobs = jobs_of(*args, **kwargs)
        return [(name, lambda j=j, job=job: ran.append(j) or job())
                for j, (name, job) in enumerate(jobs)]

    module.probe_jobs = recorded_jobs
    held = torch.arange(rank, 60, world_size)
    shard = FeatureShard(held, {m: f[held] for m, f in features.items()})
    scalars = probe_shard(shard, labels, ProcessGroupCollectives(), folds=3)
    with open(f'{out_dir}/rank{rank}.json', 'w') as f:
        json.dump(dict(scalars=scalars, ran=ran), f)
    torch_dist.destroy_process_group()


def test_two_ranks_share_the_probe_and_agree_with_one_process(tmp_path):
    mp.start_processes(_probe_worker, nprocs=2, start_method='fork',
                       args=(2, str(tmp_path / 'init'), str(tmp_path)))
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text())
             for r in range(2)]
    # 2 protocols x 2 modalities x 3 folds, half each: no rank probes
    # while the other waits.
    assert ranks[0]['ran'] == list(range(0, 12, 2))
    assert ranks[1]['ran'] == list(range(1, 12, 2))
    labels, features = planted()
    expected = probe_round(features, labels, folds=3)
    assert ranks[0]['scalars'] == ranks[1]['scalars'] == expected
