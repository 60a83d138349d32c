"""CrossModalClusteringHook: schedule, labels, heads, sampler, checkpoint,
probe (the toy dataset and fake runner are shared with the engine tests of
the modules the hook orchestrates)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import BaseDataset, DefaultSampler, default_collate
from sklearn.metrics import normalized_mutual_info_score
from torch.utils.data import DataLoader

from xdc_plugin.clustering.round_file import load_round, round_path
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
        return [dict(path=f'clip{i}.mp4', label=i % 3)
                for i in range(self.num)]

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


def _fake_runner(model, num, tmp_path):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    logs, scalars = [], {}
    train_dataset = dict(type='xdc.ToyAVDataset', num=num)
    return SimpleNamespace(
        model=model, epoch=0, iter=0, max_epochs=4, work_dir=str(tmp_path),
        seed=0, hooks=[],
        cfg=Config(dict(train_dataloader=dict(dataset=train_dataset))),
        train_dataloader=SimpleNamespace(
            dataset=DATASETS.build(train_dataset), sampler=None),
        optim_wrapper=SimpleNamespace(optimizer=optimizer),
        logger=SimpleNamespace(info=logs.append, warning=logs.append),
        message_hub=SimpleNamespace(update_scalar=scalars.__setitem__),
        visualizer=SimpleNamespace(add_scalars=lambda *a, **k: None),
        logs=logs, scalars=scalars)


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
    saved = load_round(round_path(str(tmp_path), 0)).sources
    np.testing.assert_array_equal(saved['audio'].labels,
                                  model.pseudo_labels[1].numpy())
    # The agreement of the two modalities' clusters is logged too.
    agreement = normalized_mutual_info_score(saved['video'].labels,
                                             saved['audio'].labels)
    assert hook.history[0]['xmodal_nmi'] == pytest.approx(agreement)
    assert f'agreement NMI={agreement:.3f}' in runner.logs[-1]


def test_labels_are_kept_between_rounds_and_refreshed_on_schedule(
        tmp_path, monkeypatch):
    read = []
    get_labels = ToyAVDataset.get_labels
    monkeypatch.setattr(ToyAVDataset, 'get_labels',
                        lambda self: read.append(1) or get_labels(self))
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
    # The dataset's labels (a pass over every clip): read once per run.
    assert len(read) == 1


def test_checkpoint_carries_the_history_only(tmp_path):
    model = build_model('cdc')
    runner = _fake_runner(model, 9, tmp_path)
    hook = make_hook()
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint == {'xdc_clustering': {'history': hook.history}}
    restored = make_hook()
    restored.after_load_checkpoint(runner, checkpoint)
    assert restored.history == hook.history
    assert [r['source'] for r in restored.history] == ['joint']
    assert restored.history[0]['features'] == 'extracted'


def test_balanced_sampler_gets_the_labels_of_the_chosen_source(tmp_path):
    from xdc_plugin.clustering import PseudoClassBalancedSampler
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    sampler = PseudoClassBalancedSampler(runner.train_dataloader.dataset,
                                         balance_by='audio', seed=0)
    runner.train_dataloader.sampler = sampler
    hook = make_hook()
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    audio_labels = model.pseudo_labels[1].numpy()
    np.testing.assert_array_equal(sampler.pseudo_labels, audio_labels)
    drawn = audio_labels[sampler.global_indices()]
    # Every audio cluster (none is empty) is drawn equally often.
    np.testing.assert_array_equal(np.bincount(drawn, minlength=3), [4, 4, 4])
    runner.train_dataloader.sampler = PseudoClassBalancedSampler(
        runner.train_dataloader.dataset, balance_by='joint')
    with pytest.raises(ValueError, match='sampler.balance_by=.joint.'):
        make_hook().before_train(runner)


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
    # Without a pipeline: the train pipeline, centred and unaugmented.
    runner.cfg.train_dataloader.dataset.pipeline = [
        dict(type='xdc.SampleClip', num_frames=4),
        dict(type='xdc.VideoFlip')]
    hook = make_hook(extract_dataloader=dict(batch_size=4, num_workers=0))
    hook.before_train(runner)
    (sample, ) = hook._extract_loader.dataset.pipeline.transforms
    assert (type(sample).__name__, sample.mode, sample.num_frames) == (
        'SampleClip', 'center', 4)


def test_probe_scalars_are_logged_beside_the_cluster_quality(tmp_path):
    model = build_model('xdc')
    runner = _fake_runner(model, 30, tmp_path)
    hook = make_hook(probe=dict(folds=3))
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    for modality in ('video', 'audio'):
        for probe in ('linear_top1', 'knn_top1'):
            value = runner.scalars[f'xdc/{modality}_{probe}']
            assert 0 <= value <= 1
            assert f'{probe}={value:.3f}' in runner.logs[-1]
    # The toy's audio mean is set by the class: even random encoders keep
    # it far above chance (1/3).
    assert runner.scalars['xdc/audio_knn_top1'] > 0.6
    assert 'video_linear_top1' in hook.history[0]
    assert 'audio_linear_top1' not in hook.history[0]  # the video record
    assert runner.scalars['xdc/video_nmi'] == hook.history[0]['nmi']
    # Off by default; a wrong type is refused at build.
    runner.scalars.clear()
    plain = make_hook()
    plain.before_train(runner)
    plain.run_round(runner, apply=False)
    assert not any('top1' in key for key in runner.scalars)
    with pytest.raises(TypeError, match='probe must be'):
        make_hook(probe='yes')


def test_a_round_extracts_under_trainings_autocast(tmp_path, monkeypatch):
    """The run's optimizer wrapper trains in bf16 (--amp): the round's
    extraction autocasts to bf16 too, and stores the hook's feature_dtype
    on the model's device."""
    from xdc_plugin.engine.hooks import clustering_hook
    from xdc_plugin.engine.runner.precision import Bf16OptimWrapper
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    runner.optim_wrapper = Bf16OptimWrapper(runner.optim_wrapper.optimizer)
    calls = []
    extract = clustering_hook.extract_shard

    def recording(model, loader, amp_dtype=None,
                  feature_dtype=torch.float32):
        calls.append((amp_dtype, feature_dtype))
        return extract(model, loader, amp_dtype, feature_dtype)

    monkeypatch.setattr(clustering_hook, 'extract_shard', recording)
    hook = make_hook(feature_dtype='float16')
    hook.before_train(runner)
    hook.run_round(runner, apply=True)
    assert calls == [(torch.bfloat16, torch.float16)]
    assert {r['device'] for r in hook.history} == {'cpu'}
    assert (model.pseudo_labels >= 0).all()
    with pytest.raises(ValueError, match='feature_dtype'):
        make_hook(feature_dtype='bfloat16')
