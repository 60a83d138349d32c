"""All glue for the host libraries' known breakages, in one place.

Each fix names the upstream issue it works around and is applied once, at
``import xdc_plugin``. Swapping the host framework means revisiting only this
module. Nothing else in the package patches a third-party library.
"""
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import os.path as osp
import sys
import types

import torch

_APPLIED = False


def _alias_torchvision_functional_tensor():
    """pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor``,
    made private (``_functional_tensor``) in torchvision 0.15 and removed in
    0.17 (facebookresearch/pytorchvideo#258, #269)."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except ImportError:
        from torchvision.transforms import _functional_tensor
        sys.modules[name] = _functional_tensor


def _package_utils_without_pkg_resources():
    """mmengine 0.10.7 ``is_installed``/``get_installed_path`` import
    ``pkg_resources``, removed from setuptools 82 (pypa/setuptools#5174;
    same breakage in open-mmlab/mmcv#3325). Re-implemented on
    ``importlib.metadata`` with the same contract."""
    from mmengine.config import config as mm_config
    from mmengine.utils import package_utils

    def _module_name(package):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            return package
        top_level = dist.read_text('top_level.txt')
        return top_level.split()[0] if top_level else package.replace('-', '_')

    def is_installed(package: str) -> bool:
        try:
            importlib.metadata.distribution(package)
            return True
        except importlib.metadata.PackageNotFoundError:
            spec = importlib.util.find_spec(package)
            return spec is not None and spec.origin is not None

    def get_installed_path(package: str) -> str:
        spec = importlib.util.find_spec(_module_name(package))
        if spec is None:
            raise importlib.metadata.PackageNotFoundError(package)
        if spec.origin is None:
            raise RuntimeError(f'{package} is a namespace package, which is '
                               'invalid for `get_installed_path`')
        return osp.dirname(spec.origin)

    for module in (package_utils, mm_config):
        module.is_installed = is_installed
        module.get_installed_path = get_installed_path
    import mmengine.utils
    mmengine.utils.is_installed = is_installed
    mmengine.utils.get_installed_path = get_installed_path


def _init_dist_pytorch_on_cpu():
    """mmengine 0.10.7's ``pytorch`` launcher always calls
    ``torch.cuda.set_device`` (``mmengine/dist/utils.py``; no upstream issue
    found, open-mmlab/mmengine#1017 is the nearest). With the gloo backend
    and no GPU we initialise the process group directly."""
    from mmengine.dist import utils as dist_utils
    original = dist_utils._init_dist_pytorch

    @functools.wraps(original)
    def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if backend == 'gloo' and not torch.cuda.is_available():
            torch.distributed.init_process_group(backend='gloo', **kwargs)
            return
        original(backend, init_backend=init_backend, **kwargs)

    dist_utils._init_dist_pytorch = _init_dist_pytorch


def _atomic_local_writes():
    """mmengine's ``LocalBackend.put``/``put_text`` write in place, so a run
    killed while saving leaves a truncated checkpoint under its final name.
    We write to a temporary file in the same folder and ``os.replace`` it."""
    from mmengine.fileio.backends.local_backend import LocalBackend

    from xdc_plugin.atomic_write import write_atomically

    def put(self, obj, filepath):
        write_atomically(obj, filepath)

    def put_text(self, obj, filepath, encoding='utf-8'):
        write_atomically(obj.encode(encoding), filepath)

    LocalBackend.put = put
    LocalBackend.put_text = put_text


@contextlib.contextmanager
def trusted_torch_load():
    """Within this block ``torch.load`` defaults to ``weights_only=False``.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since
    torch 2.6 the default is ``True`` and resuming fails with ``Unsupported
    global ... HistoryBuffer`` (open-mmlab/mmengine#1655, PR #1650). Only our
    own run checkpoints are loaded this way (see ``_resume_trusts_own_
    checkpoints``); downloaded weights always go through ``weights_only=True``.
    """
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def _resume_trusts_own_checkpoints():
    from mmengine.runner import Runner
    original = Runner.resume

    @functools.wraps(original)
    def resume(self, filename, *args, **kwargs):
        with trusted_torch_load():
            return original(self, filename, *args, **kwargs)

    Runner.resume = resume


def _mmaction_missing_drn():
    """The mmaction2 1.2.0 wheel lacks ``mmaction/models/localizers/drn`` so
    ``import mmaction.models`` fails (open-mmlab/mmaction2#2714). We provide
    the missing module with a DRN that explains itself when used; every other
    mmaction2 model imports and registers as usual."""
    name = 'mmaction.models.localizers.drn'
    spec = importlib.util.find_spec('mmaction')  # does not import mmaction
    if spec is None or name in sys.modules:
        return
    root = spec.submodule_search_locations[0]
    if osp.isdir(osp.join(root, 'models', 'localizers', 'drn')):
        return

    class DRN:
        def __init__(self, *args, **kwargs):
            raise ImportError('DRN is missing from the mmaction2 1.2.0 wheel '
                              '(open-mmlab/mmaction2#2714); install mmaction2 '
                              'from source to use it.')

    package = types.ModuleType(name)
    package.__path__ = []
    module = types.ModuleType(name + '.drn')
    module.DRN = DRN
    package.drn = module
    sys.modules[name] = package
    sys.modules[name + '.drn'] = module


def apply():
    """Apply every fix once; safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    _alias_torchvision_functional_tensor()
    _package_utils_without_pkg_resources()
    _init_dist_pytorch_on_cpu()
    _atomic_local_writes()
    _resume_trusts_own_checkpoints()
    _mmaction_missing_drn()
    _APPLIED = True
