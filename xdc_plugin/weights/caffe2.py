"""Caffe2 (VMZ) blobs of the XDC release -> official-layout state dict.

The ``.pkl`` is read by :mod:`xdc_plugin.weights.caffe2_pickle`. numpy is
imported only when converting, so the package imports with torch alone.
"""
import re
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch
from torch import nn

from xdc_plugin.encoders import Conv2Plus1D, R2Plus1D18
from xdc_plugin.weights.errors import IncompatibleWeightsError
from xdc_plugin.weights.loading import reference_model

_CONV_SUFFIX = {'weight': '_w'}
_BN_SUFFIX = {'weight': '_s', 'bias': '_b', 'running_mean': '_rm',
              'running_var': '_riv'}
#: Blobs of the Caffe2 files that are not encoder weights: the 400-way
#: classifier ``last_out_L<n>_{w,b}``, the ``pred`` output and SGD momentum
#: buffers ``*_momentum``.
CAFFE2_IGNORED = (r'^last_out_L\d+_[wb]$', r'^pred(_.*)?$', r'_momentum$')
_STEM_BLOBS = {0: 'conv1_middle', 1: 'conv1_middle_spatbn_relu',
               3: 'conv1', 4: 'conv1_spatbn_relu'}


def _blob_modules(model: R2Plus1D18) -> Dict[str, Tuple[nn.Module, str]]:
    """``{module prefix: (module, Caffe2 blob stem)}`` (see
    :func:`caffe2_name_table`)."""
    modules = {f'stem.{index}': (model.stem[index], blob)
               for index, blob in _STEM_BLOBS.items()}
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
    return modules


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
    table = {}
    for prefix, (module, blob) in _blob_modules(model).items():
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
    if uncovered:  # guards future architecture edits
        raise RuntimeError(f'Caffe2 name table misses {uncovered}')
    return table


def convert_caffe2_blobs(blobs: Mapping[str, Any],
                         model: Optional[R2Plus1D18] = None,
                         ignore: Iterable[str] = CAFFE2_IGNORED
                         ) -> Dict[str, torch.Tensor]:
    """Caffe2 blobs (numpy arrays) -> state dict in the official layout (no
    fc).

    Every weight of ``model`` must come from exactly one blob of the same
    shape; blobs matching ``ignore`` are skipped and any other leftover
    blob is an error, as is a missing one."""
    import numpy as np
    model = model if model is not None else reference_model()
    table = caffe2_name_table(model)
    patterns = [re.compile(p) for p in ignore]
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
    for key, ref in model.state_dict().items():
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
