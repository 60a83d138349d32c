"""All glue for the host libraries' known breakages, in one place.

Nothing here runs at import, and nothing patches a host class or function
for good: each fix is called (or entered as a context) by the code that
needs it, and names the upstream issue it works around. ``import
xdc_plugin`` only adds an import finder that answers for one module the
mmaction2 1.2.0 wheel lacks (see :func:`install_missing_mmaction_drn`).
Swapping the host framework means revisiting only this module.

Imports only the standard library and torch at module level.
"""
import contextlib
import datetime
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import os.path as osp
import sys

import torch

# -- pytorchvideo's transforms (bench/ only) ---------------------------------
def alias_torchvision_functional_tensor():
    """pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor``,
    made private (``_functional_tensor``) in torchvision 0.15 and removed in
    0.17 (facebookresearch/pytorchvideo#258, #269). Call before importing
    pytorchvideo's transforms; the runtime imports only its models
    (``PytorchVideoHub``), which do not need it."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except ImportError:
        from torchvision.transforms import _functional_tensor
        sys.modules[name] = _functional_tensor


# -- mmengine registry scope --------------------------------------------------
def alias_scope_registry(scope, module):
    """Before every build under a default scope, mmengine imports
    ``<scope>.registry`` (``Registry.switch_scope_and_registry``) and, when
    the scope is not a package name (ours is ``xdc``, the package
    ``xdc_plugin``), warns "Failed to import `None.registry` make sure the
    registry.py exists in `None` package" (as users of open-mmlab's own
    plugins meet it: open-mmlab/mmselfsup#779), although it then finds the
    registry by scope. Registers ``module`` under that one name in
    ``sys.modules``, so the import finds it; nothing else is aliased."""
    sys.modules.setdefault(f'{scope}.registry', module)


# -- mmengine config loading --------------------------------------------------
def _module_name(package):
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return package
    top_level = dist.read_text('top_level.txt')
    return top_level.split()[0] if top_level else package.replace('-', '_')


def _is_installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def _get_installed_path(package: str) -> str:
    spec = importlib.util.find_spec(_module_name(package))
    if spec is None:
        raise importlib.metadata.PackageNotFoundError(package)
    if spec.origin is None:
        raise RuntimeError(f'{package} is a namespace package, which is '
                           'invalid for `get_installed_path`')
    return osp.dirname(spec.origin)


@contextlib.contextmanager
def package_utils_without_pkg_resources():
    """Within this block mmengine's config loader resolves ``pkg::path``
    bases (``mmaction::...``) without ``pkg_resources``.

    mmengine 0.10.7's ``is_installed``/``get_installed_path`` import
    ``pkg_resources``, removed from setuptools 82 (pypa/setuptools#5174; same
    breakage in open-mmlab/mmcv#3325). Same contract, on
    ``importlib.metadata``; the originals are back after the block.
    """
    from mmengine.config import config as mm_config
    saved = (mm_config.is_installed, mm_config.get_installed_path)
    mm_config.is_installed = _is_installed
    mm_config.get_installed_path = _get_installed_path
    try:
        yield
    finally:
        mm_config.is_installed, mm_config.get_installed_path = saved


@contextlib.contextmanager
def safe_yaml_configs():
    """Within this block mmengine reads YAML with PyYAML's safe loader.

    mmengine 0.10.7's ``YamlHandler`` defaults to ``yaml.Loader`` (or
    ``CLoader``), which builds any Python object a tag names: a recipe, a
    ``_base_`` or a config dumped by someone else that holds
    ``!!python/object/apply:os.system [...]`` runs a command when loaded
    (``mmengine/fileio/handlers/yaml_handler.py``; no upstream issue
    found). The handlers of ``.yaml``/``.yml`` load with ``SafeLoader``
    here (a Python tag is a ``yaml.constructor.ConstructorError``) but
    ``!!python/tuple``, plain data that mmaction2's configs need (its
    ``Resize`` takes a tuple scale only); the originals are back after the
    block.
    """
    import yaml
    from mmengine.fileio.handlers import YamlHandler, file_handlers

    class TupleSafeLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
        pass

    TupleSafeLoader.add_constructor(
        'tag:yaml.org,2002:python/tuple',
        lambda self, node: tuple(self.construct_sequence(node)))

    class SafeYamlHandler(YamlHandler):

        def load_from_fileobj(self, file, **kwargs):
            kwargs['Loader'] = TupleSafeLoader
            return yaml.load(file, **kwargs)

    formats = ('yaml', 'yml')
    saved = {fmt: file_handlers.get(fmt) for fmt in formats}
    file_handlers.update({fmt: SafeYamlHandler() for fmt in formats})
    try:
        yield
    finally:
        file_handlers.update(saved)


# -- mmengine distributed launcher and device -------------------------------
def init_dist_pytorch(backend='nccl', device_index=None, timeout=None,
                      **kwargs):
    """Initialise ``torch.distributed`` for the ``pytorch`` launcher on CUDA
    device ``device_index`` (None: the CPU, for gloo); ``timeout``: seconds
    (mmengine's ``dist_cfg`` convention) that any collective of the group
    may wait, None for torch's default.

    mmengine 0.10.7's ``pytorch`` launcher always calls
    ``torch.cuda.set_device(LOCAL_RANK)`` (``mmengine/dist/utils.py``), so it
    cannot run on a CPU-only machine, and where each task sees one device
    (SLURM's ``--gpus-per-task``) local rank 3 names a device that is not
    there. No upstream issue found (open-mmlab/mmengine#1017 is the nearest
    for the CPU; #973 made that device agree with the Runner's
    ``device_ids``). We select the device and initialise the process group
    ourselves; the Runner then finds it initialised and skips its own.
    """
    if device_index is not None:
        torch.cuda.set_device(device_index)
    if timeout is not None:  # torch takes a timedelta
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch.distributed.init_process_group(backend=backend, **kwargs)


@contextlib.contextmanager
def mmengine_device(device):
    """Within this block mmengine's ``get_device()`` answers ``device``
    ('cuda' or 'cpu').

    mmengine 0.10.7 fixes its device when it is imported
    (``mmengine/device/utils.py``: 'cuda' whenever CUDA is visible) and the
    Runner moves the model there (``Runner.wrap_model``, whose comment says
    to hide the GPUs with ``CUDA_VISIBLE_DEVICES=-1``, too late once torch
    has looked at CUDA); no upstream issue found. ``--device cpu`` on a
    machine with a GPU trains on the CPU through this; the original is back
    after the block.
    """
    from mmengine.device import utils as device_utils
    saved = device_utils.DEVICE
    device_utils.DEVICE = device
    try:
        yield
    finally:
        device_utils.DEVICE = saved


@contextlib.contextmanager
def mmengine_logger_device_id(device_index):
    """Within this block (or the function it decorates) mmengine's logger
    names the CUDA device this process uses: ``CUDA_VISIBLE_DEVICES`` at
    ``device_index()``, the index among the devices the process sees.

    mmengine 0.10.7's ``_get_device_id`` (``mmengine/logging/logger.py``),
    run whenever an ``MMLogger`` is made, indexes ``CUDA_VISIBLE_DEVICES``
    by ``LOCAL_RANK``: a task that sees one device (SLURM's
    ``--gpus-per-task``) with local rank 1 or more raises ``IndexError``
    before anything is logged. No upstream issue found
    (open-mmlab/mmengine#1148 is the nearest: MIG ids in the same
    function). The original is back after the block.
    """
    from mmengine.logging import logger
    original = logger._get_device_id

    def device_id():
        if not torch.cuda.is_available():
            return original()
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        ids = (visible.split(',') if visible else
               [str(i) for i in range(torch.cuda.device_count())])
        found = ids[device_index()]
        return int(found) if found.isdigit() else found

    logger._get_device_id = device_id
    try:
        yield
    finally:
        logger._get_device_id = original


def default_group_timeout():
    """How long a collective of the default process group may wait: the
    ``timeout`` it was initialised with (``env_cfg.dist_cfg.timeout``).

    ``torch.distributed.new_group`` gives a group its backend's default
    timeout, not the default group's, and torch has no public getter of a
    group's timeout, so it is read from the group's backend options (no
    upstream issue found; pytorch/pytorch#54524, on the store of a new
    group, is the nearest).
    """
    group = torch.distributed.distributed_c10d._get_default_group()
    return group._get_backend(group._device_types[0]).options._timeout


# -- mmengine writes to the work dir -----------------------------------------
class _ReplacingFile:
    """What ``_open_replacing`` returns for a write: the text or bytes
    written, written to the file with ``write_atomically`` on a clean
    close (a block that raises leaves the old file)."""

    def __init__(self, path, binary, encoding):
        self.path, self.binary, self.encoding = path, binary, encoding
        self.parts, self.closed = [], False

    def write(self, data):
        self.parts.append(data)
        return len(data)

    def close(self):
        if self.closed:
            return
        from xdc_plugin.atomic_write import write_atomically
        self.closed = True
        data = b''.join(self.parts) if self.binary else \
            ''.join(self.parts).encode(self.encoding)
        write_atomically(data, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        self.closed = True
        return False


def _open_replacing(file, mode='r', *args, **kwargs):
    """``open``, but a file opened to be written ('w', 'wb') is written by
    ``write_atomically`` when closed: a new file renamed over ``file``."""
    if mode not in ('w', 'wt', 'wb'):
        return open(file, mode, *args, **kwargs)
    return _ReplacingFile(os.fspath(file), 'b' in mode,
                          kwargs.get('encoding') or 'utf-8')


# The mmengine modules that write a work_dir's files with a plain open():
# ``last_checkpoint``, the config dump (``.py``) and every LocalBackend
# put (the config dump of a YAML config).
_WORK_DIR_WRITERS = ('mmengine.hooks.checkpoint_hook',
                     'mmengine.config.config',
                     'mmengine.fileio.backends.local_backend')


@contextlib.contextmanager
def work_dir_writes_replace_links():
    """Within this block mmengine writes ``work_dir/last_checkpoint``
    (``CheckpointHook``), the config dump (``Runner.dump_config``) and what
    its ``LocalBackend`` puts through ``xdc_plugin.atomic_write``: a new
    file renamed over the name.

    mmengine 0.10.7 writes them with ``open(path, 'w')``
    (``hooks/checkpoint_hook.py``, ``config/config.py``,
    ``fileio/backends/local_backend.py``; no upstream issue found), which
    follows a symbolic link planted at that name and overwrites the link's
    target. Here the link itself is replaced and its target left as it
    was. Only these modules' name ``open`` is shadowed (their reads go to
    the builtin ``open``); it is gone after the block.
    """
    modules = [importlib.import_module(name) for name in _WORK_DIR_WRITERS]
    saved = [vars(module).get('open') for module in modules]
    for module in modules:
        module.open = _open_replacing
    try:
        yield
    finally:
        for module, previous in zip(modules, saved):
            if previous is None:
                del module.open
            else:
                module.open = previous


# -- torch.load in mmengine ---------------------------------------------------
@contextlib.contextmanager
def torch_load_default(weights_only):
    """Within this block ``torch.load`` defaults to ``weights_only``.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so what it
    unpickles depends on torch's default (``True`` since torch 2.6; resuming
    then fails with ``Unsupported global ... HistoryBuffer``,
    open-mmlab/mmengine#1655, PR #1650). Our resume path states it: ``True``
    with an allow-list (``engine/runner/checkpoint.py``), or ``False`` only
    when the user vouches for the file (``--trust-checkpoint``).
    """
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        kwargs.setdefault('weights_only', weights_only)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


# -- mmaction2 1.2.0 wheel ----------------------------------------------------
_DRN = 'mmaction.models.localizers.drn'


class _MissingDRNFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Provides ``mmaction.models.localizers.drn`` only when the installed
    mmaction2 lacks it: it sits last on ``sys.meta_path``, so a real module
    is always found first."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in (_DRN, _DRN + '.drn'):
            return None
        return importlib.machinery.ModuleSpec(
            fullname, self, is_package=fullname == _DRN)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == _DRN:
            module.__path__ = []
        else:
            module.DRN = _UnavailableDRN


class _UnavailableDRN:

    def __init__(self, *args, **kwargs):
        raise ImportError('DRN is missing from the mmaction2 1.2.0 wheel '
                          '(open-mmlab/mmaction2#2714); install mmaction2 '
                          'from source to use it.')


def install_missing_mmaction_drn():
    """The mmaction2 1.2.0 wheel lacks ``mmaction/models/localizers/drn`` so
    ``import mmaction.models`` fails (open-mmlab/mmaction2#2714), also when
    mmengine imports it for an mmaction2 config that loads us through
    ``custom_imports``. We answer for that one module, with a DRN that
    explains itself when used; nothing is imported or changed until the
    host imports ``mmaction.models``, and never if the module exists."""
    if not any(isinstance(f, _MissingDRNFinder) for f in sys.meta_path):
        sys.meta_path.append(_MissingDRNFinder())


__all__ = [
    'alias_torchvision_functional_tensor',
    'package_utils_without_pkg_resources', 'safe_yaml_configs',
    'init_dist_pytorch', 'mmengine_device', 'mmengine_logger_device_id',
    'work_dir_writes_replace_links',
    'torch_load_default', 'install_missing_mmaction_drn'
]
