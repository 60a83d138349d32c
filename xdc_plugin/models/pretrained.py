"""The released XDC video weights: table, download, strict loading, Caffe2
conversion, hash-named export and the ``xdc://`` checkpoint scheme.

Everything about the official release (github.com/HumamAlwassel/XDC, release
``model_weights``) lives in :data:`PRETRAINED_CFGS`, one
:class:`PretrainedCfg` per model. The release ships only R(2+1)D-18 video
encoders, in the key layout of torchvision's ``VideoResNet`` without ``fc``;
:class:`~xdc_plugin.models.video_resnet.R2Plus1D18` has exactly that layout.

Loading is strict where the official loader is not: the official
``xdc_video_encoder`` calls ``load_state_dict(strict=False)``, which loads
nothing and says nothing when a key is renamed. Here the only keys a file may
lack are the classifier's (``fc.weight``/``fc.bias``) and BatchNorm's
``num_batches_tracked`` counters; anything unexpected, missing or of the
wrong shape raises :class:`IncompatibleWeightsError` naming the keys.
Downloaded or cached files are always read with ``torch.load(...,
weights_only=True)``.
"""
import dataclasses
import hashlib
import io
import os
import os.path as osp
import pickle
import re
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
import torch
from mmengine import fileio
from torch import nn

from xdc_plugin.models.video_resnet import Conv2Plus1D, R2Plus1D18

BASE_URL = ('https://github.com/HumamAlwassel/XDC/releases/download/'
            'model_weights/')
DEFAULT_PRETRAINING = 'r2plus1d_18_xdc_ig65m_kinetics'
XDC_SCHEME = 'xdc://'
#: Environment variable: when set to 1/true/yes nothing is downloaded; the
#: weights must already be in the cache (or be given as a local file).
OFFLINE_ENV = 'XDC_OFFLINE'
#: Environment variable overriding :data:`BASE_URL` (a mirror, a ``file://``
#: folder laid out like the release).
BASE_URL_ENV = 'XDC_WEIGHTS_BASE_URL'
FC_KEYS = ('fc.weight', 'fc.bias')
# torch.hub's convention: ``<name>-<first hex digits of sha256>.<ext>``.
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.(?:pth|pt|pkl)$')


class IncompatibleWeightsError(ValueError):
    """A state dict or a weights file does not fit the model it is for."""


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """One released model. Accuracies are the release README's: top-1
    video-level, full fine-tuning, mean over the three splits."""
    name: str
    pretrained_on: str
    ucf101: float
    hmdb51: float
    pth_hash: str
    pkl_hash: str

    @property
    def file_name(self) -> str:
        return f'{self.name}-{self.pth_hash}.pth'

    @property
    def pkl_file_name(self) -> str:
        return f'{self.name}-{self.pkl_hash}.pkl'

    def url(self, base_url: Optional[str] = None) -> str:
        return _join_url(base_url or _base_url(), self.file_name)

    def pkl_url(self, base_url: Optional[str] = None) -> str:
        return _join_url(base_url or _base_url(), self.pkl_file_name)


PRETRAINED_CFGS: Dict[str, PretrainedCfg] = {cfg.name: cfg for cfg in (
    PretrainedCfg('r2plus1d_18_xdc_ig65m_kinetics', 'XDC on IG-Kinetics',
                  95.5, 68.9, 'f24f6ffb', '3ece601e'),
    PretrainedCfg('r2plus1d_18_xdc_ig65m_random', 'XDC on IG-Random',
                  94.6, 66.5, '189d23f4', 'dcd2dc42'),
    PretrainedCfg('r2plus1d_18_xdc_audioset', 'XDC on AudioSet',
                  93.0, 63.7, 'f29ffe8f', '6508c8a5'),
    PretrainedCfg('r2plus1d_18_fs_kinetics', 'fully-supervised Kinetics',
                  94.2, 65.1, '622bdad9', '1b1f26af'),
    PretrainedCfg('r2plus1d_18_fs_imagenet', 'fully-supervised ImageNet',
                  84.0, 48.1, 'ff446670', '0ee8b845'),
)}


def _base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or BASE_URL


def _join_url(base: str, file_name: str) -> str:
    return base.rstrip('/') + '/' + file_name


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    if name.startswith(XDC_SCHEME):
        name = name[len(XDC_SCHEME):]
    try:
        return PRETRAINED_CFGS[name]
    except KeyError:
        raise KeyError(f'Unknown XDC pretraining {name!r}; choose one of '
                       f'{sorted(PRETRAINED_CFGS)}') from None


def list_pretrained() -> str:
    """The release table as text (``tools/download_weights.py --list``)."""
    header = ('name', 'pretrained on', 'UCF101', 'HMDB51', 'PyTorch file',
              'Caffe2 file')
    rows = [header] + [
        (c.name, c.pretrained_on, f'{c.ucf101:.1f}', f'{c.hmdb51:.1f}',
         c.file_name, c.pkl_file_name) for c in PRETRAINED_CFGS.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ['  '.join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
             for r in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines += ['', f'default: {DEFAULT_PRETRAINING}',
              f'base URL: {_base_url()}',
              'UCF101/HMDB51: top-1 after full fine-tuning, mean of 3 splits '
              '(release README).']
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# Files: hashes, cache, download
# --------------------------------------------------------------------------
def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def hash_prefix_in_name(path: str) -> Optional[str]:
    """The sha256 prefix of a ``<name>-<hex>.pth`` file name, else None."""
    match = _HASH_IN_NAME.search(osp.basename(path))
    return match.group(1) if match else None


def check_file_hash(path: str, expected: Optional[str] = None) -> None:
    """Refuse a file whose sha256 does not start with ``expected`` (by
    default the prefix in its name; no prefix in the name, no check)."""
    expected = expected or hash_prefix_in_name(path)
    if not expected:
        return
    digest = sha256_of(path)
    if not digest.startswith(expected):
        raise IncompatibleWeightsError(
            f'{path}: sha256 {digest} does not start with {expected!r} '
            '(the hash prefix its name promises). The file is corrupt, '
            'truncated or not the released one; delete it and download '
            'again.')


def _offline(offline: Optional[bool]) -> bool:
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, '').lower() in ('1', 'true', 'yes')


def default_model_dir() -> str:
    """torch.hub's cache folder for weights: ``<hub_dir>/checkpoints``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def download_pretrained(pretraining: str = DEFAULT_PRETRAINING, *,
                        model_dir: Optional[str] = None,
                        base_url: Optional[str] = None,
                        progress: bool = True,
                        offline: Optional[bool] = None,
                        caffe2: bool = False) -> str:
    """Path of the released ``.pth`` (``caffe2=True``: the Caffe2 ``.pkl``)
    in the cache, downloading it if needed.

    The cache is torch.hub's (``model_dir`` defaults to
    ``torch.hub.get_dir()/checkpoints``, so ``TORCH_HOME`` moves it) and the
    file keeps its release name. A cached file is checked against the hash
    prefix of its name and used without any network access. With
    ``offline=True`` (or ``XDC_OFFLINE=1``) a missing file is an error
    instead of a download. Downloads go through
    ``torch.hub.download_url_to_file``, which checks the hash before moving
    the file into place.
    """
    cfg = get_pretrained_cfg(pretraining)
    if caffe2:
        file_name, file_hash = cfg.pkl_file_name, cfg.pkl_hash
        url = cfg.pkl_url(base_url)
    else:
        file_name, file_hash, url = cfg.file_name, cfg.pth_hash, cfg.url(
            base_url)
    model_dir = model_dir or default_model_dir()
    path = osp.join(model_dir, file_name)
    if osp.isfile(path):
        check_file_hash(path, file_hash)
        return path
    if _offline(offline):
        raise FileNotFoundError(
            f'XDC weights {cfg.name!r} are not in the cache ({path}) and '
            f'downloads are disabled ({OFFLINE_ENV} or offline=True). Put '
            f'{url} there, or pass weights=<local file>.')
    os.makedirs(model_dir, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, path, hash_prefix=file_hash,
                                       progress=progress)
    except RuntimeError as exc:
        if 'invalid hash value' in str(exc):
            raise IncompatibleWeightsError(
                f'{url}: {exc}; the download was discarded.') from exc
        raise
    return path


# --------------------------------------------------------------------------
# Strict loading
# --------------------------------------------------------------------------
def _is_optional(key: str, allow_missing: Iterable[str]) -> bool:
    return key in allow_missing or key.endswith('.num_batches_tracked')


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     allow_missing: Iterable[str] = FC_KEYS,
                     source: str = 'state dict') -> None:
    """Raise :class:`IncompatibleWeightsError` unless ``state_dict`` fits
    ``model``: every model key present (except ``allow_missing`` and the
    ``num_batches_tracked`` counters), no unexpected key, identical shapes.
    ``allow_missing`` keys (the fc) must be absent: the release never has
    them and the classifier is always freshly initialised."""
    allow_missing = tuple(allow_missing)
    expected = model.state_dict()
    bad_values = [k for k, v in state_dict.items()
                  if not isinstance(v, torch.Tensor)]
    unexpected = [k for k in state_dict
                  if k not in expected or k in allow_missing]
    missing = [k for k in expected
               if k not in state_dict and not _is_optional(k, allow_missing)]
    mismatched = [
        f'{k}: file {tuple(state_dict[k].shape)} vs model '
        f'{tuple(expected[k].shape)}'
        for k in state_dict
        if k in expected and k not in allow_missing
        and isinstance(state_dict[k], torch.Tensor)
        and state_dict[k].shape != expected[k].shape]
    problems = []
    if bad_values:
        problems.append(f'values that are not tensors: {bad_values}')
    if unexpected:
        problems.append(f'unexpected keys: {unexpected}')
    if missing:
        problems.append(f'missing keys: {missing}')
    if mismatched:
        problems.append('shape mismatches: ' + '; '.join(mismatched))
    if problems:
        hint = ''
        if any(k.startswith(('state_dict', 'module.', 'video_encoder.'))
               for k in unexpected):
            hint = (' This looks like a training checkpoint, not the '
                    'official layout; convert it with '
                    'tools/export_encoder.py.')
        raise IncompatibleWeightsError(
            f'{source} does not fit {type(model).__name__}: '
            + ' | '.join(problems) + '.' + hint)


def load_official_state_dict(model: nn.Module,
                             state_dict: Mapping[str, torch.Tensor],
                             allow_missing: Iterable[str] = FC_KEYS,
                             source: str = 'state dict') -> None:
    """Strictly checked ``model.load_state_dict`` (see
    :func:`check_state_dict`)."""
    check_state_dict(model, state_dict, allow_missing, source)
    result = model.load_state_dict(dict(state_dict), strict=False)
    left = [k for k in result.missing_keys
            if not _is_optional(k, allow_missing)]
    if left or result.unexpected_keys:  # pragma: no cover - defensive
        raise IncompatibleWeightsError(
            f'{source}: missing {left}, unexpected {result.unexpected_keys}')


def read_weights_file(path: str, check_hash: bool = True
                      ) -> Dict[str, torch.Tensor]:
    """Read a ``.pth`` in the official layout (a flat ``{key: tensor}``
    dict) with ``weights_only=True``; a ``-<hex>`` hash prefix in the file
    name is verified first."""
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'No weights file at {path} (and it is not a release name: '
            f'{sorted(PRETRAINED_CFGS)})')
    if check_hash:
        check_file_hash(path)
    state_dict = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise IncompatibleWeightsError(
            f'{path} holds a {type(state_dict).__name__}, not a state dict '
            '(the official layout is a flat {key: tensor} dict).')
    if 'state_dict' in state_dict:
        raise IncompatibleWeightsError(
            f'{path} is a training checkpoint ({{"state_dict": ...}}), not '
            'the official layout; run tools/export_encoder.py on it first.')
    return dict(state_dict)


def resolve_weights(source: str, *, model_dir: Optional[str] = None,
                    progress: bool = True,
                    offline: Optional[bool] = None) -> str:
    """A local path for ``source``: ``xdc://<name>``, a release ``<name>``
    (both via :func:`download_pretrained`), or a local file path."""
    source = str(source)
    name = source[len(XDC_SCHEME):] if source.startswith(XDC_SCHEME) else None
    if name is None and source in PRETRAINED_CFGS:
        name = source
    if name is not None:
        return download_pretrained(name, model_dir=model_dir,
                                   progress=progress, offline=offline)
    return osp.expanduser(source)


def load_pretrained_weights(model: nn.Module, source: str, *,
                            allow_missing: Iterable[str] = FC_KEYS,
                            model_dir: Optional[str] = None,
                            progress: bool = True,
                            offline: Optional[bool] = None) -> str:
    """Load ``source`` (see :func:`resolve_weights`) strictly into
    ``model``; returns the file used."""
    path = resolve_weights(source, model_dir=model_dir, progress=progress,
                           offline=offline)
    load_official_state_dict(model, read_weights_file(path), allow_missing,
                             source=path)
    return path


def reference_model(width: float = 1.0) -> R2Plus1D18:
    """An fc-less R2Plus1D18 on the meta device: keys and shapes only."""
    with torch.device('meta'):
        return R2Plus1D18(num_classes=0, width=width)


def _reset_fc(model: R2Plus1D18) -> None:
    if model.fc is not None:
        nn.init.normal_(model.fc.weight, 0, 0.01)
        nn.init.zeros_(model.fc.bias)


def xdc_video_encoder(pretraining: Optional[str] = DEFAULT_PRETRAINING,
                      num_classes: int = 400, progress: bool = True,
                      weights: Optional[str] = None, *,
                      bn_momentum: float = 0.1,
                      model_dir: Optional[str] = None,
                      offline: Optional[bool] = None,
                      **kwargs) -> R2Plus1D18:
    """R(2+1)D-18 with released XDC weights (all layers but the fc).

    Same name and defaults as the official hub entry point, with strict
    loading. The fc (``512 x num_classes``; ``num_classes=0`` gives no fc
    and 512-d pooled features) is freshly initialised: weight ~ N(0, 0.01),
    bias 0.

    Args:
        pretraining: a name of :data:`PRETRAINED_CFGS` (``tools/
            download_weights.py --list`` prints them), or None for no
            weights.
        num_classes: size of the new classifier.
        progress: show a download progress bar.
        weights: a local ``.pth`` in the official layout (or one written
            by ``tools/export_encoder.py`` / ``convert_caffe2_weights.py``)
            used instead of the release; a ``-<hex>`` hash prefix in its
            name is verified.
        bn_momentum: PyTorch BatchNorm momentum of the returned model.
            The release builds its model with ``momentum=0.9`` to copy
            Caffe2, but PyTorch's momentum is the weight of the *new* batch
            (Caffe2's is that of the running value), so 0.9 makes the
            running statistics follow the last batch almost entirely when
            fine-tuning. We default to PyTorch's 0.1 (the Caffe2 0.9
            semantic, up to the 0.9/0.1 swap); pass ``bn_momentum=0.9`` to
            reproduce the official object exactly. Eval-mode outputs do not
            depend on it.
        model_dir: weights cache (default ``torch.hub.get_dir()/
            checkpoints``).
        offline: never download (default: ``XDC_OFFLINE`` env variable).
        **kwargs: passed to :class:`R2Plus1D18` (e.g. ``dropout``).
    """
    model = R2Plus1D18(num_classes=num_classes, bn_momentum=bn_momentum,
                       **kwargs)
    if weights is not None:
        load_pretrained_weights(model, weights)
    elif pretraining is not None:
        load_pretrained_weights(model, XDC_SCHEME + pretraining,
                                model_dir=model_dir, progress=progress,
                                offline=offline)
    _reset_fc(model)
    return model


def load_from_xdc(filename: str, map_location=None, logger=None):
    """mmengine ``CheckpointLoader`` scheme for ``xdc://<name>``: the
    released file (cached download, hash-checked, ``weights_only=True``),
    checked key by key against the official layout."""
    path = resolve_weights(filename)
    state_dict = read_weights_file(path)
    check_state_dict(reference_model(), state_dict, source=path)
    if map_location not in (None, 'cpu'):
        state_dict = {k: v.to(map_location) for k, v in state_dict.items()}
    return state_dict


def register_xdc_scheme() -> None:
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=XDC_SCHEME,
                                     loader=load_from_xdc, force=True)


register_xdc_scheme()


# --------------------------------------------------------------------------
# Caffe2 (VMZ) release -> state dict
# --------------------------------------------------------------------------
_CONV_SUFFIX = {'weight': '_w'}
_BN_SUFFIX = {'weight': '_s', 'bias': '_b', 'running_mean': '_rm',
              'running_var': '_riv'}
#: Blobs of the Caffe2 files that are not encoder weights: the 400-way
#: classifier ``last_out_L<n>_{w,b}``, the ``pred`` output and SGD momentum
#: buffers ``*_momentum``.
CAFFE2_IGNORED = (r'^last_out_L\d+_[wb]$', r'^pred(_.*)?$', r'_momentum$')


def caffe2_name_table(model: Optional[R2Plus1D18] = None) -> Dict[str, str]:
    """``{our state-dict key: Caffe2 blob name}`` for every weight and
    BatchNorm statistic of ``model`` (default: the official R(2+1)D-18).

    Naming follows VMZ: the blocks are built by ``VideoModelBuilder``
    (``lib/models/builder/video_model.py``), whose ``comp_count`` counts
    residual blocks over the whole network (layer1.0 -> ``comp_0`` ...
    layer4.1 -> ``comp_7``) and whose ``comp_idx`` numbers the block's
    convolutions from 1; a (2+1)D conv is ``comp_<i>_conv_<j>_middle``
    (spatial) + ``comp_<i>_spatbn_<j>_middle`` + ``comp_<i>_conv_<j>``
    (temporal), followed by ``comp_<i>_spatbn_<j>``; a block's projection
    shortcut is ``shortcut_projection_<i>`` / ``..._spatbn`` with the same
    block index (so 2, 4, 6 here). The stem is ``conv1_middle``,
    ``conv1_middle_spatbn_relu``, ``conv1``, ``conv1_spatbn_relu``. VMZ's
    ``utilities/model_conversion/convert_models.py`` uses the same table.
    Conv weights end in ``_w``; BatchNorm ``_s`` (scale), ``_b``, ``_rm``,
    ``_riv`` (running variance, despite the name).
    """
    model = model if model is not None else reference_model()
    modules: Dict[str, Tuple[nn.Module, str]] = {}
    stem_names = {0: 'conv1_middle', 1: 'conv1_middle_spatbn_relu',
                  3: 'conv1', 4: 'conv1_spatbn_relu'}
    for index, blob in stem_names.items():
        modules[f'stem.{index}'] = (model.stem[index], blob)
    comp = 0
    for layer_index in range(1, 5):
        for block_index, block in enumerate(
                getattr(model, f'layer{layer_index}')):
            prefix = f'layer{layer_index}.{block_index}'
            for j, conv in ((1, block.conv1), (2, block.conv2)):
                separable = conv[0]
                if not isinstance(separable, Conv2Plus1D):
                    raise TypeError(f'{prefix}.conv{j}.0 is not (2+1)D')
                base = f'{prefix}.conv{j}'
                modules[f'{base}.0.0'] = (separable[0],
                                          f'comp_{comp}_conv_{j}_middle')
                modules[f'{base}.0.1'] = (separable[1],
                                          f'comp_{comp}_spatbn_{j}_middle')
                modules[f'{base}.0.3'] = (separable[3],
                                          f'comp_{comp}_conv_{j}')
                modules[f'{base}.1'] = (conv[1], f'comp_{comp}_spatbn_{j}')
            if block.downsample is not None:
                modules[f'{prefix}.downsample.0'] = (
                    block.downsample[0], f'shortcut_projection_{comp}')
                modules[f'{prefix}.downsample.1'] = (
                    block.downsample[1], f'shortcut_projection_{comp}_spatbn')
            comp += 1
    table = {}
    for prefix, (module, blob) in modules.items():
        if isinstance(module, nn.Conv3d):
            suffixes = _CONV_SUFFIX
        elif isinstance(module, nn.BatchNorm3d):
            suffixes = _BN_SUFFIX
        else:
            raise TypeError(f'{prefix}: unexpected {type(module).__name__}')
        for attr, suffix in suffixes.items():
            table[f'{prefix}.{attr}'] = blob + suffix
    expected = [k for k in model.state_dict()
                if not k.endswith('num_batches_tracked')
                and not k.startswith('fc.')]
    uncovered = sorted(set(expected) - set(table))
    if uncovered:  # pragma: no cover - guards future architecture edits
        raise RuntimeError(f'Caffe2 name table misses {uncovered}')
    return table


def read_caffe2_pkl(path: str) -> Dict[str, np.ndarray]:
    """Blobs of a VMZ/Caffe2 ``.pkl``: a pickled ``{'blobs': {name:
    ndarray}}`` (or a flat dict), written by Python 2, hence latin1.

    This is a plain ``pickle.load``: only convert files you trust (the
    release's hash-named files are checked against their name first)."""
    check_file_hash(path)
    with open(path, 'rb') as f:
        data = pickle.load(f, encoding='latin1')
    if isinstance(data, Mapping) and 'blobs' in data:
        data = data['blobs']
    if not isinstance(data, Mapping):
        raise IncompatibleWeightsError(
            f'{path}: expected a dict of blobs, got {type(data).__name__}')
    return {str(k): v for k, v in data.items()}


def convert_caffe2_blobs(blobs: Mapping[str, np.ndarray],
                         model: Optional[R2Plus1D18] = None,
                         ignore: Iterable[str] = CAFFE2_IGNORED
                         ) -> Dict[str, torch.Tensor]:
    """Caffe2 blobs -> state dict in the official layout (no fc).

    Every weight of ``model`` must come from exactly one blob of the same
    shape; blobs matching ``ignore`` are skipped and any other leftover
    blob is an error, as is a missing one."""
    model = model if model is not None else reference_model()
    table = caffe2_name_table(model)
    patterns = [re.compile(p) for p in ignore]
    reference = model.state_dict()
    missing = sorted(blob for blob in table.values() if blob not in blobs)
    used = set(table.values())
    unused = sorted(name for name in blobs if name not in used
                    and not any(p.search(name) for p in patterns))
    problems = []
    if missing:
        problems.append(f'missing blobs: {missing}')
    if unused:
        problems.append(f'unused blobs: {unused}')
    state_dict = {}
    for key, ref in reference.items():
        if key.endswith('num_batches_tracked'):
            state_dict[key] = torch.zeros((), dtype=torch.long)
            continue
        blob = table[key]
        if blob not in blobs:
            continue
        array = np.asarray(blobs[blob])
        if not np.issubdtype(array.dtype, np.floating):
            problems.append(f'{blob} has dtype {array.dtype}')
            continue
        if tuple(array.shape) != tuple(ref.shape):
            problems.append(f'{blob} -> {key}: blob {tuple(array.shape)} vs '
                            f'model {tuple(ref.shape)}')
            continue
        state_dict[key] = torch.from_numpy(
            np.ascontiguousarray(array)).to(ref.dtype).clone()
    if problems:
        raise IncompatibleWeightsError(
            'Caffe2 blobs do not match the XDC R(2+1)D-18: '
            + ' | '.join(problems))
    return state_dict


# --------------------------------------------------------------------------
# Hash-named files and export of our training checkpoints
# --------------------------------------------------------------------------
def save_hash_named(state_dict: Mapping[str, torch.Tensor], out_dir: str,
                    name: str) -> str:
    """Save to ``<out_dir>/<name>-<sha256[:8]>.pth`` (torch.hub's naming,
    so ``check_hash=True`` accepts it) and return the path."""
    if '-' in name:
        raise ValueError(f'{name!r}: no "-" in the name (torch.hub reads '
                         'the hash after the first "-")')
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    data = buffer.getvalue()
    path = osp.join(out_dir, f'{name}-{hashlib.sha256(data).hexdigest()[:8]}'
                    '.pth')
    fileio.put(data, path)  # atomic for local files (see compat)
    return path


def _strip_prefix(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)}


def infer_width(video_state_dict: Mapping[str, torch.Tensor]) -> float:
    """Width multiplier of an R2Plus1D18 state dict (1.0 official)."""
    return video_state_dict['stem.3.weight'].shape[0] / 64


def split_training_state_dict(
        state_dict: Mapping[str, torch.Tensor],
        width: Optional[float] = None
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(video, audio)`` encoder state dicts out of our XDC model's state
    dict (keys ``video_encoder.*``, ``audio_encoder.*``; ``heads.*``,
    ``pseudo_labels`` and ``data_preprocessor.*`` are dropped). The video
    one is in the official layout, checked strictly against
    ``R2Plus1D18(num_classes=0, width=<inferred>)``."""
    video = _strip_prefix(state_dict, 'video_encoder.')
    audio = _strip_prefix(state_dict, 'audio_encoder.')
    if not video:
        raise IncompatibleWeightsError(
            'No video_encoder.* keys in the checkpoint; is it an XDC '
            f'training checkpoint? First keys: {list(state_dict)[:5]}')
    video = {k: v for k, v in video.items() if not k.startswith('fc.')}
    if 'stem.3.weight' not in video:
        raise IncompatibleWeightsError(
            'video_encoder is not an R2Plus1D18 (no stem.3.weight)')
    width = width if width is not None else infer_width(video)
    check_state_dict(reference_model(width), video, allow_missing=(),
                     source=f'video_encoder (width {width:g})')
    return video, audio


def read_training_checkpoint(path: str, trusted: bool = False) -> dict:
    """One of our mmengine checkpoints (``state_dict``, ``meta``, ...), read
    with ``weights_only=True`` unless ``trusted`` (mmengine checkpoints hold
    logging objects, ``message_hub``, that only a full unpickle reads)."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError subclasses
        if not trusted:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
                path)
            raise IncompatibleWeightsError(
                f'{path} cannot be read with weights_only=True (it holds '
                f'{unsafe}). If you produced it yourself, pass --trusted '
                '(trusted=True) to unpickle it fully.') from exc
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise IncompatibleWeightsError(
            f'{path} is not an mmengine checkpoint (no "state_dict")')
    return checkpoint


def load_training_checkpoint(path: str, trusted: bool = False
                             ) -> Dict[str, torch.Tensor]:
    """The model state dict of :func:`read_training_checkpoint`."""
    return read_training_checkpoint(path, trusted)['state_dict']


def export_training_checkpoint(ckpt_path: str, out_dir: str,
                               name: Optional[str] = None,
                               trusted: bool = False,
                               width: Optional[float] = None
                               ) -> Dict[str, Optional[str]]:
    """Write the encoders of a training checkpoint as hash-named files:
    ``<name>_video-<h8>.pth`` (official layout) and ``<name>_audio-<h8>.pth``.
    ``name`` defaults to ``xdc_<checkpoint stem>``. Returns
    ``{'video': path, 'audio': path or None}``."""
    if name is None:
        stem = osp.splitext(osp.basename(ckpt_path))[0]
        name = 'xdc_' + re.sub(r'[^0-9A-Za-z_]+', '_', stem)
    state_dict = load_training_checkpoint(ckpt_path, trusted=trusted)
    video, audio = split_training_state_dict(state_dict, width=width)
    return {'video': save_hash_named(video, out_dir, f'{name}_video'),
            'audio': (save_hash_named(audio, out_dir, f'{name}_audio')
                      if audio else None)}
