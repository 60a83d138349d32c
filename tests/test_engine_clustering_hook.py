"""CrossModalClusteringHook: extraction, gathering, labels, heads, ranks."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.dataset import BaseDataset, DefaultSampler, default_collate
from sklearn.metrics import normalized_mutual_info_score
from torch.utils.data import DataLoader

from xdc_plugin.engine import CrossModalClusteringHook
from xdc_plugin.registry import DATASETS, MODELS


@DATASETS.register_module(force=True)
class ToyAVDataset(BaseDataset):
    """Deterministic clips: class ``i % 3`` sets the mean of both streams
    (the pipeline is ignored)."""

    def __init__(self, num=21, pipeline=()):
        self.num = num
        super().__init__(pipeline=list(pipeline))

    def load_data_list(self):
        return [dict(path=f'clip{i}.mp4') for i in range(self.num)]

    def get_labels(self):
        return np.arange(self.num) % 3

    def prepare_data(self, index):
        gen = torch.Generator().manual_seed(index)
        cls = index % 3
        video = (torch.rand(3, 4, 32, 32, generator=gen) * 60 +
                 cls * 80).to(torch.uint8)
        audio = torch.randn(1, 40, 50, generator=gen) + 3.0 * cls
        return dict(video=video, audio=audio, index=index, label=cls)


TOY_EXTRACT = dict(batch_size=4, dataset=dict(pipeline=[]))


def toy_loader(num, batch_size=4):
    """The extraction loader the hook builds, for a toy dataset."""
    dataset = ToyAVDataset(num)
    return DataLoader(
        dataset, batch_size=batch_size, collate_fn=default_collate,
        sampler=DefaultSampler(dataset, shuffle=False, round_up=False))


def build_model(variant='xdc', seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='XDCModel', variant=variant, num_clusters=3,
        video_encoder=dict(type='R2Plus1D18', width=0.125),
        audio_encoder=dict(type='AudioResNet18', width=0.125)))


def make_hook(**kwargs):
    cfg = dict(clusterers=dict(type='FaissKMeans', num_iters=10, seed=0),
               extract_dataloader=TOY_EXTRACT, save_assignments=False)
    cfg.update(kwargs)
    return CrossModalClusteringHook(**cfg)


def labels_of(results):
    return {s: r.labels for s, r in results.items()}


def test_features_are_placed_by_dataset_index():
    model = build_model()
    loader = toy_loader(7, batch_size=3)
    features, seen = extract_features(model, loader)
    assert seen.all()
    assert set(features) == {'video', 'audio'}
    single = loader.dataset[5]
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(video=single['video'][None], audio=single['audio'][None],
                 index=torch.tensor([5]), label=torch.tensor([2])), False)
        expected = model.extract_feat(data['video'], data['audio'])
    torch.testing.assert_close(features['audio'][5], expected['audio'][0],
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features['video'][5], expected['video'][0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('variant,sources', [('xdc', ['video', 'audio']),
                                             ('sdc', ['video', 'audio']),
                                             ('mdc', ['video', 'audio']),
                                             ('cdc', ['joint'])])
def test_cluster_produces_the_sources_of_each_variant(variant, sources):
    model = build_model(variant)
    results = make_hook().cluster(model, toy_loader(12))
    assert sorted(results) == sorted(sources)
    for result in results.values():
        assert result.labels.shape == (12, )
        assert result.labels.min() >= 0 and result.labels.max() < 3


def _fake_runner(model, num, tmp_path):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    logs = []
    train_dataset = dict(type='xdc.ToyAVDataset', num=num)
    return SimpleNamespace(
        model=model, epoch=0, iter=0, work_dir=str(tmp_path), seed=0,
        cfg=Config(dict(train_dataloader=dict(dataset=train_dataset))),
        train_dataloader=SimpleNamespace(
            dataset=DATASETS.build(train_dataset), sampler=None),
        optim_wrapper=SimpleNamespace(optimizer=optimizer),
        logger=SimpleNamespace(info=logs.append, warning=logs.append),
        message_hub=SimpleNamespace(update_scalar=lambda *a: None),
        visualizer=SimpleNamespace(add_scalars=lambda *a, **k: None),
        logs=logs)


def test_round_sets_labels_resets_heads_and_clears_head_momentum(tmp_path):
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    hook = make_hook(save_assignments=True)
    hook.before_train(runner)
    # Give every parameter momentum state, as after some training.
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    runner.optim_wrapper.optimizer.step()
    head_before = [p.detach().clone() for p in model.head_parameters()]

    hook.before_train_epoch(runner)

    assert model.pseudo_labels.shape == (2, 12)
    assert (model.pseudo_labels >= 0).all()
    state = runner.optim_wrapper.optimizer.state
    heads = list(model.head_parameters())
    assert all(p not in state for p in heads)
    assert any(p in state for p in model.video_encoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(head_before, heads))
    # Cluster quality is logged against the dataset's labels.
    assert 'NMI=' in runner.logs[-1] and 'round 0' in runner.logs[-1]
    saved = np.load(tmp_path / 'clusters' / 'round_0.npz')
    np.testing.assert_array_equal(saved['audio_labels'],
                                  model.pseudo_labels[1].numpy())
    # The agreement of the two modalities' clusters is logged too.
    agreement = normalized_mutual_info_score(saved['video_labels'],
                                             saved['audio_labels'])
    assert hook.history[0]['xmodal_nmi'] == pytest.approx(agreement)
    assert f'agreement NMI={agreement:.3f}' in runner.logs[-1]


def test_labels_are_kept_between_rounds_and_refreshed_on_schedule(tmp_path):
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    hook = make_hook(interval=2)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    rounds = len(hook.history)
    runner.epoch = 1
    hook.before_train_epoch(runner)
    assert len(hook.history) == rounds  # no clustering at epoch 1
    runner.epoch = 2
    hook.before_train_epoch(runner)
    assert len(hook.history) == 2 * rounds
    assert {r['round'] for r in hook.history} == {0, 1}


def test_checkpoint_carries_history_and_centroids(tmp_path):
    model = build_model('cdc')
    runner = _fake_runner(model, 9, tmp_path)
    hook = make_hook()
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    restored = make_hook()
    restored.after_load_checkpoint(runner, checkpoint)
    assert restored.history == hook.history
    assert set(restored.centroids) == {'joint'}
    assert restored.centroids['joint'].shape[0] == 3


def _distributed_worker(rank, world_size, init_file, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = build_model('xdc')
    loader = toy_loader(21)
    features, _ = extract_features(model, loader)
    # Only rank 0 holds the whole dataset's features.
    holds = np.array([features is not None and
                      features['video'].shape[0] == 21])
    results = make_hook().cluster(model, loader)
    np.savez(os.path.join(out_dir, f'rank{rank}.npz'), holds=holds,
             **labels_of(results))
    torch_dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_labels(tmp_path):
    model = build_model('xdc')
    single = labels_of(make_hook().cluster(model, toy_loader(21)))

    mp.start_processes(_distributed_worker,
                       args=(2, str(tmp_path / 'init'), str(tmp_path)),
                       nprocs=2, start_method='fork')
    for rank in range(2):
        ranked = np.load(tmp_path / f'rank{rank}.npz')
        assert bool(ranked['holds'][0]) == (rank == 0)
        for source, labels in single.items():
            np.testing.assert_array_equal(ranked[source], labels)


def _extract_with_own_statistics_on_rank1(rank, world_size, init_file,
                                          out_dir):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = build_model('xdc')
    if rank == 1:  # as after training: BN running statistics of its own
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.mul_(2).add_(0.5)
    features, _ = extract_features(model, toy_loader(9))
    if rank == 0:
        np.savez(os.path.join(out_dir, 'features.npz'),
                 **{m: f.numpy() for m, f in features.items()})
    torch_dist.destroy_process_group()


def test_every_rank_extracts_with_rank0_statistics(tmp_path):
    # Only rank 0's are checkpointed: a resumed run must extract the same.
    single, _ = extract_features(build_model('xdc'), toy_loader(9))
    mp.start_processes(_extract_with_own_statistics_on_rank1,
                       args=(2, str(tmp_path / 'init'), str(tmp_path)),
                       nprocs=2, start_method='fork')
    gathered = np.load(tmp_path / 'features.npz')
    for modality, features in single.items():
        np.testing.assert_allclose(gathered[modality], features.numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_balanced_sampler_gets_the_labels_of_the_chosen_source(tmp_path):
    from xdc_plugin.clustering import PseudoClassBalancedSampler
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    sampler = PseudoClassBalancedSampler(runner.train_dataloader.dataset,
                                         seed=0)
    runner.train_dataloader.sampler = sampler
    hook = make_hook(balance_by='audio')
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    audio_labels = model.pseudo_labels[1].numpy()
    drawn = audio_labels[sampler.global_indices()]
    # Every audio cluster (none is empty) is drawn equally often.
    np.testing.assert_array_equal(np.bincount(drawn, minlength=3), [4, 4, 4])
    with pytest.raises(ValueError, match='balance_by'):
        make_hook(balance_by='joint').before_train(runner)


def test_extraction_loader_is_the_train_dataset_with_its_pipeline(tmp_path):
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    hook = make_hook(extract_dataloader=dict(
        batch_size=5, num_workers=0, dataset=dict(pipeline=[])))
    hook.before_train(runner)
    loader = hook._extract_loader
    assert loader.batch_size == 5 and len(loader.dataset) == 12
    assert not loader.sampler.shuffle and not loader.sampler.round_up
    # A different file list would mislabel every clip: refused.
    with pytest.raises(ValueError, match=r'same order \(11 vs 12 files; '
                       r'first difference at index 11\)'):
        make_hook(extract_dataloader=dict(
            dataset=dict(num=11, pipeline=[]))).before_train(runner)
    with pytest.raises(ValueError, match='dataset.pipeline is required'):
        make_hook(extract_dataloader=dict(batch_size=4))
