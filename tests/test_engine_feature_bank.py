"""Feature bank: the training pass fills the rows of the indices it trained
on, and a round on the bank gives the extraction's labels when the features
are the same (an eval-mode model whose weights do not move)."""
import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate

from test_engine_clustering_hook import (_fake_runner, build_model,
                                         make_hook, toy_loader)
from xdc_plugin.engine.hooks.mid_epoch_resume_hook import BATCHES_DONE
from xdc_plugin.engine.round.feature_bank import FeatureBank


def train_steps(model, batches, hook=None, runner=None, bank=None):
    """What the train loop does around each step, with the model in eval
    mode and no update: the bank sees exactly the extraction's features."""
    model.eval()
    for i, batch in enumerate(batches):
        if hook is not None:
            hook.before_train_iter(runner, i, batch)
        else:
            bank.expect(batch['index'])
        data = model.data_preprocessor(batch, True)
        with torch.no_grad():
            model.extract_feat(data['video'], data['audio'])
        if hook is not None:
            hook.after_train_iter(runner, i, batch)
        else:
            bank.commit()


def batches_of(dataset, order, size=4):
    return [default_collate([dataset[i] for i in order[s:s + size]])
            for s in range(0, len(order), size)]


def test_bank_keeps_the_last_row_of_each_index_it_trained_on():
    model = build_model()
    dataset = toy_loader(9).dataset
    bank = FeatureBank(model)
    bank.open(epoch=3)
    train_steps(model, batches_of(dataset, [4, 1, 7, 8]), bank=bank)
    with torch.no_grad():  # the weights move before index 4 comes again
        for param in model.parameters():
            param.mul_(1.5)
    train_steps(model, batches_of(dataset, [4]), bank=bank)
    bank.close()
    train_steps(model, batches_of(dataset, [0]), bank=bank)  # not captured
    shard = bank.shard()
    assert bank.epoch == 3
    assert sorted(shard.indices.tolist()) == [1, 4, 7, 8]
    with torch.no_grad():
        batch = model.data_preprocessor(default_collate([dataset[4]]), False)
        expected = model.extract_feat(batch['video'], batch['audio'])
    row = shard.indices.tolist().index(4)
    for modality in ('video', 'audio'):
        torch.testing.assert_close(shard.features[modality][row],
                                   expected[modality][0], rtol=1e-4,
                                   atol=1e-5)
    bank.discard()
    assert bank.epoch is None and not bank._handles


def test_an_encoder_run_twice_in_a_step_is_refused():
    model = build_model()
    bank = FeatureBank(model)
    bank.open(epoch=0)
    batch = batches_of(toy_loader(4).dataset, [0, 1])[0]
    bank.expect(batch['index'])
    data = model.data_preprocessor(batch, True)
    model.extract_feat(data['video'], None)
    model.extract_feat(data['video'], data['audio'])
    with pytest.raises(RuntimeError, match='video encoder ran 2 time'):
        bank.commit()


def bank_round(tmp_path, trained_order, resumed=False):
    """Round 0 (extraction), one bank epoch on ``trained_order``, round 1;
    returns (the hook, round 1's labels, extraction's labels)."""
    model = build_model('xdc')
    runner = _fake_runner(model, 12, tmp_path)
    hook = make_hook(feature_bank=True, clusterers=dict(
        type='DistributedKMeans', num_iters=10, seed=0))
    hook.before_train(runner)
    if resumed:
        hook.after_load_checkpoint(runner, dict(meta={BATCHES_DONE: 2}))
    hook.before_train_epoch(runner)
    train_steps(model, batches_of(runner.train_dataloader.dataset,
                                  trained_order), hook, runner)
    hook.after_train_epoch(runner)
    runner.epoch = 1
    hook.before_train_epoch(runner)
    # The same encoders, clustered from extraction.
    twin = copy.deepcopy(model)
    twin_runner = _fake_runner(twin, 12, tmp_path)
    extracting = make_hook(clusterers=hook.clusterer_cfgs)
    extracting.before_train(twin_runner)
    extracting.before_train_epoch(twin_runner)
    return hook, runner, model.pseudo_labels.numpy(), \
        twin.pseudo_labels.numpy()


def test_a_bank_round_gives_the_labels_of_extraction(tmp_path):
    order = np.random.default_rng(0).permutation(12).tolist() + [3, 5]
    hook, runner, labels, expected = bank_round(tmp_path, order)
    assert [r['features'] for r in hook.history] == ['extracted'] * 2 + \
        ['bank'] * 2
    np.testing.assert_array_equal(labels, expected)


def test_clips_not_trained_on_are_extracted(tmp_path):
    hook, runner, labels, expected = bank_round(tmp_path, [0, 2, 4, 6, 8])
    assert hook.history[-1]['features'] == 'bank+extracted'
    assert any('7 of 12 clips were not trained on' in line
               for line in runner.logs)
    np.testing.assert_array_equal(labels, expected)


def test_a_run_resumed_mid_epoch_extracts(tmp_path):
    hook, runner, labels, expected = bank_round(tmp_path, [0, 1], True)
    assert hook.history[-1]['features'] == 'extracted'
    assert any('Resumed in the middle of epoch 1' in line
               for line in runner.logs)
    np.testing.assert_array_equal(labels, expected)


def test_the_forward_hook_copies_nothing_to_the_host(monkeypatch):
    """The captured rows stay on the encoders' device in the bank's dtype:
    no ``.cpu()`` (a device sync per step on a GPU) inside the forward."""
    model = build_model()
    dataset = toy_loader(6).dataset
    bank = FeatureBank(model, torch.float16)
    bank.open(epoch=0)
    host_copies = []
    cpu = torch.Tensor.cpu

    def counted(tensor, *args, **kwargs):
        host_copies.append(tuple(tensor.shape))
        return cpu(tensor, *args, **kwargs)

    batches = batches_of(dataset, [0, 1, 2, 3, 4, 5], size=3)
    model.eval()
    for batch in batches:
        bank.expect(batch['index'])
        data = model.data_preprocessor(batch, True)
        monkeypatch.setattr(torch.Tensor, 'cpu', counted)
        with torch.no_grad():
            model.extract_feat(data['video'], data['audio'])
        monkeypatch.setattr(torch.Tensor, 'cpu', cpu)
        bank.commit()
    assert host_copies == []
    shard = bank.shard()
    assert sorted(shard.indices.tolist()) == list(range(6))
    assert {f.dtype for f in shard.features.values()} == {torch.float16}
