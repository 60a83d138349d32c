"""Caffe2 (VMZ) ``.pkl`` -> official-layout ``.pth``.

The test pickle is built by inverting the name table independently of the
converter: a few blobs written out by hand from VMZ's naming, the rest by
rewriting key strings with regular expressions (the converter instead walks
the model's modules)."""
import os.path as osp
import pickle
import re
import runpy

import numpy as np
import pytest
import torch

from xdc_plugin import weights as W
from xdc_plugin.encoders import R2Plus1D18

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO_DIR, 'tools', 'convert_caffe2_weights.py')

# Written out by hand from VMZ's VideoModelBuilder naming.
HAND_WRITTEN = {
    'stem.0.weight': 'conv1_middle_w',
    'stem.1.running_var': 'conv1_middle_spatbn_relu_riv',
    'stem.3.weight': 'conv1_w',
    'stem.4.weight': 'conv1_spatbn_relu_s',
    'layer1.0.conv1.0.0.weight': 'comp_0_conv_1_middle_w',
    'layer1.1.conv2.1.bias': 'comp_1_spatbn_2_b',
    'layer2.0.conv2.0.0.weight': 'comp_2_conv_2_middle_w',
    'layer2.0.conv2.0.1.running_mean': 'comp_2_spatbn_2_middle_rm',
    'layer2.0.conv2.0.3.weight': 'comp_2_conv_2_w',
    'layer2.0.downsample.0.weight': 'shortcut_projection_2_w',
    'layer3.0.downsample.1.weight': 'shortcut_projection_4_spatbn_s',
    'layer4.0.downsample.1.running_var': 'shortcut_projection_6_spatbn_riv',
    'layer4.1.conv2.1.running_var': 'comp_7_spatbn_2_riv',
}
_BN = {'weight': 's', 'bias': 'b', 'running_mean': 'rm',
       'running_var': 'riv'}


def _blob_name(key):
    if key in HAND_WRITTEN:
        return HAND_WRITTEN[key]
    m = re.fullmatch(r'stem\.(\d)\.(\w+)', key)
    if m:
        base = {'0': 'conv1_middle', '1': 'conv1_middle_spatbn_relu',
                '3': 'conv1', '4': 'conv1_spatbn_relu'}[m.group(1)]
        return base + '_' + ('w' if m.group(1) in '03' else _BN[m.group(2)])
    m = re.fullmatch(r'layer(\d)\.(\d)\.(.+)\.(\w+)', key)
    layer, block, module, attr = m.groups()
    comp = 2 * (int(layer) - 1) + int(block)
    sub = re.fullmatch(r'conv(\d)\.(0\.0|0\.1|0\.3|1)', module)
    if sub:
        j, part = sub.groups()
        name = {'0.0': f'comp_{comp}_conv_{j}_middle_w',
                '0.1': f'comp_{comp}_spatbn_{j}_middle_',
                '0.3': f'comp_{comp}_conv_{j}_w',
                '1': f'comp_{comp}_spatbn_{j}_'}[part]
        return name + (_BN[attr] if name.endswith('_') else '')
    assert module in ('downsample.0', 'downsample.1'), key
    if module == 'downsample.0':
        return f'shortcut_projection_{comp}_w'
    return f'shortcut_projection_{comp}_spatbn_{_BN[attr]}'


@pytest.fixture(scope='module')
def caffe2_release():
    torch.manual_seed(1)
    state_dict = {k: torch.randn_like(v.float())
                  for k, v in R2Plus1D18(num_classes=0).state_dict().items()
                  if not k.endswith('num_batches_tracked')}
    blobs = {_blob_name(k): v.numpy() for k, v in state_dict.items()}
    assert len(blobs) == len(state_dict) == 185
    # Not weights of the encoder: skipped by the converter.
    blobs['last_out_L400_w'] = np.zeros((400, 512), np.float32)
    blobs['last_out_L400_b'] = np.zeros(400, np.float32)
    blobs['pred'] = np.zeros((1, 400), np.float32)
    blobs['comp_0_conv_1_middle_w_momentum'] = np.zeros(1, np.float32)
    return state_dict, blobs


def _write_pkl(path, blobs):
    with open(path, 'wb') as f:  # VMZ files are Python 2 pickles
        pickle.dump({'blobs': dict(blobs)}, f, protocol=2)
    return str(path)


def test_table_matches_independent_inversion():
    table = W.caffe2_name_table()
    assert table == {k: _blob_name(k) for k in table}
    for key, blob in HAND_WRITTEN.items():
        assert table[key] == blob


def _run_tool(argv):
    module = runpy.run_path(TOOL)
    return module['main'](argv)


def test_convert_roundtrip(caffe2_release, tmp_path, capsys):
    state_dict, blobs = caffe2_release
    pkl = _write_pkl(tmp_path / 'xdc.pkl', {**blobs,
                                            'model_iter': np.array([10])})
    out = tmp_path / 'converted.pth'
    # An unknown leftover blob is refused ...
    with pytest.raises(SystemExit) as exit_info:
        _run_tool([pkl, str(out)])
    assert exit_info.value.code == 1
    assert "unused blobs: ['model_iter']" in capsys.readouterr().err
    # ... unless skipped on request.
    assert _run_tool([pkl, str(out), '--ignore', '^model_iter$']) == str(out)
    converted = torch.load(out, weights_only=True)
    for key, value in state_dict.items():
        assert torch.equal(converted[key], value), key
    # Loads strictly through the public entry point.
    model = W.xdc_video_encoder(weights=str(out), num_classes=101)
    assert torch.equal(model.layer3[0].conv1[0][3].weight,
                       state_dict['layer3.0.conv1.0.3.weight'])
    # A hash prefix in a .pkl name is checked like the release's.
    lying = tmp_path / 'xdc-0badc0de.pkl'
    lying.symlink_to(pkl)
    with pytest.raises(SystemExit):
        _run_tool([str(lying), str(out)])
    assert 'does not start with' in capsys.readouterr().err


def test_missing_and_unused_blobs_are_listed(caffe2_release, tmp_path,
                                             capsys):
    _, blobs = caffe2_release
    broken = dict(blobs)
    del broken['comp_5_spatbn_1_middle_rm']
    broken['comp_8_conv_1_w'] = np.zeros(3, np.float32)
    with pytest.raises(W.IncompatibleWeightsError) as err:
        W.convert_caffe2_blobs(broken)
    message = str(err.value)
    assert "missing blobs: ['comp_5_spatbn_1_middle_rm']" in message
    assert "unused blobs: ['comp_8_conv_1_w']" in message
    # The CLI exits with the same kind of message (a small file).
    pkl = _write_pkl(tmp_path / 'broken.pkl', {
        'conv1_w': blobs['conv1_w'], 'comp_8_conv_1_w': np.zeros(3)})
    with pytest.raises(SystemExit) as exit_info:
        _run_tool([pkl, str(tmp_path / 'x.pth')])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "unused blobs: ['comp_8_conv_1_w']" in err
    assert 'conv1_middle_w' in err
    assert 'shortcut_projection_6_spatbn_riv' in err
    assert not (tmp_path / 'x.pth').exists()


def test_hash_name_option(tmp_path, monkeypatch):
    module = runpy.run_path(TOOL)
    small = {'stem.0.weight': torch.zeros(2)}
    monkeypatch.setitem(module['convert'].__globals__, 'read_caffe2_pkl',
                        lambda path: {})
    monkeypatch.setitem(module['convert'].__globals__,
                        'convert_caffe2_blobs', lambda blobs, ignore: small)
    named = module['main'](['in.pkl', str(tmp_path / 'out'),
                            '--hash-name', 'xdc'])
    assert re.fullmatch(r'xdc-[0-9a-f]{8}\.pth', osp.basename(named))
    assert W.sha256_of(named).startswith(osp.basename(named)[4:12])


def test_shape_mismatch_names_blob_and_key(caffe2_release):
    _, blobs = caffe2_release
    broken = dict(blobs)
    # torchvision's r2plus1d_18 would have 230 middle channels here.
    broken['comp_2_conv_2_middle_w'] = np.zeros((230, 128, 1, 3, 3),
                                                np.float32)
    with pytest.raises(W.IncompatibleWeightsError,
                       match=r'comp_2_conv_2_middle_w -> '
                             r'layer2\.0\.conv2\.0\.0\.weight: blob '
                             r'\(230, 128, 1, 3, 3\) vs model '
                             r'\(288, 128, 1, 3, 3\)'):
        W.convert_caffe2_blobs(broken)
