"""FaissKMeans / TorchKMeans: determinism, quality, empty clusters, API,
the device they run on (faiss's GPU entry points mocked)."""
import types

import numpy as np
import pytest
import torch

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import (ClusterResult, DistributedKMeans,
                                   FaissKMeans, TorchKMeans, cluster_quality)
from xdc_plugin.clustering.kmeans import (all_finite, assign,
                                          faiss_kmeans,
                                          resplit_empty_clusters)
from xdc_plugin.registry import CLUSTERERS

CLASSES = [FaissKMeans, TorchKMeans]


def blobs(n, d, k, spread, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def brute_force_inertia(x, result):
    diff = x.astype(np.float64) - result.centroids[result.labels]
    return float((diff**2).sum())


@pytest.mark.parametrize('cls', CLASSES)
def test_result_fields_and_inertia(cls):
    x, _ = blobs(600, 8, 5, 4.0)
    result = cls(5, seed=1, preprocess=None).fit(x)
    assert isinstance(result, ClusterResult)
    assert result.labels.dtype == np.int64 and result.labels.shape == (600, )
    assert result.centroids.dtype == np.float32
    assert result.centroids.shape == (5, 8)
    assert result.counts.tolist() == np.bincount(result.labels,
                                                 minlength=5).tolist()
    assert result.num_resplit == 0
    assert result.inertia == pytest.approx(brute_force_inertia(x, result),
                                           rel=1e-5)
    # Without a re-split every point is labelled with its nearest centroid.
    d = ((x[:, None] - result.centroids[None])**2).sum(-1)
    assert np.array_equal(result.labels, d.argmin(1))
    assert result.distances.dtype == np.float32
    np.testing.assert_allclose(result.distances**2, d.min(1), rtol=1e-4,
                               atol=1e-4)
    assert result.preprocess is None


@pytest.mark.parametrize('cls', CLASSES + [DistributedKMeans])
def test_final_assignment_matches_explicit_distances(cls):
    # Overlapping blobs and 3 iterations: the last update still moves
    # points, so labels or distances taken before it (or another shortcut)
    # would differ from this independent float64 computation in the
    # preprocessed (L2-normalised) space.
    x, _ = blobs(400, 6, 5, 0.5, seed=5)
    km = cls(5, num_iters=3, seed=2)
    result = km.fit(x)
    assert result.num_resplit == 0
    z = km.preprocessor.transform(x).astype(np.float64)
    d = ((z[:, None] - result.centroids.astype(np.float64)[None])**2).sum(-1)
    np.testing.assert_array_equal(result.labels, d.argmin(1))
    assert result.inertia == pytest.approx(d.min(1).sum(), rel=1e-6)
    # The labels the last Lloyd iteration started from are those of a
    # 2-iteration fit: they differ, so the test sees stale labels.
    stale = cls(5, num_iters=2, seed=2).fit(x)
    assert not np.array_equal(stale.labels, result.labels)


def test_finite_check():
    x = torch.randn(50, 4)
    assert all_finite(x) and all_finite(x.half()) and all_finite(x[:0])
    for bad in (float('nan'), float('inf'), -float('inf')):
        y = x.clone()
        y[17, 2] = bad
        assert not all_finite(y)
        with pytest.raises(ValueError, match='NaN or Inf'):
            FaissKMeans(2, preprocess=None).fit(y)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('init', ['random', 'k-means++'])
def test_deterministic_for_a_seed(cls, init):
    x, _ = blobs(800, 16, 12, 1.0, seed=3)
    a = cls(12, seed=7, init=init).fit(x)
    b = cls(12, seed=7, init=init).fit(x)
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia
    c = cls(12, seed=8, init=init).fit(x)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize('cls', CLASSES)
def test_recovers_separated_blobs(cls):
    x, y = blobs(1500, 16, 6, 8.0)
    for seed in range(3):
        result = cls(6, seed=seed, num_redo=3, init='k-means++').fit(x)
        assert cluster_quality(result.labels, y)['nmi'] > 0.95
        assert result.counts.min() > 150


@pytest.mark.parametrize('cls', CLASSES)
def test_duplicate_points_are_resplit(cls):
    # 3 distinct points, 4 copies each, 6 clusters: the final assignment
    # can fill at most 3 clusters, so exactly 3 are re-split.
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(3, 4)).astype(np.float32)
    x = np.repeat(distinct, 4, axis=0)
    result = cls(6, seed=0, preprocess=None).fit(x)
    assert result.num_resplit == 3
    assert (result.counts > 0).all() and result.counts.sum() == 12
    # Only the training-time split offsets (1% of a centroid's scale) remain.
    total = float(((x - x.mean(0))**2).sum())
    assert result.inertia < 1e-3 * total
    # Every cluster holds copies of a single point.
    for k in range(6):
        members = x[result.labels == k]
        assert np.ptp(members, axis=0).max() == 0


def test_resplit_fills_every_empty_cluster():
    x, _ = blobs(200, 5, 2, 6.0, seed=4)
    xt = torch.from_numpy(x)
    labels = torch.zeros(200, dtype=torch.int64)
    labels[150:] = 1
    centroids = torch.zeros(5, 5)  # clusters 2, 3, 4 are empty
    centroids[0] = xt[:150].mean(0)
    centroids[1] = xt[150:].mean(0)
    sq_dists = (xt - centroids[labels]).pow(2).sum(1)
    g = torch.Generator().manual_seed(0)
    labels, centroids, num = resplit_empty_clusters(xt, labels, centroids, g,
                                                    sq_dists=sq_dists)
    assert num == 3
    # The squared distances follow the moved points and centroids.
    torch.testing.assert_close(sq_dists,
                               (xt - centroids[labels]).pow(2).sum(1))
    counts = torch.bincount(labels, minlength=5)
    assert (counts > 0).all() and int(counts.sum()) == 200
    # Every centroid touched by a split is the mean of its points.
    for k in range(5):
        torch.testing.assert_close(centroids[k], xt[labels == k].mean(0))
    # Nothing to do: same labels, no split.
    again, _, num = resplit_empty_clusters(xt, labels.clone(),
                                           centroids.clone(), g)
    assert num == 0 and torch.equal(again, labels)


def test_resplit_draws_large_donors():
    # Donors are drawn by size: cluster 0 (990 points) should give nearly
    # every split, cluster 1 (10 points) rarely.
    x = torch.from_numpy(np.random.default_rng(0).normal(
        size=(1000, 3)).astype(np.float32))
    from_small = 0
    for seed in range(40):
        labels = torch.zeros(1000, dtype=torch.int64)
        labels[:10] = 1
        centroids = torch.zeros(3, 3)
        g = torch.Generator().manual_seed(seed)
        labels, _, num = resplit_empty_clusters(x, labels, centroids, g)
        assert num == 1
        new_members = torch.nonzero(labels == 2).flatten()
        if int(new_members.max()) < 10:
            from_small += 1
        else:
            assert int(new_members.min()) >= 10  # one donor only
    assert from_small <= 4  # expected 0.4 of 40


@pytest.mark.parametrize('cls', CLASSES)
def test_too_few_points(cls):
    with pytest.raises(ValueError, match='N >= num_clusters'):
        cls(10).fit(np.zeros((9, 3), np.float32))


def test_faiss_and_torch_reach_similar_inertia():
    x, _ = blobs(3000, 32, 20, 1.0, seed=1)
    faiss_inertia, torch_inertia = [], []
    for seed in range(3):
        kwargs = dict(num_clusters=20, seed=seed, num_redo=2,
                      init='k-means++', preprocess=None)
        faiss_inertia.append(FaissKMeans(**kwargs).fit(x).inertia)
        torch_inertia.append(TorchKMeans(**kwargs).fit(x).inertia)
    ratio = np.mean(torch_inertia) / np.mean(faiss_inertia)
    assert abs(ratio - 1) < 0.03, (faiss_inertia, torch_inertia)


@pytest.mark.parametrize('cls', [TorchKMeans, DistributedKMeans])
def test_lloyd_stops_once_the_centroids_stop_moving(cls):
    x, _ = blobs(2000, 16, 6, 5.0)
    init = x[:6].copy()
    converged = cls(6, num_iters=50, preprocess=None)
    result = converged.fit(x, init_centroids=init)
    ran = converged.iterations_run_
    assert 2 < ran < 50
    # Its last iteration moved nothing: one fewer ends at the same place,
    # and the one before that did still move the centroids.
    same = cls(6, num_iters=ran - 1, preprocess=None).fit(
        x, init_centroids=init)
    assert np.array_equal(same.centroids, result.centroids)
    assert np.array_equal(same.labels, result.labels)
    earlier = cls(6, num_iters=ran - 2, preprocess=None).fit(
        x, init_centroids=init)
    assert not np.array_equal(earlier.centroids, result.centroids)


@pytest.mark.parametrize('cls', CLASSES)
def test_iterations_run_counts_every_run(cls):
    x, _ = blobs(2000, 16, 6, 5.0)
    ran = []
    for num_redo in (1, 3):
        km = cls(6, num_iters=50, num_redo=num_redo, preprocess=None)
        km.fit(x)
        assert num_redo < km.iterations_run_ < 50 * num_redo  # converged
        ran.append(km.iterations_run_)
    assert ran[1] > ran[0]


def test_preprocessing_space_and_tensor_input():
    x, y = blobs(900, 24, 4, 6.0)
    km = TorchKMeans(4, seed=0, num_redo=2,
                     preprocess=dict(pca_dim=8, whiten=True))
    from_numpy = km.fit(x)
    assert from_numpy.centroids.shape == (4, 8)
    assert km.preprocessor.out_dim == 8
    from_tensor = km.fit(torch.from_numpy(x).requires_grad_())
    assert np.array_equal(from_numpy.labels, from_tensor.labels)
    assert cluster_quality(from_numpy.labels, y)['nmi'] > 0.95
    # Inertia is measured in the preprocessed (here L2-normalised) space.
    z = km.preprocessor.transform(x)
    assert from_numpy.inertia == pytest.approx(
        brute_force_inertia(z, from_numpy), rel=1e-5)


@pytest.mark.parametrize('cls', CLASSES)
def test_subsampled_training_still_labels_everything(cls):
    x, y = blobs(2000, 8, 4, 8.0)
    result = cls(4, seed=0, max_points_per_centroid=50, num_redo=2,
                 init='k-means++').fit(x)
    assert result.labels.shape == (2000, ) and result.counts.sum() == 2000
    assert cluster_quality(result.labels, y)['nmi'] > 0.95


def test_assign_blocks_match_brute_force(monkeypatch):
    from xdc_plugin.clustering.kmeans import ops
    monkeypatch.setattr(ops, 'BLOCK_ELEMENTS', 70)  # 7-row blocks
    x = torch.randn(53, 6, generator=torch.Generator().manual_seed(0))
    c = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    labels, dists = assign(x, c)
    full = torch.cdist(x, c)**2
    assert torch.equal(labels, full.argmin(1))
    torch.testing.assert_close(dists, full.min(1).values, rtol=1e-4,
                               atol=1e-4)


def test_registry_and_argument_checks():
    km = CLUSTERERS.build(dict(type='TorchKMeans', num_clusters=3))
    assert isinstance(km, TorchKMeans)
    assert isinstance(CLUSTERERS.build(dict(type='xdc.FaissKMeans',
                                            num_clusters=3)), FaissKMeans)
    with pytest.raises(ValueError, match='use_gpu'):
        TorchKMeans(3, use_gpu='yes')
    with pytest.raises(ValueError, match='init'):
        FaissKMeans(3, init='kmeans||')
    with pytest.raises(ValueError, match='num_clusters'):
        TorchKMeans(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU-only host')
def test_use_gpu_true_without_gpu_fails_clearly():
    x = np.zeros((10, 2), np.float32)
    with pytest.raises(RuntimeError, match='CUDA'):
        TorchKMeans(2, use_gpu=True).fit(x)
    import faiss
    if faiss.get_num_gpus() == 0:
        with pytest.raises(RuntimeError, match='GPU'):
            FaissKMeans(2, use_gpu=True).fit(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_torch_kmeans_on_cuda_matches_cpu():
    x, y = blobs(4000, 32, 10, 6.0)
    cpu = TorchKMeans(10, seed=0, init='k-means++').fit(x)
    gpu = TorchKMeans(10, seed=0, init='k-means++').fit(
        torch.from_numpy(x).cuda())
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)
    assert cluster_quality(gpu.labels, cpu.labels)['nmi'] > 0.99


class _FakeGpuFaiss:
    """faiss's GPU entry points on the CPU build: the 'GPU index' is the
    CPU one, and the device it was asked for is recorded."""

    def __init__(self, monkeypatch, num_gpus=2):
        import faiss
        self.devices = []
        monkeypatch.setattr(faiss, 'get_num_gpus', lambda: num_gpus)
        monkeypatch.setattr(faiss, 'StandardGpuResources', object,
                            raising=False)
        monkeypatch.setattr(faiss, 'index_cpu_to_gpu', self.to_gpu,
                            raising=False)

    def to_gpu(self, resources, device, index):
        self.devices.append(device)
        return index


def test_faiss_gpu_uses_the_ranks_own_device_only(monkeypatch):
    fake = _FakeGpuFaiss(monkeypatch)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 1)
    x = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    result = FaissKMeans(3, use_gpu=True, num_iters=5).fit(x)
    assert fake.devices == [1]
    np.testing.assert_array_equal(
        result.labels, FaissKMeans(3, use_gpu=False, num_iters=5).fit(
            x).labels)
    assert fake.devices == [1]  # use_gpu=False: no GPU index


def test_faiss_auto_follows_the_features_device(monkeypatch):
    fake = _FakeGpuFaiss(monkeypatch)
    clusterer = FaissKMeans(3)
    assert clusterer._faiss_gpu_device(torch.zeros(4, 2)) is None
    on_gpu = types.SimpleNamespace(is_cuda=True,
                                   device=torch.device('cuda', 3))
    assert clusterer._faiss_gpu_device(on_gpu) == 3
    assert FaissKMeans(3, use_gpu=True)._faiss_gpu_device(on_gpu) == 3
    assert FaissKMeans(3, use_gpu=False)._faiss_gpu_device(on_gpu) is None
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    clusterer.fit(x)  # CPU features: CPU faiss
    assert fake.devices == []


def test_faiss_auto_on_gpu_features_without_faiss_gpu_warns(monkeypatch):
    _FakeGpuFaiss(monkeypatch, num_gpus=0)
    on_gpu = types.SimpleNamespace(is_cuda=True,
                                   device=torch.device('cuda', 0))
    logged = []
    monkeypatch.setattr(faiss_kmeans, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    assert FaissKMeans(3)._faiss_gpu_device(on_gpu) is None
    assert 'CPU build' in logged[0] and 'pip install -e ".[gpu]"' in logged[0]
    with pytest.raises(RuntimeError, match='faiss sees no GPU'):
        FaissKMeans(3, use_gpu=True)._faiss_gpu_device(on_gpu)
