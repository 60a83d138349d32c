"""``XDCBackbone`` (mmaction2 backbone) and mmengine's ``xdc://`` scheme."""
import pytest
import torch
from conftest import assert_same_encoder

from xdc_plugin.models import XDCBackbone, register_xdc_scheme
from xdc_plugin.weights import IncompatibleWeightsError


def test_init_cfg_loads_strictly_without_the_scheme(official, fake_release,
                                                    monkeypatch):
    from mmengine.runner import CheckpointLoader
    state_dict, _, _ = official
    # Whatever registered the scheme before, the backbone does not use it.
    monkeypatch.setattr(CheckpointLoader, '_schemes', {
        k: v for k, v in CheckpointLoader._schemes.items() if k != 'xdc://'})
    backbone = XDCBackbone(init_cfg=dict(type='Pretrained',
                                         checkpoint='xdc://fake_xdc'))
    backbone.init_weights()
    assert_same_encoder(backbone, state_dict)
    assert set(backbone.state_dict()) == set(state_dict)
    # In a list of init configs, Pretrained still loads strictly, last.
    listed = XDCBackbone(init_cfg=[
        dict(type='Pretrained', checkpoint='xdc://fake_xdc'),
        dict(type='Constant', layer='Conv3d', val=0.0)])
    listed.init_weights()
    assert_same_encoder(listed, state_dict)
    # A backbone of another width is refused by name, not half-loaded.
    small = XDCBackbone(width=0.25, init_cfg=dict(
        type='Pretrained', checkpoint='xdc://fake_xdc'))
    with pytest.raises(IncompatibleWeightsError,
                       match=r'stem\.0\.weight: file \(45, 3, 1, 7, 7\)'):
        small.init_weights()


def test_registered_scheme_serves_mmengine_loaders(official, fake_release):
    from mmengine.runner import CheckpointLoader, load_checkpoint
    state_dict, _, _ = official
    register_xdc_scheme()
    loaded = CheckpointLoader.load_checkpoint('xdc://fake_xdc')
    assert set(loaded) == set(state_dict)
    backbone = XDCBackbone()
    load_checkpoint(backbone, 'xdc://fake_xdc', strict=True)
    assert_same_encoder(backbone, state_dict)


def test_backbone_feature_map_and_freezing():
    backbone = XDCBackbone(width=0.25, frozen_stages=1, norm_eval=True)
    backbone.train()
    out = backbone(torch.randn(2, 3, 8, 32, 32))
    assert out.shape == (2, 128, 1, 2, 2)
    assert not any(p.requires_grad for p in backbone.stem.parameters())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not any(m.training for m in backbone.modules()
                   if isinstance(m, torch.nn.BatchNorm3d))
