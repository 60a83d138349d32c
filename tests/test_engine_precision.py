"""engine/runner/precision.py: what ``--amp`` builds (bf16 without a loss
scaler, fp16 with one only when asked) and the autocast that training and
extraction share. CUDA and its bf16 support are mocked where a GPU is
needed."""
import pytest
import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope

from xdc_plugin.engine.launch import launch
from xdc_plugin.engine.runner.precision import (Bf16OptimWrapper,
                                                PrecisionError, autocast_dtype,
                                                check_amp,
                                                optim_wrapper_config)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A visible GPU; ``fake_gpu(bf16=False)`` makes it a pre-Ampere one."""
    def install(bf16=True):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
        monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
        monkeypatch.setattr(torch.cuda, 'get_device_name',
                            lambda *a: 'Fake GPU')
        monkeypatch.setattr(torch.cuda, 'get_device_capability',
                            lambda *a: (8, 0) if bf16 else (7, 0))
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported',
                            lambda including_emulation=True: bf16)
    return install


def run_config(*argv):
    return launch.prepare_config(launch.parse_args(list(argv)))


def test_amp_is_bf16_autocast_without_a_loss_scaler(fake_gpu):
    fake_gpu()
    cfg = run_config('--amp', 'train_cfg.max_epochs=1')
    assert cfg.device == 'cuda'
    assert cfg.train_cfg.max_epochs == 1  # the override is not --amp's value
    assert cfg.optim_wrapper.type == 'xdc.Bf16OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    init_default_scope('xdc')
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper) is Bf16OptimWrapper
    assert not hasattr(wrapper, 'loss_scaler')
    assert autocast_dtype(wrapper) == torch.bfloat16


# mmengine 0.10.7 builds torch.cuda.amp.GradScaler, deprecated in torch.
@pytest.mark.filterwarnings('ignore::FutureWarning')
def test_amp_fp16_is_fp16_autocast_with_a_dynamic_scaler(fake_gpu):
    fake_gpu()
    cfg = run_config('--amp', 'fp16')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert (cfg.optim_wrapper.dtype, cfg.optim_wrapper.loss_scale) == (
        'float16', 'dynamic')
    init_default_scope('xdc')
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper) is AmpOptimWrapper
    assert type(wrapper.loss_scaler).__name__ == 'GradScaler'
    assert autocast_dtype(wrapper) == torch.float16


def test_no_amp_keeps_the_configs_wrapper(fake_gpu):
    fake_gpu()
    cfg = run_config()
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    assert autocast_dtype(wrapper) is None and type(wrapper) is OptimWrapper


def test_a_gpu_without_bf16_is_told_to_use_fp16(fake_gpu):
    fake_gpu(bf16=False)
    with pytest.raises(PrecisionError, match=r'Fake GPU has no native '
                       r'bf16 .*7\.0.*--amp fp16'):
        run_config('--amp')
    check_amp('fp16', 'cuda')  # fine there


def test_fp16_needs_cuda():
    with pytest.raises(PrecisionError, match='--amp fp16 needs CUDA'):
        run_config('--device', 'cpu', '--amp', 'fp16')
    check_amp('bf16', 'cpu')  # CPU autocast runs bf16


def test_unknown_amp_is_refused():
    with pytest.raises(PrecisionError, match="got 'fp8'"):
        optim_wrapper_config({'type': 'OptimWrapper'}, 'fp8')


def test_bf16_step_trains_in_bf16_and_keeps_fp32_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 1), torch.nn.Flatten())
    wrapper = Bf16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = model[0].weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(4, 2, 5))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    assert model[0].weight.dtype == torch.float32
    assert not torch.equal(model[0].weight, before)
    assert 'loss_scaler' not in wrapper.state_dict()
