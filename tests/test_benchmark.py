"""tools/benchmark.py and xdc_plugin/evaluation/video_benchmark.py: every
official split trained and tested by mmaction2 on tiny releases laid out
like the real ones; each ENCODER kind reaches the backbone."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_evaluation_audio_benchmarks import dcase_root  # noqa: F401
from tiny_video_releases import SMALL_RUN, make_release

import xdc_plugin.weights as P
from xdc_plugin.encoders import AudioResNet18, R2Plus1D18
from xdc_plugin.engine.runner.config import load_config
from xdc_plugin.evaluation.encoder_sources import load_encoders
from xdc_plugin.evaluation.video_benchmark import (EncoderWeights,
                                                   encoder_weights,
                                                   format_table,
                                                   run_video_benchmark,
                                                   summary_record)
from xdc_plugin.models.backbone import XDCBackbone
from xdc_plugin.registry import MODELS

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO_DIR, 'tools', 'benchmark.py')


def _tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_split_finetune_end_to_end(tmp_path):
    make_release('ucf101', tmp_path / 'ucf101')
    out = tmp_path / 'out.json'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_DIR] + os.environ.get('PYTHONPATH', '').split(os.pathsep)))
    done = subprocess.run(
        [sys.executable, TOOL, 'ucf101', '--encoder', 'random', '--frames',
         '4', '--data-root', str(tmp_path / 'ucf101'), '--work-dir',
         str(tmp_path / 'work'), '--json', str(out), '--cfg-options',
         *SMALL_RUN], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [record] = json.loads(out.read_text())
    assert {k: record[k] for k in (
        'protocol', 'modality', 'metric', 'encoder', 'dataset', 'frames',
        'splits', 'num_samples', 'failed')} == dict(
            protocol='finetune', modality='video', metric='top1',
            encoder='random', dataset='ucf101', frames=4, splits=[1, 2, 3],
            num_samples=9, failed={})
    assert record['top5_folds'] == [1.0, 1.0, 1.0]  # 3 classes
    folds = np.array(record['folds'])
    # 3 test videos per split: accuracies are thirds.
    assert folds.shape == (3,) and np.allclose(folds * 3, np.round(folds * 3))
    assert record['accuracy'] == pytest.approx(folds.mean())
    assert record['std'] == pytest.approx(folds.std())
    table = done.stdout
    for split, accuracy in zip((1, 2, 3), folds):
        assert f'\n| {split} | 3 | {100 * accuracy:.2f} | 100.00 |' in table
    assert (f'| mean (top-1 std {100 * folds.std():.2f} over 3 splits) | 9 | '
            f'{100 * folds.mean():.2f} | 100.00 |') in table
    # Progress and results went through mmengine's log of each split.
    for split in (1, 2, 3):
        assert (tmp_path / 'work' / 'annotations' /
                f'ucf101_val_split_{split}_videos.txt').is_file()
        logs = list((tmp_path / 'work' / f'split_{split}').glob('*/*.log'))
        assert len(logs) == 1 and 'Epoch(test)' in logs[0].read_text()
    assert 'Epoch(train) [1][2/2]' in table


def test_fc_only_learns_the_planted_classes_and_reports_a_failed_split(
        tmp_path):
    # Class = colour: a frozen random backbone separates them, so the
    # classifier alone reaches 100 % on the test videos of each split iff
    # the converted labels agree between training and test sets.
    root = tmp_path / 'hmdb51'
    make_release('hmdb51', root)
    (root / 'testTrainMulti_7030_splits' / 'sword_test_split3.txt').unlink()
    options = SMALL_RUN + ['train_cfg.max_epochs=20', 'param_scheduler=[]',
                       'train_dataloader.batch_size=6']
    results = run_video_benchmark(
        'hmdb51', 'random', str(root),
        config=osp.join(REPO_DIR, 'configs', 'benchmarks', 'hmdb51.yaml'),
        frames=4, mode='fc-only', work_dir=str(tmp_path / 'work'),
        cfg_options=options)
    assert [(r.split, r.num_test, r.top1) for r in results[:2]] == [
        (1, 3, 1.0), (2, 3, 1.0)]
    assert results[2].top1 is None
    assert 'no sword_test_split3.txt' in results[2].error
    run = dict(dataset='hmdb51', encoder='random', frames=4, mode='fc-only')
    record = summary_record(results, **run)
    assert (record['accuracy'], record['std'], record['folds'],
            record['splits'], record['num_samples']) == (
                1.0, 0.0, [1.0, 1.0], [1, 2], 6)
    assert list(record['failed']) == ['3']
    table = format_table(results, record=record, **run)
    assert '| 3 | 0 | FAILED: FileNotFoundError' in table
    assert 'over 2 splits' in table


def test_audio_subcommand_prints_and_writes_the_records(dcase_root,  # noqa: F811
                                                        tmp_path, capsys):
    # The tiny release of tests/test_evaluation_audio_benchmarks.py.
    out = tmp_path / 'dcase.json'
    records = _tool().main([
        'dcase2014', '--encoder', 'random', '--data-root', str(dcase_root),
        '--cfg', osp.join(REPO_DIR, 'configs', 'xdc_avobjects.yaml'),
        '--json', str(out)])
    assert json.loads(out.read_text()) == records
    [record] = records
    assert (record['protocol'], record['modality'], record['benchmark'],
            record['num_samples']) == ('linear', 'audio', 'dcase2014', 18)
    printed = capsys.readouterr().out
    assert 'dcase2014, encoder random\n| protocol | modality |' in printed
    assert (f'| linear | audio | top1 | {100 * record["accuracy"]:.1f} +- '
            in printed)


def test_audio_benchmark_of_an_exported_host_audio_encoder(dcase_root,  # noqa: F811
                                                           tmp_path):
    config = osp.join(REPO_DIR, 'configs', 'xdc_demo_resnet_audio.yaml')
    overrides = ['model.audio_encoder.backbone.base_channels=4',
                 'model.video_encoder.width=0.125']
    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = P.export_encoders(model.state_dict(), str(tmp_path), 'ra')[
        'audio']
    cfg_file = tmp_path / 'run.yaml'
    cfg.dump(str(cfg_file))
    [record] = _tool().main(['dcase2014', '--encoder', path, '--data-root',
                             str(dcase_root), '--cfg', str(cfg_file)])
    assert (record['modality'], record['num_samples']) == ('audio', 18)
    # The same features as the trained model's ResNetAudio gives them.
    encoder = load_encoders(path, 'audio', cfg=str(cfg_file)).modules[
        'audio']
    spectrogram = torch.randn(2, 1, 40, 101)
    model.eval()
    with torch.no_grad():
        assert torch.equal(encoder(spectrogram),
                           model.audio_encoder(spectrogram))


def test_tool_errors_are_clear(tmp_path, capsys):
    tool = _tool()
    base = ['ucf101', '--encoder', 'random', '--frames', '8', '--data-root',
            str(tmp_path), '--work-dir', str(tmp_path / 'work')]
    with pytest.raises(SystemExit) as exit_info:
        tool.main(base)
    assert exit_info.value.code == 1
    assert 'none of the ucf101 split folders' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(base + ['--cfg-options', 'model.backbone.widht=0.5'])
    err = capsys.readouterr().err
    assert "unknown config key 'model.backbone.widht'" in err
    assert 'width' in err
    make_release('ucf101', tmp_path / 'ucf101')
    with pytest.raises(SystemExit):
        tool.main(['ucf101', '--encoder', 'no_such_file.pth', '--frames',
                   '8', '--data-root', str(tmp_path / 'ucf101'),
                   '--work-dir', str(tmp_path / 'work')])
    assert 'is not a file, a release name' in capsys.readouterr().err


@pytest.fixture
def fake_release(tmp_path, monkeypatch):
    """A width-1 release entry 'fake_xdc' served from a file:// folder."""
    torch.manual_seed(1)
    state_dict = R2Plus1D18(num_classes=0).state_dict()
    path = P.save_hash_named(state_dict, str(tmp_path / 'release'),
                             'fake_xdc')
    digest = P.hash_prefix_in_name(path)
    monkeypatch.setitem(P.PRETRAINED_CFGS, 'fake_xdc', P.PretrainedCfg(
        'fake_xdc', 'test data', 1.0, 2.0, digest, '00000000'))
    monkeypatch.setenv(P.BASE_URL_ENV, f'file://{tmp_path}/release/')
    monkeypatch.delenv(P.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    return state_dict


def _small_encoder_weights(seed):
    torch.manual_seed(seed)
    return R2Plus1D18(num_classes=0, width=0.25).state_dict()


def _assert_backbone_holds(checkpoint, width, state_dict):
    backbone = XDCBackbone(width=width, init_cfg=dict(
        type='Pretrained', checkpoint=checkpoint))
    backbone.init_weights()
    loaded = backbone.state_dict()
    assert set(loaded) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(loaded[key], value), key


def test_every_encoder_kind_loads_into_the_backbone(fake_release, tmp_path):
    out = str(tmp_path / 'encoder')
    assert encoder_weights('random', out) == EncoderWeights()
    for name in ('fake_xdc', 'xdc://fake_xdc'):
        weights = encoder_weights(name, out)
        assert weights == EncoderWeights('xdc://fake_xdc', 1.0)
    _assert_backbone_holds(weights.checkpoint, weights.width, fake_release)

    exported = _small_encoder_weights(2)
    path = P.save_hash_named(exported, str(tmp_path), 'mine_video')
    weights = encoder_weights(path, out)
    assert weights.width == 0.25 and weights.checkpoint.startswith(out)
    _assert_backbone_holds(weights.checkpoint, weights.width, exported)

    video = _small_encoder_weights(3)
    audio = AudioResNet18(width=0.25).state_dict()
    training = {**{f'video_encoder.{k}': v for k, v in video.items()},
                **{f'audio_encoder.{k}': v for k, v in audio.items()},
                'heads.video.weight': torch.zeros(8, 128)}
    ckpt = tmp_path / 'run' / 'epoch_3.pth'
    ckpt.parent.mkdir()
    torch.save(dict(state_dict=training, meta=dict(epoch=3)), ckpt)
    weights = encoder_weights(str(ckpt), out)
    assert weights.width == 0.25
    assert osp.basename(weights.checkpoint).startswith('epoch_3-')
    _assert_backbone_holds(weights.checkpoint, weights.width, video)


def test_a_host_backbone_encoder_brings_its_backbone(tmp_path):
    cfg = load_config(osp.join(REPO_DIR, 'configs', 'xdc_demo_x3d.yaml'), [
        'model.video_encoder.backbone.gamma_w=0.25',
        'model.audio_encoder.width=0.125'])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    paths = P.export_encoders(model.state_dict(), str(tmp_path), 'x3d')
    out = str(tmp_path / 'encoder')
    weights = encoder_weights(paths['video'], out, cfg=cfg)
    assert weights.host_backbone == dict(
        cfg.model.video_encoder.backbone)
    assert weights.feat_dim == model.feat_dims['video']
    # The recognizer's layout, for mmengine's load_from.
    recognizer_layout = torch.load(weights.checkpoint, weights_only=True)
    own = model.video_encoder.backbone.state_dict()
    assert list(recognizer_layout) == ['backbone.' + k for k in own]
    for key, value in own.items():
        assert torch.equal(recognizer_layout['backbone.' + key], value)
    # random with a host config: that backbone at its random init.
    weights = encoder_weights('random', out, cfg=cfg)
    assert (weights.checkpoint, weights.feat_dim) == (
        None, model.feat_dims['video'])
    with pytest.raises(ValueError, match='--cfg'):
        encoder_weights(paths['video'], out)
