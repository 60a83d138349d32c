"""clustering/threads.py: a clustering section uses all of the rank's cores
whatever OMP_NUM_THREADS says, and gives the thread counts back after.
The machine's cores are mocked (``os.sched_getaffinity``)."""
import faiss
import numpy as np
import pytest
import torch

from xdc_plugin.clustering import threads
from xdc_plugin.clustering.collectives import LOCAL
from xdc_plugin.clustering.kmeans import FaissKMeans
from xdc_plugin.engine.round.feature_shard import FeatureShard
from xdc_plugin.engine.round.round_clustering import cluster_shard


@pytest.fixture
def node(monkeypatch):
    """A 16-core node, torchrun's OMP_NUM_THREADS=1 applied."""
    monkeypatch.setattr(threads.os, 'sched_getaffinity',
                        lambda pid: set(range(16)))
    for key in ('LOCAL_WORLD_SIZE', 'SLURM_CPUS_PER_TASK'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    saved = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield monkeypatch
    torch.set_num_threads(saved[0])
    faiss.omp_set_num_threads(saved[1])


@pytest.mark.parametrize('env, expected', [
    ({}, 16),
    ({'LOCAL_WORLD_SIZE': '4'}, 4),          # torchrun, 4 ranks a node
    ({'LOCAL_WORLD_SIZE': '32'}, 1),
    ({'SLURM_CPUS_PER_TASK': '6'}, 6),       # SLURM's share of the task
    ({'LOCAL_WORLD_SIZE': '2', 'SLURM_CPUS_PER_TASK': '10'}, 8)])
def test_rank_cpu_count(node, env, expected):
    assert threads.rank_cpu_count(env) == expected


def test_threads_are_set_for_the_section_and_restored(node):
    node.setenv('LOCAL_WORLD_SIZE', '4')
    with threads.rank_threads() as num:
        assert num == 4
        assert torch.get_num_threads() == 4
        assert faiss.omp_get_max_threads() == 4
    assert torch.get_num_threads() == 1
    assert faiss.omp_get_max_threads() == 1


def test_a_rounds_clustering_runs_on_the_ranks_cores(node):
    """Under OMP_NUM_THREADS=1 and 2 ranks on the node, the clusterer of a
    round fits with 8 threads on the rows' device, and 1 is back after."""
    node.setenv('LOCAL_WORLD_SIZE', '2')
    seen = []
    fit = FaissKMeans.fit

    def recording_fit(self, features, init_centroids=None):
        seen.append((torch.get_num_threads(), faiss.omp_get_max_threads(),
                     features.device, self._faiss_gpu_device(features)))
        return fit(self, features, init_centroids)

    node.setattr(FaissKMeans, 'fit', recording_fit)
    rng = np.random.default_rng(0)
    shard = FeatureShard(torch.arange(40), {
        m: torch.from_numpy(rng.standard_normal((40, 6)).astype(np.float32))
        for m in ('video', 'audio')})
    results = cluster_shard(shard, ['video', 'audio'],
                            dict(type='FaissKMeans', num_iters=3),
                            {'video': 3, 'audio': 3}, 40, LOCAL)
    assert seen == [(8, 8, torch.device('cpu'), None)] * 2
    assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
    assert sorted(results) == ['audio', 'video']
