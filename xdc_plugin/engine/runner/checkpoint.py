"""Our mmengine training checkpoints (not the torch-only weights package: a
full checkpoint holds mmengine objects): written so that they read back
with ``weights_only=True``, read without running code from the file (for
``--resume`` and for ``tools/export_encoder.py``), and the one ``--resume``
continues from chosen by ``last_checkpoint`` and the checkpoints' own
epoch/iteration, never by file times.

``torch.load(weights_only=True)`` admits tensors and plain containers, plus
the globals of an allow-list. An mmengine checkpoint also holds numpy
scalars (``message_hub`` runtime info) and mmengine ``HistoryBuffer``\\ s,
whose pickle carries their statistics *functions* (through
``builtins.getattr``), which no allow-list should admit. So
:class:`WeightsOnlyCheckpointHook` stores the buffers as tensors and
rebuilds them on load, and numpy's scalar and array types are the whole
allow-list. A file that needs more is refused, with a message naming what
it holds; ``--trust-checkpoint`` is the only way to unpickle it fully.
"""
import contextlib
import glob
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner

from xdc_plugin.compat import torch_load_default
from xdc_plugin.registry import HOOKS
from xdc_plugin.weights import IncompatibleWeightsError

_multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray
# numpy arrays and scalars of the numeric dtypes (each dtype has its class).
CHECKPOINT_GLOBALS = [np.ndarray, np.dtype, _multiarray._reconstruct,
                      _multiarray.scalar] + sorted(
    {type(np.dtype(code)) for code in np.typecodes['All'] if code not in 'OV'},
    key=lambda cls: cls.__name__)
RESUMABLE_NAME = re.compile(r'(epoch|iter)_\d+\.pth$')
LAST_CHECKPOINT = 'last_checkpoint'
_PLAIN_SCALARS = 'xdc_log_scalars'


class UntrustedCheckpointError(ValueError):
    """A checkpoint holds objects that only a full unpickle can read."""


@contextlib.contextmanager
def reading_checkpoint(path: str, trusted: bool = False) -> Iterator[None]:
    """Within this block mmengine reads checkpoints with
    ``weights_only=True`` and :data:`CHECKPOINT_GLOBALS`, or fully unpickled
    when ``trusted``; a refused file raises
    :class:`UntrustedCheckpointError`."""
    if trusted:
        with torch_load_default(weights_only=False):
            yield
        return
    try:
        with torch_load_default(weights_only=True), \
                torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            yield
    except pickle.UnpicklingError:
        refuse_untrusted(path)
        raise


def refuse_untrusted(path: str) -> None:
    """Raise :class:`UntrustedCheckpointError` if ``path`` holds globals
    outside :data:`CHECKPOINT_GLOBALS` (reads its pickle, runs nothing)."""
    allowed = {f'{g.__module__}.{g.__name__}' for g in CHECKPOINT_GLOBALS}
    unsafe = sorted(set(
        torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed)
    if unsafe:
        raise UntrustedCheckpointError(
            f'{path} holds objects outside the checkpoint allow-list '
            f'({", ".join(unsafe)}); reading them would run code from the '
            'file. If you made this checkpoint yourself, pass '
            '--trust-checkpoint to unpickle it fully.')


def read_training_checkpoint(path: str,
                             trusted: bool = False) -> Dict[str, Any]:
    """One of our checkpoints (``state_dict``, ``meta``, ...), read as
    :func:`reading_checkpoint` does."""
    with reading_checkpoint(path, trusted):
        checkpoint = torch.load(path, map_location='cpu')
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise IncompatibleWeightsError(
            f'{path} is not an mmengine checkpoint (no "state_dict")')
    return checkpoint


def load_training_checkpoint(path: str,
                             trusted: bool = False) -> Dict[str, torch.Tensor]:
    """The model state dict of :func:`read_training_checkpoint`."""
    return read_training_checkpoint(path, trusted)['state_dict']


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not an intact checkpoint (truncated, corrupt), or
    None. Checks the zip container and its CRCs; unpickles nothing."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        return f'unreadable: {exc}'
    if bad is not None:
        return f'corrupt: member {bad} fails its CRC check'
    if not any(name.endswith('/data.pkl') for name in names):
        return 'not a torch checkpoint (no data.pkl)'
    return None


def checkpoint_position(path: str,
                        trusted: bool = False) -> Optional[Tuple[int, int]]:
    """``(epoch, iteration)`` from the ``meta`` of the checkpoint at ``path``
    (read as :func:`reading_checkpoint` does, tensors memory-mapped, not
    read), or None when its meta has no such numbers."""
    with reading_checkpoint(path, trusted):
        checkpoint = torch.load(path, map_location='cpu', mmap=True)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    try:
        return int(meta['epoch']), int(meta['iter'])
    except (KeyError, TypeError, ValueError):
        return None


def _named_by_last_checkpoint(work_dir):
    """``(path in work_dir or None, note or None)``: the checkpoint that
    ``work_dir/last_checkpoint`` names, looked up by its file name in
    ``work_dir`` (a copied work dir's file names the original's path)."""
    try:
        with open(osp.join(work_dir, LAST_CHECKPOINT)) as f:
            recorded = f.read(4096).strip()
    except (OSError, UnicodeDecodeError):
        return None, None
    name = osp.basename(recorded)
    if not name:
        return None, f'{LAST_CHECKPOINT} names no file ({recorded!r})'
    path = osp.join(work_dir, name)
    note = None
    # mmengine records the absolute path of the work dir it saved in.
    if osp.realpath(osp.dirname(osp.join(work_dir, recorded))) != \
            osp.realpath(work_dir):
        note = (f'{LAST_CHECKPOINT} names {recorded}, outside this work dir '
                f'(a copied work dir?): looking for {path}.')
    return path, note


def find_resume_checkpoint(
        work_dir: str, trusted: bool = False
) -> Tuple[Optional[str], str, List[str]]:
    """The checkpoint of ``work_dir`` that ``--resume`` continues from.

    The one ``last_checkpoint`` names (the record of the run's latest save)
    when it is intact; else the intact ``epoch_*.pth``/``iter_*.pth``
    furthest in training by its own ``meta`` (iteration, then epoch). File
    times are never used: a copy (``cp -r``) or a ``touch`` changes them.
    Metadata are read as :func:`reading_checkpoint` does with ``trusted``.

    Returns ``(path or None, reason, notes)``: ``reason`` says why ``path``
    was chosen; ``notes`` are the warnings to log (the damaged checkpoints
    passed over, a ``last_checkpoint`` naming a file elsewhere).
    """
    named, note = _named_by_last_checkpoint(work_dir)
    notes = [note] if note else []
    if named is None:
        why = f'no {LAST_CHECKPOINT} in the work dir'
    elif not osp.exists(named):
        why = (f'{LAST_CHECKPOINT} names {osp.basename(named)}, which is '
               'missing')
    else:
        problem = checkpoint_problem(named)
        position = None if problem else checkpoint_position(named, trusted)
        if position is not None:
            return named, (f'named by {LAST_CHECKPOINT} (epoch {position[0]}, '
                           f'iteration {position[1]})'), notes
        problem = problem or 'no epoch/iteration in its meta'
        notes.append(f'skipped {named} ({problem}).')
        why = (f'{LAST_CHECKPOINT} names {osp.basename(named)}, which is '
               'damaged')
    candidates = []
    for path in sorted(glob.glob(osp.join(work_dir, '*.pth'))):
        if path == named or not RESUMABLE_NAME.match(osp.basename(path)):
            continue
        problem = checkpoint_problem(path)
        position = None if problem else checkpoint_position(path, trusted)
        if position is None:
            problem = problem or 'no epoch/iteration in its meta'
            notes.append(f'skipped {path} ({problem}).')
            continue
        candidates.append((position[1], position[0], path))
    if not candidates:
        return None, why, notes
    iteration, epoch, path = max(candidates)
    why = (f'{why}; the intact checkpoint furthest in training by its own '
           f'metadata (epoch {epoch}, iteration {iteration})')
    return path, why, notes


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Saves the message hub's ``HistoryBuffer``\\ s as tensors, so that
    the checkpoint reads back with ``weights_only=True``, and rebuilds them
    when a checkpoint is loaded (before mmengine restores the hub)."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        hub = checkpoint.get('message_hub')
        if not hub or not hub.get('log_scalars'):
            return
        plain = {}
        for key, buffer in hub['log_scalars'].items():
            logs, counts = buffer.data
            plain[key] = dict(logs=torch.from_numpy(np.array(logs)),
                              counts=torch.from_numpy(np.array(counts)),
                              max_length=buffer.max_length)
        checkpoint['message_hub'] = dict(hub, log_scalars={})
        checkpoint[_PLAIN_SCALARS] = plain

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        plain = checkpoint.pop(_PLAIN_SCALARS, None)
        if plain is None or 'message_hub' not in checkpoint:
            return
        checkpoint['message_hub']['log_scalars'] = {
            key: HistoryBuffer(v['logs'].numpy(), v['counts'].numpy(),
                               v['max_length'])
            for key, v in plain.items()}


class SafeResumeRunner(Runner):
    """mmengine's ``Runner`` whose checkpoint loading (``resume``,
    ``load_from``) never unpickles code unless ``trust_checkpoint`` is set
    (by ``tools/run_net.py --trust-checkpoint``, never by a config), and
    whose checkpoints read back that way (it registers
    :class:`WeightsOnlyCheckpointHook` unless the config has)."""

    trust_checkpoint = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not any(isinstance(h, WeightsOnlyCheckpointHook)
                   for h in self.hooks):
            self.register_hook(WeightsOnlyCheckpointHook())

    def load_checkpoint(self, filename: str, *args, **kwargs) -> dict:
        with reading_checkpoint(filename, self.trust_checkpoint):
            return super().load_checkpoint(filename, *args, **kwargs)
