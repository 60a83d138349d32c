"""Strict loading of official-layout weights and ``xdc_video_encoder`` on a
local file."""
import argparse
import os
import pickle

import pytest
import torch
from conftest import assert_same_encoder

from xdc_plugin import weights as W
from xdc_plugin.encoders import R2Plus1D18


def test_official_layout_loads_strictly(official):
    state_dict, _, _ = official
    # R2Plus1D18(num_classes=0) has exactly the release's keys.
    assert not any(k.startswith('fc.') for k in state_dict)
    model = R2Plus1D18(num_classes=101)
    W.load_official_state_dict(model, state_dict)  # only fc missing
    assert_same_encoder(model, state_dict)
    result = R2Plus1D18(num_classes=101).load_state_dict(state_dict,
                                                         strict=False)
    assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight']
    assert result.unexpected_keys == []
    # num_batches_tracked may be absent (older/other exporters).
    no_counters = {k: v for k, v in state_dict.items()
                   if not k.endswith('num_batches_tracked')}
    W.load_official_state_dict(R2Plus1D18(num_classes=5), no_counters)


def test_renamed_extra_and_shape_errors_name_the_key(official):
    state_dict, _, _ = official
    renamed = dict(state_dict)
    renamed['layer2.0.conv2.0.0.weights'] = renamed.pop(
        'layer2.0.conv2.0.0.weight')
    with pytest.raises(W.IncompatibleWeightsError) as err:
        W.load_official_state_dict(R2Plus1D18(num_classes=3), renamed)
    assert "'layer2.0.conv2.0.0.weights'" in str(err.value)  # unexpected
    assert "'layer2.0.conv2.0.0.weight'" in str(err.value)   # missing
    wrong = dict(state_dict)
    wrong['layer4.1.conv1.1.running_var'] = torch.ones(7)
    with pytest.raises(W.IncompatibleWeightsError,
                       match=r'layer4\.1\.conv1\.1\.running_var: file \(7,\) '
                             r'vs model \(512,\)'):
        W.load_official_state_dict(R2Plus1D18(num_classes=3), wrong)
    # torchvision's r2plus1d_18 mid widths differ: a clear shape error.
    assert state_dict['layer2.0.conv2.0.0.weight'].shape == (288, 128, 1, 3,
                                                             3)
    with pytest.raises(W.IncompatibleWeightsError, match='unexpected keys'):
        W.load_official_state_dict(
            R2Plus1D18(num_classes=3),
            {**state_dict, 'fc.weight': torch.zeros(400, 512)},
            allow_missing=('fc.weight', 'fc.bias'))
    with pytest.raises(W.IncompatibleWeightsError, match='export_encoder'):
        W.load_official_state_dict(
            R2Plus1D18(num_classes=3),
            {'video_encoder.' + k: v for k, v in state_dict.items()})


def test_wrapped_file_refused(tmp_path):
    path = tmp_path / 'wrapped.pth'
    torch.save({'state_dict': {'stem.0.weight': torch.zeros(1)}}, path)
    with pytest.raises(W.IncompatibleWeightsError, match='export_encoder'):
        W.xdc_video_encoder(weights=str(path))


def test_file_needing_a_full_unpickle_refused(tmp_path):
    path = tmp_path / 'pickled.pth'
    torch.save({'stem.0.weight': torch.zeros(1),
                'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(pickle.UnpicklingError,
                       match='Weights only load failed'):
        W.read_weights_file(str(path))


def test_local_file_fc_fresh_and_bn_momentum(official):
    state_dict, path, _ = official
    model = W.xdc_video_encoder(weights=path, num_classes=101)
    assert_same_encoder(model, state_dict)
    assert model.fc.weight.shape == (101, 512)
    assert torch.all(model.fc.bias == 0)
    assert 0.005 < model.fc.weight.std().item() < 0.015
    momenta = {m.momentum for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm3d)}
    epsilons = {m.eps for m in model.modules()
                if isinstance(m, torch.nn.BatchNorm3d)}
    assert momenta == {0.1} and epsilons == {1e-3}
    official_like = W.xdc_video_encoder(weights=path, num_classes=0,
                                        bn_momentum=0.9)
    assert official_like.fc is None
    assert {m.momentum for m in official_like.modules()
            if isinstance(m, torch.nn.BatchNorm3d)} == {0.9}
    model.eval(), official_like.eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), official_like(x))


def test_no_pretraining_gives_a_fresh_model():
    model = W.xdc_video_encoder(pretraining=None, num_classes=5, width=0.125)
    assert model.fc.out_features == 5 and torch.all(model.fc.bias == 0)


def test_local_file_with_wrong_hash_in_name_refused(official, tmp_path):
    _, path, digest = official
    bad = tmp_path / f'mine-{"0" * 8 if digest[0] != "0" else "1" * 8}.pth'
    os.symlink(path, bad)
    with pytest.raises(W.IncompatibleWeightsError, match='sha256'):
        W.xdc_video_encoder(weights=str(bad))


def test_missing_local_file_names_the_releases(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match='r2plus1d_18_xdc_ig65m_kinetics'):
        W.xdc_video_encoder(weights=str(tmp_path / 'nope.pth'))
