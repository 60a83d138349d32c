import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

import xdc_plugin  # noqa: F401
from xdc_plugin.models import XDC_MEAN, XDC_STD, AVDataPreprocessor, XDCModel
from xdc_plugin.registry import MODELS

B, N = 4, 10
INDEX = torch.tensor([0, 3, 5, 9])
# Distinct per-sample labels per source, so a head trained on the wrong
# source gives a different cross-entropy.
LABELS = {
    'video': torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),   # batch: 0,0,2,0
    'audio': torch.tensor([2, 0, 1, 1, 2, 0, 1, 2, 0, 1]),   # batch: 2,1,0,1
    'joint': torch.tensor([1, 2, 0, 2, 0, 1, 1, 0, 2, 2]),   # batch: 1,2,1,2
}
EXPECTED_TARGETS = {
    'xdc': {('video', 'audio'), ('audio', 'video')},
    'sdc': {('video', 'video'), ('audio', 'audio')},
    'mdc': {('video', 'video'), ('video', 'audio'), ('audio', 'video'),
            ('audio', 'audio')},
    'cdc': {('video', 'joint'), ('audio', 'joint')},
}


def make_model(variant='xdc', num_clusters=3, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='XDCModel', variant=variant, num_clusters=num_clusters,
        video_encoder=dict(type='R2Plus1D18', width=0.125),
        audio_encoder=dict(type='AudioResNet18', width=0.125), **kwargs))


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        'video': torch.randint(0, 256, (B, 3, 4, 32, 32), dtype=torch.uint8,
                               generator=g),
        'audio': torch.randn(B, 1, 40, 50, generator=g),
        'index': INDEX.clone(),
        'label': torch.arange(B),
    }


def labels_for(model):
    return {s: LABELS[s] for s in model.cluster_sources}


@pytest.fixture(scope='module')
def batch():
    return make_batch()


@pytest.mark.parametrize('variant', ['xdc', 'sdc', 'mdc', 'cdc'])
def test_routing_which_labels_supervise_which_head(variant, batch):
    model = make_model(variant).eval()
    assert set(model.targets) == EXPECTED_TARGETS[variant]
    sources = sorted({s for _, s in EXPECTED_TARGETS[variant]})
    assert sorted(model.cluster_sources) == sources
    assert set(model.heads) == {f'{m}_from_{s}'
                                for m, s in EXPECTED_TARGETS[variant]}
    model.set_pseudo_labels(labels_for(model))
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        losses = model(**data, mode='loss')
        feats = model(**data, mode='tensor')
    loss_keys = {k for k in losses if 'loss' in k}
    assert loss_keys == {f'loss_{m}_from_{s}'
                         for m, s in EXPECTED_TARGETS[variant]}
    for modality, source in EXPECTED_TARGETS[variant]:
        name = f'{modality}_from_{source}'
        logits = model.heads[name](feats[modality])
        expected = F.cross_entropy(logits, LABELS[source][INDEX])
        torch.testing.assert_close(losses[f'loss_{name}'], expected)
        for other in ('video', 'audio', 'joint'):
            if other != source:
                wrong = F.cross_entropy(logits, LABELS[other][INDEX])
                assert not torch.isclose(losses[f'loss_{name}'], wrong)
        acc = (logits.argmax(1) == LABELS[source][INDEX]).float().mean()
        torch.testing.assert_close(losses[f'acc_{name}'], acc)


def test_mdc_heads_sized_per_source():
    model = make_model('mdc', num_clusters={'video': 3, 'audio': 5})
    assert len(model.heads) == 4
    assert model.heads['video_from_video'].num_classes == 3
    assert model.heads['audio_from_video'].num_classes == 3
    assert model.heads['video_from_audio'].num_classes == 5
    assert model.heads['audio_from_audio'].num_classes == 5


def test_cdc_uses_only_joint():
    model = make_model('cdc', num_clusters={'joint': 4})
    assert model.cluster_sources == ['joint']
    assert model.pseudo_labels.shape == (1, 0)
    with pytest.raises(ValueError, match='exactly'):
        model.set_pseudo_labels({'video': LABELS['video'],
                                 'audio': LABELS['audio']})
    with pytest.raises(ValueError, match='no entry'):
        make_model('cdc', num_clusters={'video': 3, 'audio': 3})


@pytest.mark.parametrize('value, message', [
    ('abc', "model.num_clusters expects an int >= 2 or a dict of them keyed "
            "by source, got str 'abc'"),
    (8.0, 'model.num_clusters expects an int >= 2 or a dict of them keyed '
          'by source, got float 8.0'),
    ({'video': 8, 'audio': 'x'},
     "model.num_clusters.audio expects an int >= 2, got str 'x'"),
])
def test_num_clusters_of_a_wrong_type_names_key_value_and_type(value,
                                                               message):
    with pytest.raises(TypeError) as err:
        make_model(num_clusters=value)
    assert message in str(err.value)


def test_ignored_labels_and_fully_unlabelled_batch(batch):
    model = make_model('xdc').eval()
    labels = {k: v.clone() for k, v in labels_for(model).items()}
    labels['audio'][INDEX[:2]] = -1        # half of the video head's targets
    model.set_pseudo_labels(labels)
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        losses = model(**data, mode='loss')
        fv = model(**data, mode='tensor')['video']
    logits = model.heads['video_from_audio'](fv)
    expected = F.cross_entropy(logits[2:], LABELS['audio'][INDEX[2:]])
    torch.testing.assert_close(losses['loss_video_from_audio'], expected)

    labels['audio'][:] = -1
    model.set_pseudo_labels(labels)
    model.train()
    losses = model(**data, mode='loss')
    loss = losses['loss_video_from_audio']
    assert loss.item() == 0.0 and loss.requires_grad
    assert losses['acc_video_from_audio'].item() == 0.0
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grad = model.heads['video_from_audio'].fc.weight.grad
    assert grad is not None and torch.all(grad == 0)


def test_loss_without_labels_or_with_bad_index(batch):
    model = make_model('xdc')
    data = model.data_preprocessor(batch, False)
    with pytest.raises(RuntimeError, match='set_pseudo_labels'):
        model(**data, mode='loss')
    model.set_pseudo_labels({s: v[:5] for s, v in labels_for(model).items()})
    with pytest.raises(RuntimeError, match='out of range'):
        model(**data, mode='loss')
    with pytest.raises(ValueError, match='same length'):
        model.set_pseudo_labels({'video': LABELS['video'],
                                 'audio': LABELS['audio'][:5]})
    with pytest.raises(ValueError, match=r'\[-1, 3\)'):
        model.set_pseudo_labels({'video': LABELS['video'],
                                 'audio': LABELS['audio'] + 1})


def test_set_pseudo_labels_accepts_numpy_and_any_n():
    model = make_model('sdc')
    model.set_pseudo_labels(
        {s: v.numpy() for s, v in labels_for(model).items()})
    assert model.pseudo_labels.dtype == torch.int32
    assert model.pseudo_labels.shape == (2, N)
    torch.testing.assert_close(model.pseudo_labels[1].long(),
                               LABELS['audio'])
    model.set_pseudo_labels({'video': torch.zeros(3, dtype=torch.int32),
                             'audio': torch.ones(3, dtype=torch.int32)})
    assert model.pseudo_labels.shape == (2, 3)


def test_pseudo_labels_round_trip_through_state_dict():
    model = make_model('xdc')
    model.set_pseudo_labels(labels_for(model))
    state = copy.deepcopy(model.state_dict())
    assert 'pseudo_labels' in state
    assert not any(k.startswith('data_preprocessor.') for k in state)

    fresh = make_model('xdc')
    assert fresh.pseudo_labels.shape == (2, 0)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.pseudo_labels, model.pseudo_labels)

    # A buffer of another N (smaller) loads too, and via mmengine's loader.
    from mmengine.runner.checkpoint import load_state_dict
    small = make_model('xdc')
    small.set_pseudo_labels({s: v[:4] for s, v in labels_for(small).items()})
    load_state_dict(fresh, copy.deepcopy(small.state_dict()), strict=True)
    torch.testing.assert_close(fresh.pseudo_labels, small.pseudo_labels)

    # Labels of another variant (1 row) must not load silently.
    cdc = make_model('cdc')
    cdc.set_pseudo_labels({'joint': LABELS['joint']})
    with pytest.raises(RuntimeError, match='pseudo_labels'):
        fresh.load_state_dict({**fresh.state_dict(),
                               'pseudo_labels': cdc.pseudo_labels})


def test_reset_heads_changes_weights():
    model = make_model('mdc')
    before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    model.reset_heads()
    after = model.heads.state_dict()
    for key in before:
        if key.endswith('weight'):
            assert not torch.equal(before[key], after[key]), key
            assert after[key].std().item() == pytest.approx(0.01, rel=0.3)
        else:
            assert torch.all(after[key] == 0)
    head_params = list(model.head_parameters())
    assert len(head_params) == 8
    assert {id(p) for p in head_params} == {
        id(p) for p in model.heads.parameters()}


def test_train_step_decreases_loss(batch):
    model = make_model('xdc')
    model.set_pseudo_labels(labels_for(model))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1,
                                         momentum=0.9))
    totals = []
    for _ in range(6):
        log_vars = model.train_step(dict(batch), optim)
        assert set(log_vars) >= {'loss', 'loss_video_from_audio',
                                 'loss_audio_from_video',
                                 'acc_video_from_audio',
                                 'acc_audio_from_video'}
        # parse_losses sums the loss_* keys only.
        torch.testing.assert_close(
            log_vars['loss'],
            log_vars['loss_video_from_audio'] +
            log_vars['loss_audio_from_video'])
        totals.append(log_vars['loss'].item())
    assert totals[-1] < totals[0]


def test_predict_and_extract_feat(batch):
    model = make_model('mdc', num_clusters={'video': 3, 'audio': 5}).eval()
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        out = model(**data, mode='predict')
        feats = model.extract_feat(data['video'], data['audio'])
        only_audio = model.extract_feat(audio=data['audio'])
    assert isinstance(out, list) and len(out) == B
    assert out[0]['video_from_audio'].shape == (5,)
    assert out[0]['audio_from_video'].shape == (3,)
    assert out[1]['index'] == INDEX[1] and out[1]['label'] == 1
    assert feats['video'].shape == (B, 64) and feats['audio'].shape == (B, 64)
    assert set(only_audio) == {'audio'}


def test_data_preprocessor_normalisation():
    pre = AVDataPreprocessor()
    batch = {
        'video': torch.full((2, 3, 2, 4, 4), 255, dtype=torch.uint8),
        'audio': torch.zeros(2, 1, 40, 10, dtype=torch.float64),
        'index': torch.tensor([0, 1]),
        'label': torch.tensor([3, 4]),
    }
    out = pre(batch, True)
    assert out['video'].dtype == torch.float32
    for c in range(3):
        expected = (1 - XDC_MEAN[c]) / XDC_STD[c]
        torch.testing.assert_close(out['video'][:, c],
                                   torch.full((2, 2, 4, 4), expected))
    assert out['audio'].dtype == torch.float32
    assert out['index'].dtype == torch.long
    torch.testing.assert_close(out['label'], batch['label'])
    zero = pre({**batch, 'video': torch.zeros(2, 3, 2, 4, 4,
                                              dtype=torch.uint8)})
    torch.testing.assert_close(
        zero['video'][0, :, 0, 0, 0],
        torch.tensor([-m / s for m, s in zip(XDC_MEAN, XDC_STD)]))
    # Lists of per-sample tensors (pseudo_collate) are stacked.
    listed = pre({k: list(v) for k, v in batch.items()})
    torch.testing.assert_close(listed['video'], out['video'])


def test_builds_under_another_default_scope():
    # e.g. inside an mmaction2 runner: the encoders, heads and preprocessor
    # given by bare type names still come from the xdc registry.
    with DefaultScope.overwrite_default_scope('mmengine'):
        model = XDCModel(video_encoder=dict(type='R2Plus1D18', width=0.125),
                         audio_encoder=dict(type='AudioResNet18',
                                            width=0.125),
                         variant='sdc', num_clusters=3)
    assert isinstance(model.data_preprocessor, AVDataPreprocessor)
    assert type(model.heads['video_from_video']).__name__ == 'LinearHead'


def test_bad_variant():
    with pytest.raises(ValueError, match='variant'):
        make_model('bogus')


def test_pseudo_labels_are_int32_in_host_memory_on_any_device():
    model = make_model('xdc')
    model.set_pseudo_labels(labels_for(model))
    assert model.pseudo_labels.dtype == torch.int32
    # Not a buffer: never moved with the model, never broadcast by DDP.
    assert 'pseudo_labels' not in dict(model.named_buffers())
    model.to('meta')
    assert model.pseudo_labels.device == torch.device('cpu')
    assert model.video_encoder.stem[0].weight.device.type == 'meta'
    state = model.state_dict()
    assert state['pseudo_labels'].dtype == torch.int32
    assert state['pseudo_labels'].device == torch.device('cpu')


def test_int64_labels_of_older_checkpoints_load_as_int32():
    model = make_model('xdc')
    model.set_pseudo_labels(labels_for(model))
    state = copy.deepcopy(model.state_dict())
    state['pseudo_labels'] = state['pseudo_labels'].long()  # as saved before
    fresh = make_model('xdc')
    fresh.load_state_dict(state)
    assert fresh.pseudo_labels.dtype == torch.int32
    torch.testing.assert_close(fresh.pseudo_labels, model.pseudo_labels)
    # Without labels in the checkpoint: a missing key, as for a buffer.
    del state['pseudo_labels']
    missing = make_model('xdc').load_state_dict(state, strict=False)
    assert missing.missing_keys == ['pseudo_labels']


# The state dicts' keys and shapes of XDCModel (width 0.125, k=3) as main
# built them before the head became config (commit e6fb684): the default
# head must build exactly that model, so its checkpoints load as before.
STATE_SHAPES_BEFORE_HEAD_CONFIG = osp.join(
    osp.dirname(osp.abspath(__file__)), 'data',
    'xdc_model_state_shapes_e6fb684.json')


@pytest.mark.parametrize('variant', ['mdc', 'cdc'])
def test_default_head_builds_the_model_of_before(variant):
    with open(STATE_SHAPES_BEFORE_HEAD_CONFIG) as f:
        before = json.load(f)[variant]
    model = make_model(variant)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == \
        before
    # Hence a checkpoint of then loads strictly.
    model.load_state_dict({k: torch.zeros(shape, dtype=torch.int32)
                           if k == 'pseudo_labels' else torch.zeros(shape)
                           for k, shape in before.items()})
    assert all(type(head).__name__ == 'LinearHead' and
               isinstance(head.dropout, torch.nn.Identity)
               for head in model.heads.values())


class BottleneckTestHead(torch.nn.Module):
    """A head of another shape: in_dim -> hidden -> num_classes."""

    def __init__(self, in_dim, num_classes, hidden=5):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden),
                                       torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, num_classes))
        self.resets = 0

    def reset_parameters(self):
        self.resets += 1
        for layer in (self.net[0], self.net[2]):
            layer.reset_parameters()

    def forward(self, x):
        return self.net(x)


class NoResetTestHead(torch.nn.Module):

    def __init__(self, in_dim, num_classes):
        super().__init__()
        self.fc = torch.nn.Linear(in_dim, num_classes)


@pytest.fixture
def extra_heads():
    names = [cls.__name__ for cls in (BottleneckTestHead, NoResetTestHead)]
    for cls in (BottleneckTestHead, NoResetTestHead):
        MODELS.register_module(module=cls, force=True)
    yield
    for name in names:
        MODELS._module_dict.pop(name)


def test_head_is_built_from_its_config(extra_heads, batch):
    model = make_model('mdc', num_clusters=dict(video=3, audio=4),
                       head=dict(type='BottleneckTestHead', hidden=7))
    for modality, source in model.targets:
        head = model.heads[model.head_name(modality, source)]
        assert isinstance(head, BottleneckTestHead)
        assert head.net[0].in_features == model.feat_dims[modality]
        assert head.net[0].out_features == 7
        assert head.net[2].out_features == model.num_clusters[source]
    model.set_pseudo_labels(labels_for(model))
    losses = model(**model.data_preprocessor(batch, False), mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    model.reset_heads()
    assert all(head.resets == 1 for head in model.heads.values())
    dropout = make_model('xdc', head=dict(type='LinearHead', dropout=0.5))
    assert all(head.dropout.p == 0.5 for head in dropout.heads.values())


@pytest.mark.parametrize('head, error, message', [
    ('LinearHead', TypeError, 'model.head expects a dict with a type'),
    (dict(dropout=0.1), TypeError, 'model.head expects a dict with a type'),
    (dict(type='LinearHead', in_dim=8), ValueError,
     r"model.head sets \['in_dim'\]: the model gives"),
    (dict(type='NoResetTestHead'), TypeError,
     'NoResetTestHead has no reset_parameters'),
])
def test_bad_head_config_is_a_clear_error(extra_heads, head, error,
                                          message):
    with pytest.raises(error, match=message):
        make_model('xdc', head=head)


def test_get_pseudo_labels_gives_what_set_pseudo_labels_takes():
    model = make_model('cdc')
    assert model.get_pseudo_labels()['joint'].shape == (0, )
    model.set_pseudo_labels(labels_for(model))
    labels = model.get_pseudo_labels()
    assert list(labels) == model.cluster_sources == ['joint']
    torch.testing.assert_close(labels['joint'],
                               LABELS['joint'].to(torch.int32))
    model.set_pseudo_labels(labels)
    torch.testing.assert_close(model.get_pseudo_labels()['joint'],
                               labels['joint'])
