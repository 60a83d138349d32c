"""engine/runner/device.py and the launcher's device: no silent fallback
from CUDA to the CPU, one visible device per task, --device cpu on a GPU
machine. CUDA's presence, device counts and nvidia-smi are mocked."""
import datetime
import os
from types import SimpleNamespace

import pytest
import torch
from mmengine.device import get_device

from xdc_plugin import compat
from xdc_plugin.engine.launch import launch
from xdc_plugin.engine.runner import device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', '13.0')


def fake_nvidia_smi(monkeypatch, stdout):
    monkeypatch.setattr(device.shutil, 'which', lambda name: '/bin/' + name)
    monkeypatch.setattr(device.subprocess, 'run', lambda *a, **k: (
        SimpleNamespace(returncode=0, stdout=stdout)))


def no_driver(monkeypatch):
    monkeypatch.setattr(device.shutil, 'which', lambda name: None)
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).startswith('/proc/driver/nvidia'):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr('builtins.open', refuse)


def run_config(*argv):
    """The config ``tools/run_net.py ARGV`` trains with (as ``main`` makes
    it: mmengine's logger naming this process's device)."""
    with compat.mmengine_logger_device_id(device.local_cuda_index):
        return launch.prepare_config(launch.parse_args(list(argv)))


@pytest.mark.parametrize('launcher', ['pytorch', 'slurm'])
def test_distributed_launcher_without_cuda_fails_naming_both_versions(
        no_cuda, monkeypatch, launcher):
    fake_nvidia_smi(monkeypatch, '535.104.05\n')
    with pytest.raises(device.DeviceError) as error:
        run_config('--launcher', launcher)
    message = str(error.value)
    assert '\n' not in message
    assert f'--launcher {launcher} (NCCL, --device auto) needs CUDA' in \
        message
    assert f'torch {torch.__version__} built with CUDA 13.0' in message
    assert 'NVIDIA driver 535.104.05' in message
    assert '--device cpu' in message


def test_without_a_driver_the_message_says_none_was_found(no_cuda,
                                                          monkeypatch):
    no_driver(monkeypatch)
    with pytest.raises(device.DeviceError,
                       match='--device cuda needs CUDA.*no NVIDIA driver '
                       'found'):
        run_config('--device', 'cuda')


def test_the_cli_prints_one_line(no_cuda, monkeypatch, capsys):
    no_driver(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        launch.cli(['--launcher', 'pytorch'])
    assert str(stop.value).startswith('error: --launcher pytorch')


def test_driver_version_from_proc_when_there_is_no_nvidia_smi(monkeypatch,
                                                              tmp_path):
    monkeypatch.setattr(device.shutil, 'which', lambda name: None)
    proc = tmp_path / 'version'
    proc.write_text('NVRM version: NVIDIA UNIX x86_64 Kernel Module  '
                    '550.54.15  Tue Mar  5 22:23:56 UTC 2024\n')
    real_open = open
    monkeypatch.setattr('builtins.open', lambda path, *a, **k: real_open(
        proc if path == '/proc/driver/nvidia/version' else path, *a, **k))
    assert device.driver_version() == '550.54.15'


def test_a_failing_nvidia_smi_is_not_a_driver(monkeypatch):
    no_driver(monkeypatch)
    monkeypatch.setattr(device.shutil, 'which', lambda name: '/bin/' + name)
    monkeypatch.setattr(device.subprocess, 'run', lambda *a, **k: (
        SimpleNamespace(returncode=9, stdout='')))
    assert device.driver_version() is None


def test_cpu_runs_ask_for_the_cpu(no_cuda):
    cfg = run_config('--launcher', 'pytorch', '--device', 'cpu')
    assert cfg.device == 'cpu'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None


def test_auto_without_a_launcher_runs_on_a_laptop(no_cuda, monkeypatch):
    logged = []
    monkeypatch.setattr(launch, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    cfg = run_config()
    assert cfg.device == 'cpu'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert logged == ['--device auto: training on cpu (torch sees no GPU)']


def test_auto_takes_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a: 'Fake')
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 8)
    monkeypatch.setenv('LOCAL_RANK', '3')
    assert run_config().device == 'cuda'
    cfg = run_config('--launcher', 'pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.model_wrapper_cfg.device_ids == [3]


def test_the_dry_run_plans_a_gpu_run_without_a_gpu(no_cuda):
    assert run_config('--dry-run', '--world-size', '8').device == 'cuda'
    assert run_config('--dry-run').device == 'cpu'
    assert run_config('--dry-run', '--world-size', '8', '--device',
                      'cpu').device == 'cpu'


@pytest.mark.parametrize('count, local_rank, expected', [
    (1, '5', 0),   # --gpus-per-task: one visible device, whatever the rank
    (8, '5', 5),   # every device of the node visible
    (1, '0', 0)])
def test_local_cuda_index(monkeypatch, count, local_rank, expected):
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
    monkeypatch.setenv('LOCAL_RANK', local_rank)
    assert device.local_cuda_index() == expected


def test_a_local_rank_beyond_the_visible_devices_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setenv('LOCAL_RANK', '3')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5')
    with pytest.raises(device.DeviceError,
                       match='LOCAL_RANK=3.*sees 2 CUDA devices.*4,5'):
        device.local_cuda_index()


def test_one_visible_device_per_task_selects_device_0(monkeypatch):
    """The launcher's process group and DDP wrapper use device 0 for a
    task that sees one device, not its local rank."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a: 'Fake')
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setenv('LOCAL_RANK', '6')
    selected, initialised = [], []
    monkeypatch.setattr(torch.cuda, 'set_device', selected.append)
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        lambda **kwargs: initialised.append(kwargs))
    cfg = run_config('--launcher', 'pytorch')
    assert cfg.model_wrapper_cfg.device_ids == [0]
    launch.init_distributed(cfg)
    assert selected == [0]
    assert initialised == [dict(backend='nccl',
                                timeout=datetime.timedelta(hours=1))]


def test_slurm_launcher_maps_slurms_variables(monkeypatch):
    # A copy of the environment, which the launcher then writes to: the
    # real one is back after the test, without these variables.
    environ = {k: v for k, v in os.environ.items() if k not in (
        'MASTER_PORT', 'MASTER_ADDR', 'RANK', 'LOCAL_RANK', 'WORLD_SIZE')}
    environ.update(SLURM_JOB_ID='77', SLURM_PROCID='5', SLURM_LOCALID='1',
                   SLURM_NTASKS='8', SLURM_JOB_NODELIST='gpu[3-4]',
                   SLURM_JOB_NUM_NODES='2', SLURM_NODEID='1')
    monkeypatch.setattr(os, 'environ', environ)
    initialised = []
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        lambda **kwargs: initialised.append(kwargs))
    cfg = run_config('--launcher', 'slurm', '--device', 'cpu')
    launch.init_distributed(cfg)
    assert initialised == [dict(backend='gloo',
                                timeout=datetime.timedelta(hours=1))]
    env = {k: os.environ[k] for k in (
        'MASTER_ADDR', 'MASTER_PORT', 'RANK', 'LOCAL_RANK', 'WORLD_SIZE')}
    assert env == dict(MASTER_ADDR='gpu3', MASTER_PORT='20077', RANK='5',
                       LOCAL_RANK='1', WORLD_SIZE='8')


def test_device_cpu_hides_the_gpu_from_mmengine(monkeypatch):
    from mmengine.device import utils as device_utils
    monkeypatch.setattr(device_utils, 'DEVICE', 'cuda')
    with compat.mmengine_device('cpu'):
        assert get_device() == 'cpu'
    assert get_device() == 'cuda'


def test_nvidia_smi_is_asked_for_the_driver_only(monkeypatch):
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return SimpleNamespace(returncode=0, stdout='570.86.10\n')

    monkeypatch.setattr(device.shutil, 'which', lambda name: '/bin/' + name)
    monkeypatch.setattr(device.subprocess, 'run', run)
    assert device.driver_version() == '570.86.10'
    assert calls == [['nvidia-smi', '--query-gpu=driver_version',
                      '--format=csv,noheader']]
