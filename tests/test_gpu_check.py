"""tools/gpu_check.py on the CPU: arguments, peaks and MFU, the message
without a GPU, the bf16 AmpOptimWrapper step, and a tiny smoke run's JSON."""
import json
import os.path as osp
import runpy
import socket

import pytest
import torch
import torch.distributed as torch_dist
from xdc_plugin.engine.launch import launch
from xdc_plugin.engine.runner.config import load_config
from xdc_plugin.models.flops import forward_flops
from xdc_plugin.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = runpy.run_path(osp.join(REPO, 'tools', 'gpu_check.py'))
TINY = ['--tiny']


def test_defaults_are_the_paper_sizes():
    args = TOOL['build_parser']().parse_args([])
    assert (args.batch_size, args.frames, args.crop, args.mels) == (
        32, 8, 112, 40)
    assert args.audio_frames == [100, 201]
    assert (args.kmeans_points, args.kmeans_dim, args.kmeans_clusters) == (
        1_000_000, 512, 8192)
    assert not args.cpu and args.out == 'gpu_check.json'


def test_tiny_sizes_and_later_overrides():
    args = TOOL['parse_args'](['--cpu', '--tiny', '--kmeans-points', '9',
                               'model.video_encoder.width=0.25'])
    assert (args.batch_size, args.frames, args.crop) == (2, 2, 32)
    assert args.kmeans_points == 600  # --tiny replaces the sizes
    assert args.overrides == ['model.video_encoder.width=0.125',
                              'model.audio_encoder.width=0.125',
                              'model.video_encoder.width=0.25']


def test_host_backbone_recipe_runs_at_its_own_size(tmp_path):
    x3d = osp.join(REPO, 'configs', 'xdc_kinetics_x3d.yaml')
    args = TOOL['parse_args'](['--cpu', '--tiny', '--cfg', x3d])
    assert args.overrides == ['model.audio_encoder.width=0.125']
    with TOOL['single_rank_group']('gloo'):
        rows = TOOL['check_train_step'](load_config(x3d, args.overrides),
                                        args, torch.device('cpu'), amp=None)
    model = MODELS.build(load_config(x3d, args.overrides).model)
    assert [r['forward_gflops_per_clip'] * 1e9 for r in rows] == [
        pytest.approx(forward_flops(model, (3, 2, 32, 32), (1, 40, f))[
            'total']) for f in (20, 24)]
    assert all(r['clips_per_s'] > 0 for r in rows)


def test_peak_given_or_by_name():
    given = TOOL['environment'](torch.device('cpu'), 500.0)
    assert given['peak_source'] == '--peak-tflops'
    assert given['peak_bf16_tflops'] == 500.0
    env = TOOL['environment'](torch.device('cpu'), None)
    assert env['peak_bf16_tflops'] is None
    assert 'pass --peak-tflops' in env['peak_source']


def test_without_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='no CUDA device is visible.*--cpu'):
        TOOL['main']([])


def test_group_from_launcher_environment(monkeypatch):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    for key, value in dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                           RANK='0', WORLD_SIZE='1').items():
        monkeypatch.setenv(key, value)
    with TOOL['single_rank_group']('gloo'):
        assert torch_dist.get_world_size() == 1
        assert torch_dist.get_backend() == 'gloo'
    assert not torch_dist.is_initialized()


def test_bf16_step_is_the_one_run_net_builds(monkeypatch):
    """``--amp`` as tools/run_net.py builds it (Bf16OptimWrapper, no loss
    scaler), run under CPU autocast; the extraction pass autocasts too."""
    args = TOOL['parse_args'](['--cpu', '--amp', 'bf16'] + TINY)
    cfg = load_config(args.cfg, args.overrides)
    built = []
    build = TOOL['check_train_step'].__globals__['build_optim_wrapper']
    monkeypatch.setitem(TOOL['check_train_step'].__globals__,
                        'build_optim_wrapper',
                        lambda model, c: built.append((c, build(model, c)))
                        or built[-1][1])
    conv_dtypes = []

    def record(module, _, out):  # the FLOP count's meta forward excluded
        if isinstance(module, torch.nn.Conv3d) and not out.is_meta:
            conv_dtypes.append((module.training, out.dtype))

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        with TOOL['single_rank_group']('gloo'):
            rows = TOOL['check_train_step'](cfg, args, torch.device('cpu'),
                                            amp='bf16')
    finally:
        hook.remove()
    assert {dtype for _, dtype in conv_dtypes} == {torch.bfloat16}
    assert {training for training, _ in conv_dtypes} == {True, False}
    assert [r['amp'] for r in rows] == ['bfloat16', 'bfloat16']
    run_args = launch.parse_args(
        ['--cfg', args.cfg, '--device', 'cpu', '--amp'] + args.overrides)
    (wrapper_cfg, wrapper), = built
    assert wrapper_cfg == dict(launch.prepare_config(run_args).optim_wrapper)
    assert type(wrapper).__name__ == 'Bf16OptimWrapper'
    assert not hasattr(wrapper, 'loss_scaler')


def test_smoke_run_json(tmp_path):
    out = tmp_path / 'gpu.json'
    TOOL['main'](['--cpu', '--peak-tflops', '0.5', '--out', str(out)] + TINY)
    report = json.loads(out.read_text())
    assert report['schema'] == 'xdc-gpu-check/1'
    assert report['backend'] == 'gloo'
    assert report['environment']['device'] == 'cpu'
    assert report['environment']['peak_bf16_tflops'] == 0.5

    args = TOOL['parse_args'](['--cpu'] + TINY)
    model = MODELS.build(load_config(args.cfg, args.overrides).model)
    steps = report['train_step']
    assert [r['audio_shape'] for r in steps] == [[1, 40, 20], [1, 40, 24]]
    for row in steps:
        assert row['video_shape'] == [3, 2, 32, 32]
        assert row['amp'] is None
        assert row['clips_per_s'] == pytest.approx(2e3 / row['step_ms'])
        assert row['mfu'] == pytest.approx(
            3 * row['forward_gflops_per_clip'] * 1e9 * row['clips_per_s'] /
            0.5e12)
        assert row['extract_clips_per_s'] > 0
        assert row['forward_gflops_per_clip'] * 1e9 == pytest.approx(
            forward_flops(model, row['video_shape'],
                          row['audio_shape'])['total'])

    runs = {r['method']: r for r in report['kmeans']}
    assert list(runs) == ['TorchKMeans', 'FaissKMeans', 'DistributedKMeans']
    torch_run = runs['TorchKMeans']
    assert (torch_run['num_points'], torch_run['dim'],
            torch_run['num_clusters'], torch_run['num_iters']) == \
        (600, 8, 6, 4)
    # Same rows, same start: the sharded k-means on one gloo rank is the
    # single-process one, and faiss lands on the same partition.
    assert runs['DistributedKMeans']['label_agreement'] == 1.0
    assert runs['DistributedKMeans']['iterations_run'] == \
        torch_run['iterations_run'] <= 4
    assert runs['DistributedKMeans']['inertia'] == pytest.approx(
        torch_run['inertia'], rel=1e-6)
    assert runs['FaissKMeans']['inertia'] == pytest.approx(
        torch_run['inertia'], rel=1e-3)
    assert all(r['seconds'] > 0 for r in runs.values())


def test_a_failed_check_is_recorded_and_the_others_run(tmp_path,
                                                       monkeypatch, capsys):
    def broken(args, device):
        raise RuntimeError('CUDA out of memory (simulated)')

    monkeypatch.setitem(TOOL['main'].__globals__, 'check_kmeans', broken)
    out = tmp_path / 'gpu.json'
    with pytest.raises(SystemExit, match='failed checks.*kmeans'):
        TOOL['main'](['--cpu', '--out', str(out)] + TINY)
    report = json.loads(out.read_text())
    assert report['errors'] == {
        'kmeans': 'RuntimeError: CUDA out of memory (simulated)'}
    assert report['kmeans'] == [] and len(report['train_step']) == 2
    assert set(report['seconds']) == {'train_step', 'kmeans'}
    printed = capsys.readouterr().out
    assert 'kmeans FAILED: RuntimeError' in printed
    assert '| 2 | 3x2x32x32 | 1x40x20 |' in printed


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='needs a CUDA GPU: NCCL, bf16 autocast on CUDA')
def test_tiny_run_on_the_gpu(tmp_path):
    report = TOOL['main'](['--out', str(tmp_path / 'gpu.json')] + TINY)
    assert report['backend'] == 'nccl' and not report['errors']
    assert all(r['amp'] == 'bfloat16' for r in report['train_step'])


def test_a_bad_config_or_override_is_one_line(tmp_path):
    for argv, says in ((['--cpu', 'train_cfg.max_epochs'],
                        "override 'train_cfg.max_epochs' is not KEY=VALUE"),
                       (['--cpu', '--cfg', str(tmp_path / 'nope.yaml')],
                        f'config file {tmp_path / "nope.yaml"}: no such '
                        'file')):
        with pytest.raises(SystemExit) as info:
            TOOL['main'](argv)
        assert str(info.value) == f'gpu_check: {says}'
