"""Round clustering on shards: the sources of each variant, the plain fit in
one process, and the sharded fit on two gloo processes giving the
single-process labels without any rank holding every row."""
import logging
import os

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering.collectives import (LOCAL,
                                               ProcessGroupCollectives)
from xdc_plugin.engine.round import round_clustering
from xdc_plugin.engine.round.feature_shard import FeatureShard
from xdc_plugin.engine.round.round_clustering import (build_clusterer,
                                                      cluster_shard)
from xdc_plugin.registry import CLUSTERERS

FAISS = dict(type='FaissKMeans', num_iters=10, seed=0)
SHARDED = dict(type='DistributedKMeans', num_iters=10, seed=0)
K = dict(video=4, audio=4, joint=4)


def blob_shard(n=90, held=None):
    """Two modalities of 4 blobs each (index i in blob i % 4); the rows of
    the dataset indices ``held`` (default: all, in order)."""
    rng = np.random.default_rng(0)
    cls = np.arange(n) % 4
    feats = {m: torch.from_numpy((rng.normal(size=(4, 8))[cls] * 4 +
                                  rng.normal(size=(n, 8))).astype(
                                      np.float32)) for m in ('video', 'audio')}
    shard = FeatureShard(torch.arange(n), feats)
    return shard if held is None else shard.select(torch.from_numpy(held))


@pytest.mark.parametrize('sources', [['video', 'audio'], ['joint']])
def test_one_process_fits_the_rows_in_index_order(sources):
    shard = blob_shard()
    shuffled = shard.select(torch.from_numpy(
        np.random.default_rng(1).permutation(len(shard))))
    results = cluster_shard(shuffled, sources, FAISS, K, 100, LOCAL)
    assert sorted(results) == sorted(sources)
    for source, result in results.items():
        matrix = (torch.cat([torch.nn.functional.normalize(
            shard.features[m], dim=1) for m in ('video', 'audio')], 1)
            if source == 'joint' else shard.features[source])
        plain = CLUSTERERS.build(dict(FAISS, num_clusters=4)).fit(
            matrix.numpy())
        np.testing.assert_array_equal(result.labels[:90], plain.labels)
        np.testing.assert_allclose(result.distances[:90], plain.distances,
                                   rtol=1e-6)
        # Indices 90-99 were held by no rank: no label, NaN distance.
        assert result.labels.dtype == np.int32  # 4 bytes per clip
        assert (result.labels[90:] == -1).all()
        assert np.isnan(result.distances[90:]).all()


def test_clusterer_config_per_source_and_the_sharded_fallback(monkeypatch):
    per_source = dict(video=dict(FAISS, num_iters=3), audio=SHARDED)
    assert build_clusterer(per_source, 'video', 5, 1).num_iters == 3
    assert build_clusterer(per_source, 'video', 5, 1).num_clusters == 5
    with pytest.raises(KeyError, match="source 'joint'"):
        build_clusterer(per_source, 'joint', 5, 1)
    logged = []
    monkeypatch.setattr(round_clustering, 'print_log',
                        lambda msg, **kwargs: logged.append((msg, kwargs)))
    several = build_clusterer(FAISS, 'audio', 5, 2)
    (message, kwargs), = logged
    assert 'FaissKMeans' in message and 'DistributedKMeans' in message
    assert '2 ranks' in message and kwargs['level'] == logging.WARNING
    assert type(several).__name__ == 'DistributedKMeans'
    assert several.num_iters == 10 and several.seed == 0
    assert type(build_clusterer(FAISS, 'audio', 5, 1)).__name__ == \
        'FaissKMeans'


def _cluster_worker(rank, world_size, init_file, out_dir, cfg):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    # A forked rank must stay on one OpenMP thread (GNU OpenMP is not
    # fork-safe once the parent has used its threads): the round's thread
    # rule gives each rank cores / LOCAL_WORLD_SIZE, here 1.
    torch.set_num_threads(1)
    os.environ['LOCAL_WORLD_SIZE'] = str(len(os.sched_getaffinity(0)))
    order = np.random.default_rng(3).permutation(90)
    shard = blob_shard(held=order[rank::world_size])
    results = cluster_shard(shard, ['video', 'audio'], cfg, K, 100,
                            ProcessGroupCollectives())
    np.savez(os.path.join(out_dir, f'rank{rank}.npz'), rows=len(shard),
             **{f'{s}_{k}': getattr(r, k) for s, r in results.items()
                for k in ('labels', 'distances', 'centroids')})
    torch_dist.destroy_process_group()


@pytest.mark.parametrize('cfg', [SHARDED, FAISS], ids=['sharded', 'faiss'])
def test_two_processes_give_the_single_process_labels(tmp_path, cfg):
    # Every rank keeps its rows; FaissKMeans runs as DistributedKMeans.
    single = cluster_shard(blob_shard(), ['video', 'audio'], SHARDED, K, 100,
                           LOCAL)
    mp.start_processes(_cluster_worker,
                       args=(2, str(tmp_path / 'init'), str(tmp_path), cfg),
                       nprocs=2, start_method='fork')
    for rank in range(2):
        ranked = np.load(tmp_path / f'rank{rank}.npz')
        assert int(ranked['rows']) == 45  # its half, never the whole set
        for source, result in single.items():
            np.testing.assert_array_equal(ranked[f'{source}_labels'],
                                          result.labels)
            np.testing.assert_allclose(ranked[f'{source}_distances'],
                                       result.distances, atol=1e-5)
            np.testing.assert_allclose(ranked[f'{source}_centroids'],
                                       result.centroids, rtol=1e-5,
                                       atol=1e-6)


def test_more_clusters_than_clips_is_found_before_extraction():
    from xdc_plugin.engine.round.round_clustering import (TooFewClipsError,
                                                          check_cluster_counts)

    class Clips(list):  # 5 clips kept of 6 listed
        skipped = [('gone.mp4', 'missing')]

    clips = Clips(range(5))
    one_cfg = dict(type='FaissKMeans')
    check_cluster_counts(one_cfg, dict(video=5, audio=4), clips)
    with pytest.raises(TooFewClipsError) as info:
        check_cluster_counts(one_cfg, dict(video=5, audio=6), clips)
    assert str(info.value) == (
        "k=6 clusters for 'audio' is more than the 5 clips of the dataset "
        '(1 more files were skipped at its build): lower model.num_clusters '
        'or give more data')
    # A source's own clusterer config sets its k.
    per_source = dict(video=dict(type='FaissKMeans', num_clusters=7),
                      audio=dict(type='FaissKMeans'))
    with pytest.raises(TooFewClipsError, match="k=7 clusters for 'video'"):
        check_cluster_counts(per_source, dict(video=2, audio=2), clips)
