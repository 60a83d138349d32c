"""DistributedKMeans: equality with TorchKMeans on 2 and 4 gloo processes,
empty clusters, PCA, float16 storage, the label and value gathers, bad
shards."""
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import (DistributedKMeans, TorchKMeans,
                                   gather_labels)
from xdc_plugin.clustering.collectives import LOCAL, ProcessGroupCollectives
from xdc_plugin.clustering import distributed
from xdc_plugin.clustering.distributed import (gather_values, index_keys,
                                               smallest_keys_mask)
from xdc_plugin.clustering.kmeans import resplit_empty_clusters
from xdc_plugin.clustering.preprocess import l2_normalize
from xdc_plugin.registry import CLUSTERERS


def blobs(n=1200, d=16, k=8, spread=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    return (centres[rng.integers(0, k, n)] +
            rng.normal(size=(n, d))).astype(np.float32)


def duplicates():
    """3 distinct points, 4 copies each: 6 clusters leave 3 empty after the
    final assignment, and their donors hold identical points (the re-split
    falls back to splitting by rank of projection)."""
    distinct = np.random.default_rng(0).normal(size=(3, 4))
    return np.repeat(distinct, 4, axis=0).astype(np.float32)


# name -> (features, dataset indices of the rows, dataset size, kwargs)
def scenarios():
    common = dict(num_clusters=8, num_iters=8, seed=3)
    x = blobs()
    held = np.sort(np.random.default_rng(1).choice(1250, 1200,
                                                   replace=False))
    return {
        'blobs': (x, np.arange(1200), 1200, common),
        'pca': (x, np.arange(1200), 1200,
                dict(common, preprocess=dict(pca_dim=6, whiten=True))),
        'fp16': (x, np.arange(1200), 1200,
                 dict(common, feature_dtype='float16')),
        'subsample': (x, np.arange(1200), 1200,
                      dict(common, max_points_per_centroid=40, num_redo=2,
                           init='k-means++')),
        'missing': (x, held, 1250, common),
        'duplicates': (duplicates(), np.arange(12), 12,
                       dict(num_clusters=6, num_iters=5, seed=0,
                            preprocess=None)),
    }


def shard_rows(num_rows, rank, world_size):
    """Uneven, shuffled shards; with 4 ranks the last one holds nothing."""
    order = np.random.default_rng(7).permutation(num_rows)
    weights = [5, 3, 2, 0][:world_size] if world_size == 4 else \
        list(range(world_size, 0, -1))
    cuts = np.cumsum(weights)[:-1] * num_rows // sum(weights)
    return np.split(order, cuts)[rank]


def resplit_case():
    """200 points in 2 clusters, 3 empty clusters to fill."""
    x = torch.from_numpy(blobs(200, 5, 2, 6.0, seed=4))
    labels = torch.zeros(200, dtype=torch.int64)
    labels[150:] = 1
    centroids = torch.zeros(5, 5)
    centroids[0] = x[:150].mean(0)
    centroids[1] = x[150:].mean(0)
    return x, labels, centroids


def _worker(rank, world_size, init_file, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    # Several rounds of the label gather (97 pairs per rank per round).
    distributed.LABEL_GATHER_BYTES = 8 * world_size * 97
    out = {}
    for name, (x, indices, total, kwargs) in scenarios().items():
        rows = shard_rows(len(x), rank, world_size)
        km = DistributedKMeans(**kwargs)
        result = km.fit_sharded(x[rows], indices[rows], total)
        out[f'{name}_labels'] = gather_labels(result.labels, indices[rows],
                                              total).numpy()
        out[f'{name}_local_labels'] = result.labels
        out[f'{name}_local_indices'] = indices[rows]
        out[f'{name}_inertia'] = result.inertia
        out[f'{name}_centroids'] = result.centroids
        out[f'{name}_counts'] = result.counts
        out[f'{name}_num_resplit'] = result.num_resplit
        out[f'{name}_init'] = km.init_centroids_.numpy()

    x, labels, centroids = resplit_case()
    rows = torch.from_numpy(shard_rows(200, rank, world_size))
    local, centroids, num = resplit_empty_clusters(
        x[rows], labels[rows].clone(), centroids,
        torch.Generator().manual_seed(0), rows, ProcessGroupCollectives())
    out['resplit_labels'] = gather_labels(local, rows, 200).numpy()
    out['resplit_centroids'] = centroids.numpy()
    out['resplit_num'] = num

    held = rows[rows < 190]  # 190-199: held by no rank
    values = held.to(torch.float32) * 0.5
    values[held == 7] = -0.0
    out['gathered_values'] = gather_values(values, held, 200,
                                           math.nan).numpy()

    # Bad shards raise on every rank instead of leaving one waiting.
    bad = {'twice': (np.zeros((3, 4), np.float32), np.arange(3)),
           'range': (np.zeros((3, 4), np.float32),
                     np.arange(3) + (100 if rank == 0 else 0)),
           'nan': (np.full((3, 4), np.nan if rank == 1 else 0, np.float32),
                   np.arange(3) + 3 * rank)}
    for name, (feats, idx) in bad.items():
        try:
            DistributedKMeans(2).fit_sharded(feats, idx, 3 * world_size)
            out[f'error_{name}'] = ''
        except ValueError as error:
            out[f'error_{name}'] = str(error)
    np.savez(os.path.join(out_dir, f'rank{rank}.npz'), **out)
    torch_dist.destroy_process_group()


@pytest.fixture(scope='module', params=[2, 4], ids=['2 ranks', '4 ranks'])
def ranked(request, tmp_path_factory):
    """Every rank's outputs of ``_worker`` for a world size."""
    world_size = request.param
    out_dir = tmp_path_factory.mktemp(f'world{world_size}')
    mp.start_processes(_worker,
                       args=(world_size, str(out_dir / 'init'),
                             str(out_dir)),
                       nprocs=world_size, start_method='fork')
    return [dict(np.load(out_dir / f'rank{r}.npz'))
            for r in range(world_size)]


@pytest.fixture(scope='module')
def single():
    """The same scenarios in one process: ``DistributedKMeans`` with every
    row here, and ``TorchKMeans.fit`` from the same initial centroids."""
    out = {}
    for name, (x, indices, total, kwargs) in scenarios().items():
        km = DistributedKMeans(**kwargs)
        out[name] = km.fit_sharded(x, indices, total, collectives=LOCAL)
        out[name].init = km.init_centroids_
        reference = {k: v for k, v in kwargs.items()
                     if k not in ('feature_dtype', 'num_redo', 'init',
                                  'max_points_per_centroid')}
        if kwargs.get('feature_dtype') == 'float16':
            # float16 storage = TorchKMeans on the rounded, normalised rows.
            x = l2_normalize(torch.from_numpy(x)).half().float()
            reference['preprocess'] = None
        if 'num_redo' not in kwargs:
            out[name].torch = TorchKMeans(**reference).fit(
                x, init_centroids=km.init_centroids_)
    return out


def _assert_same(result, labels, inertia, centroids, rel=1e-6):
    np.testing.assert_array_equal(labels, result.labels)
    assert inertia == pytest.approx(result.inertia, rel=rel)
    np.testing.assert_allclose(centroids, result.centroids, rtol=1e-4,
                               atol=1e-5)


# Not 'duplicates': its rows tie between centroids at every step, and a tie
# is decided by the rounding of a matrix product, which depends on how many
# rows share it (seen on an AVX-512 machine); see the next test.
@pytest.mark.parametrize('name', ['blobs', 'pca', 'fp16'])
def test_ranks_match_torch_kmeans_from_the_same_start(ranked, single, name):
    reference = single[name]
    rel = 1e-5 if name == 'pca' else 1e-6
    for out in ranked:
        # The sample of initial centroids does not depend on the sharding.
        np.testing.assert_allclose(out[f'{name}_init'], reference.init,
                                   rtol=1e-5, atol=1e-6)
        _assert_same(reference.torch, out[f'{name}_labels'],
                     float(out[f'{name}_inertia']), out[f'{name}_centroids'],
                     rel)
        assert int(out[f'{name}_num_resplit']) == reference.num_resplit
        np.testing.assert_array_equal(out[f'{name}_counts'],
                                      reference.torch.counts)
    # ... and the single-process DistributedKMeans is that same fit.
    _assert_same(reference.torch, reference.labels, reference.inertia,
                 reference.centroids, rel)


def test_empty_clusters_are_resplit_the_same_way(ranked, single):
    reference = single['duplicates']
    assert reference.num_resplit == 3
    for out in ranked:
        # Duplicate points: the same start on any sharding, and every
        # cluster filled (how many needed a re-split depends on the ties).
        np.testing.assert_allclose(out['duplicates_init'], reference.init)
        assert int(out['duplicates_num_resplit']) >= 1
        counts = out['duplicates_counts']
        assert (counts > 0).all() and counts.sum() == 12
    x, labels, centroids = resplit_case()
    labels, centroids, num = resplit_empty_clusters(
        x, labels, centroids, torch.Generator().manual_seed(0))
    assert num == 3
    for out in ranked:
        assert int(out['resplit_num']) == 3
        np.testing.assert_array_equal(out['resplit_labels'], labels.numpy())
        np.testing.assert_allclose(out['resplit_centroids'],
                                   centroids.numpy(), rtol=1e-5, atol=1e-6)


def test_subsampled_and_redone_fit_does_not_depend_on_the_world_size(
        ranked, single):
    reference = single['subsample']
    for out in ranked:
        np.testing.assert_array_equal(out['subsample_labels'],
                                      reference.labels)
        assert float(out['subsample_inertia']) == pytest.approx(
            reference.inertia, rel=1e-6)


def test_labels_stay_local_and_gather_by_dataset_index(ranked, single):
    expected = np.full(1250, -1)
    held = scenarios()['missing'][1]
    expected[held] = single['missing'].labels
    for out in ranked:
        np.testing.assert_array_equal(out['missing_labels'], expected)
        assert out['missing_labels'].dtype == np.int32
        np.testing.assert_array_equal(
            out['missing_local_labels'],
            expected[out['missing_local_indices']])
    # Indices nobody holds get -1 and are not clustered.
    assert (ranked[0]['missing_labels'] == -1).sum() == 50
    assert sum(len(o['missing_local_labels']) for o in ranked) == 1200


def test_float_values_gather_bit_for_bit(ranked):
    expected = np.arange(200, dtype=np.float32) * 0.5
    expected[190:] = np.nan
    expected[7] = -0.0
    for out in ranked:
        assert out['gathered_values'].dtype == np.float32
        np.testing.assert_array_equal(out['gathered_values'], expected)
        assert np.signbit(out['gathered_values'][7])


def test_value_gather_checks_in_one_process():
    got = gather_values(torch.tensor([1.5, 2.5]), [3, 0], 5, math.nan, LOCAL)
    np.testing.assert_array_equal(got.numpy(),
                                  [2.5, np.nan, np.nan, 1.5, np.nan])
    with pytest.raises(ValueError, match='more than one rank'):
        gather_values(torch.tensor([1, 2], dtype=torch.int32), [3, 3], 5, -1,
                      LOCAL)
    with pytest.raises(TypeError, match='int32 or float32'):
        gather_values(torch.tensor([1.0], dtype=torch.float64), [0], 5, 0,
                      LOCAL)
    with pytest.raises(ValueError, match=r'in \[0, 5\)'):
        gather_values(torch.tensor([1.0]), [5], 5, 0, LOCAL)
    with pytest.raises(ValueError, match=r'in \[0, 2\*\*31\)'):
        gather_labels(torch.tensor([-1]), [0], 5, LOCAL)


def test_bad_shards_fail_on_every_rank(ranked):
    for out in ranked:
        assert 'held twice' in str(out['error_twice'])
        assert str(out['error_range']) and str(out['error_nan'])
    assert 'in [0,' in str(ranked[0]['error_range'])
    assert 'other rank' in str(ranked[1]['error_range'])
    assert 'NaN' in str(ranked[1]['error_nan'])
    assert 'other rank' in str(ranked[0]['error_nan'])


def test_keys_pick_the_same_rows_however_they_are_sharded():
    keys = index_keys(np.arange(1000), seed=5)
    assert len(set(keys.tolist())) == 1000  # a bijection: no ties
    chosen = smallest_keys_mask(keys, 37)
    assert int(chosen.sum()) == 37
    assert set(np.flatnonzero(chosen.numpy())) == set(
        torch.argsort(keys)[:37].tolist())
    assert not torch.equal(keys, index_keys(np.arange(1000), seed=6))


def test_single_process_fit_and_arguments():
    x = blobs(300, 8, 4, 5.0)
    km = CLUSTERERS.build(dict(type='DistributedKMeans', num_clusters=4,
                               seed=0))
    result = km.fit(x)
    assert result.labels.shape == (300, ) and result.counts.sum() == 300
    assert km.init_centroids_.shape == (4, 8)
    with pytest.raises(ValueError, match='feature_dtype'):
        DistributedKMeans(4, feature_dtype='int8')
    with pytest.raises(ValueError, match='N >= num_clusters'):
        DistributedKMeans(10).fit(x[:9])
    with pytest.raises(ValueError, match='num_redo=1'):
        DistributedKMeans(4, num_redo=2).fit(x, init_centroids=x[:4])
    with pytest.raises(ValueError, match='shape'):
        TorchKMeans(4).fit(x, init_centroids=x[:3])
    with pytest.raises(ValueError, match='indices'):
        DistributedKMeans(4).fit_sharded(x, np.arange(299), 300)


def test_faiss_and_torch_agree_from_the_same_start():
    from xdc_plugin.clustering import FaissKMeans
    x = blobs(800, 8, 5, 4.0)
    start = x[np.random.default_rng(0).choice(800, 5, replace=False)]
    kwargs = dict(num_clusters=5, num_iters=10, preprocess=None)
    a = FaissKMeans(**kwargs).fit(x, init_centroids=start)
    b = TorchKMeans(**kwargs).fit(x, init_centroids=start)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-5)
