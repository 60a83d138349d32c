"""The host fixes in xdc_plugin.compat, each against the breakage it fixes,
and a host that imports us through ``custom_imports`` left unchanged."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from xdc_plugin import compat


def test_pytorchvideo_transforms_import_after_the_alias():
    compat.alias_torchvision_functional_tensor()
    from pytorchvideo.transforms import ShortSideScale
    clip = torch.rand(3, 2, 20, 40)
    assert ShortSideScale(10)(clip).shape == (3, 2, 10, 20)


def test_package_utils_work_without_pkg_resources_within_the_block():
    from mmengine.config import config as mm_config
    original = mm_config.is_installed
    with compat.package_utils_without_pkg_resources():
        assert mm_config.is_installed('mmaction2')
        assert not mm_config.is_installed('surely-not-an-installed-package')
        assert os.path.isfile(os.path.join(
            mm_config.get_installed_path('mmaction2'), '__init__.py'))
    assert mm_config.is_installed is original


def test_mmaction_models_import_and_drn_explains_itself():
    compat.install_missing_mmaction_drn()
    import mmaction.models  # noqa: F401
    from mmaction.models.localizers.drn.drn import DRN
    from mmaction.registry import MODELS
    assert MODELS.get('Recognizer3D') is not None
    with pytest.raises(ImportError, match='mmaction2#2714'):
        DRN()


def test_mmengine_work_dir_writes_replace_links_within_the_block(tmp_path):
    """What mmengine writes with a plain open (last_checkpoint, the config
    dump, LocalBackend puts) replaces a planted link within the block and
    leaves its target; outside it, mmengine's modules are as they were."""
    from mmengine.config import Config
    from mmengine.fileio import LocalBackend
    from mmengine.hooks import checkpoint_hook

    def last_checkpoint(path):  # CheckpointHook's own write
        with checkpoint_hook.open(path, 'w') as f:
            f.write('epoch_1.pth')

    writers = {'cfg.py': lambda p: Config(dict(a=1)).dump(p),
               'cfg.yaml': lambda p: Config(dict(a=1)).dump(p),
               'put.bin': lambda p: LocalBackend().put(b'x', p),
               'last_checkpoint': last_checkpoint}
    target = tmp_path / 'precious'
    target.write_text('keep me')
    for name in writers:
        (tmp_path / name).symlink_to(target)
    with compat.work_dir_writes_replace_links():
        for name, write in writers.items():
            write(str(tmp_path / name))
            assert not (tmp_path / name).is_symlink(), name
        with open(tmp_path / 'last_checkpoint') as f:  # reads as usual
            assert f.read() == 'epoch_1.pth'
        # A block that fails leaves the file as it was.
        with pytest.raises(RuntimeError):
            with checkpoint_hook.open(tmp_path / 'last_checkpoint', 'w') \
                    as f:
                f.write('half')
                raise RuntimeError
    assert target.read_text() == 'keep me'
    assert (tmp_path / 'last_checkpoint').read_text() == 'epoch_1.pth'
    assert (tmp_path / 'cfg.yaml').read_text() == 'a: 1\n'
    for module in ('mmengine.hooks.checkpoint_hook', 'mmengine.config.config',
                   'mmengine.fileio.backends.local_backend'):
        assert 'open' not in vars(sys.modules[module]), module


def test_torch_load_default_is_scoped(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'ckpt.pth'
    buffer = HistoryBuffer()
    buffer.update(1.0)
    buffer.update(2.0)
    torch.save({'buffer': buffer}, path)
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path)  # torch >= 2.6 refuses by default
    with compat.torch_load_default(weights_only=False):
        assert torch.load(path)['buffer'].mean() == 1.5
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_pytorch_launcher_initialises_gloo_on_cpu():
    """mmengine's launcher would call torch.cuda.set_device first."""
    env = dict(os.environ, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()),
               CUDA_VISIBLE_DEVICES='')
    code = ('import torch.distributed as d\n'
            'from xdc_plugin import compat\n'
            "compat.init_dist_pytorch(backend='gloo')\n"
            'print(d.get_backend(), d.get_world_size())\n')
    out = subprocess.run([sys.executable, '-c', code], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('gloo 1')


# A plain mmengine run that loads us through custom_imports: every host
# function we ever fixed is the same object afterwards, no module the host
# already had is replaced, none is provided by us under another name, and
# the only import hook added is the finder for mmaction2's missing DRN.
HOST_RUN = textwrap.dedent('''
    import sys
    import torch
    from mmengine.config import Config
    from mmengine.config import config as mm_config
    from mmengine.dist import utils as dist_utils
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.model import BaseModel
    from mmengine.registry import DATASETS, MODELS
    from mmengine.runner import Runner

    def snapshot():
        return dict(put=LocalBackend.put, put_text=LocalBackend.put_text,
                    resume=Runner.resume,
                    load_checkpoint=Runner.load_checkpoint,
                    torch_load=torch.load,
                    launcher=dist_utils._init_dist_pytorch,
                    is_installed=mm_config.is_installed,
                    get_installed_path=mm_config.get_installed_path)

    @MODELS.register_module()
    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 1)
        def forward(self, inputs, mode='loss'):
            return dict(loss=self.fc(torch.stack(inputs)).pow(2).mean())

    @DATASETS.register_module()
    class TinySet(torch.utils.data.Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            return dict(inputs=torch.tensor([float(i), 1.0]))

    before, modules = snapshot(), dict(sys.modules)
    meta_path = list(sys.meta_path)
    cfg = Config.fromfile(sys.argv[1])
    assert 'xdc_plugin' in sys.modules
    runner = Runner.from_cfg(cfg)
    runner.train()
    runner.resume(sys.argv[2] + '/epoch_1.pth')  # mmengine's own resume
    assert snapshot() == before, [k for k, v in snapshot().items()
                                  if before[k] is not v]
    replaced = [k for k in modules if sys.modules.get(k) is not modules[k]]
    assert not replaced, replaced
    # Nothing provided under another package's name (what compat used to
    # inject at import: an alias and a stub).
    stubs = [name for name, module in sys.modules.items()
             if type(getattr(getattr(module, '__spec__', None), 'loader',
                             None)).__module__ == 'xdc_plugin.compat']
    assert not stubs, stubs
    for name in ('torchvision.transforms.functional_tensor',
                 'mmaction.models.localizers.drn'):
        assert name not in sys.modules, name
    added = [f for f in sys.meta_path if f not in meta_path]
    assert [type(f).__name__ for f in added] == ['_MissingDRNFinder'], added
    print('host unchanged')
''')

HOST_CONFIG = textwrap.dedent('''
    custom_imports = dict(imports=['xdc_plugin'], allow_failed_imports=False)
    model = dict(type='Tiny')
    work_dir = '{work_dir}'
    train_dataloader = dict(
        dataset=dict(type='TinySet'),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2, num_workers=0)
    train_cfg = dict(by_epoch=True, max_epochs=1)
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
    default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1))
''')


def test_custom_imports_change_nothing_of_the_host(tmp_path):
    config = tmp_path / 'host_config.py'
    config.write_text(HOST_CONFIG.format(work_dir=tmp_path / 'work'))
    # mmengine's own resume needs a full unpickle on torch >= 2.6: the host
    # opts in, as it would without us.
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    out = subprocess.run(
        [sys.executable, '-c', HOST_RUN, str(config), str(tmp_path / 'work')],
        capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('host unchanged')


def test_the_logger_names_the_one_visible_device(monkeypatch):
    """A task that sees one GPU with local rank 3: mmengine's logger would
    index CUDA_VISIBLE_DEVICES by the local rank."""
    from mmengine.logging import logger
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '5')
    monkeypatch.setenv('LOCAL_RANK', '3')
    with pytest.raises(IndexError):
        logger._get_device_id()
    with compat.mmengine_logger_device_id(lambda: 0):
        assert logger._get_device_id() == 5
        logger.MMLogger('one_device_task', logger_name='one_device_task')
    with pytest.raises(IndexError):
        logger._get_device_id()
