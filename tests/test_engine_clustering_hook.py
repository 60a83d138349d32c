"""CrossModalClusteringHook: extraction, gathering, labels, heads, ranks."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from sklearn.metrics import normalized_mutual_info_score
from torch.utils.data import Dataset

from xdc_plugin.data import PseudoLabelDataset
from xdc_plugin.engine import CrossModalClusteringHook, extract_features
from xdc_plugin.registry import MODELS


class ToyAVDataset(Dataset):
    """Deterministic clips: class ``i % 3`` sets the mean of both streams."""

    def __init__(self, num=21, mode='train'):
        self.num, self.mode = num, mode

    def __len__(self):
        return self.num

    def with_mode(self, mode):
        return ToyAVDataset(self.num, mode)

    def get_labels(self):
        return np.arange(self.num) % 3

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        cls = index % 3
        video = (torch.rand(3, 4, 32, 32, generator=gen) * 60 +
                 cls * 80).to(torch.uint8)
        audio = torch.randn(1, 40, 50, generator=gen) + 3.0 * cls
        return dict(video=video, audio=audio, index=index, label=cls)


def build_model(variant='xdc', seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='XDCModel', variant=variant, num_clusters=3,
        video_encoder=dict(type='R2Plus1D18', width=0.125),
        audio_encoder=dict(type='AudioResNet18', width=0.125)))


def make_hook(**kwargs):
    cfg = dict(clusterers=dict(type='FaissKMeans', num_iters=10, seed=0),
               batch_size=4, save_assignments=False)
    cfg.update(kwargs)
    return CrossModalClusteringHook(**cfg)


def labels_of(results):
    return {s: r.labels for s, r in results.items()}


def test_features_are_placed_by_dataset_index():
    model = build_model()
    dataset = PseudoLabelDataset(ToyAVDataset(7, mode='extract'))
    features, seen = extract_features(model, dataset, batch_size=3)
    assert seen.all()
    assert set(features) == {'video', 'audio'}
    single = dataset[5]
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
    results = make_hook().cluster(model,
                                  PseudoLabelDataset(ToyAVDataset(12)))
    assert sorted(results) == sorted(sources)
    for result in results.values():
        assert result.labels.shape == (12, )
        assert result.labels.min() >= 0 and result.labels.max() < 3


def _fake_runner(model, dataset, tmp_path):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    logs = []
    return SimpleNamespace(
        model=model, epoch=0, iter=0, work_dir=str(tmp_path),
        train_dataloader=SimpleNamespace(
            dataset=PseudoLabelDataset(dataset), sampler=None),
        optim_wrapper=SimpleNamespace(optimizer=optimizer),
        logger=SimpleNamespace(info=logs.append, warning=logs.append),
        message_hub=SimpleNamespace(update_scalar=lambda *a: None),
        visualizer=SimpleNamespace(add_scalars=lambda *a, **k: None),
        cfg=SimpleNamespace(filename=None),
        logs=logs)


def test_round_sets_labels_resets_heads_and_clears_head_momentum(tmp_path):
    model = build_model('xdc')
    runner = _fake_runner(model, ToyAVDataset(12), tmp_path)
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
    runner = _fake_runner(model, ToyAVDataset(12), tmp_path)
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
    runner = _fake_runner(model, ToyAVDataset(9), tmp_path)
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
    dataset = PseudoLabelDataset(ToyAVDataset(21))
    features, _ = extract_features(model, dataset, batch_size=4)
    # Only rank 0 holds the whole dataset's features.
    holds = np.array([features is not None and
                      features['video'].shape[0] == 21])
    results = make_hook().cluster(model, dataset)
    np.savez(os.path.join(out_dir, f'rank{rank}.npz'), holds=holds,
             **labels_of(results))
    torch_dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_labels(tmp_path):
    model = build_model('xdc')
    single = labels_of(make_hook().cluster(
        model, PseudoLabelDataset(ToyAVDataset(21))))

    mp.start_processes(_distributed_worker,
                       args=(2, str(tmp_path / 'init'), str(tmp_path)),
                       nprocs=2, start_method='fork')
    for rank in range(2):
        ranked = np.load(tmp_path / f'rank{rank}.npz')
        assert bool(ranked['holds'][0]) == (rank == 0)
        for source, labels in single.items():
            np.testing.assert_array_equal(ranked[source], labels)


def test_balanced_sampler_gets_the_labels_of_the_chosen_source(tmp_path):
    from xdc_plugin.clustering import PseudoClassBalancedSampler
    model = build_model('xdc')
    runner = _fake_runner(model, ToyAVDataset(12), tmp_path)
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
