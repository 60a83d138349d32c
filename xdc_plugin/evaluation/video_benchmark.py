"""UCF101 / HMDB51 benchmarks: full fine-tuning or fc-only training of an
encoder on every official split, each by a fresh mmaction2 ``Recognizer3D``
in its own mmengine ``Runner``, then video-level accuracy on the split's
test videos (``tools/benchmark.py``).

The config (``configs/benchmarks/<dataset>.yaml``) gives the model, data
pipelines and schedule; :func:`benchmark_config` sets what changes between
runs: the split's annotation files, the clip length, the mode, the
encoder's weights and width. ``--cfg-options`` win over these settings.

An encoder trained as a ``HostBackbone`` (mmaction2's X3D, say) replaces
the config's ``XDCBackbone`` by the same backbone config, and its weights
reach the recognizer through mmengine's ``load_from`` (a file in the
recognizer's layout, ``backbone.<key>``): the one way every backbone class
takes a 3D checkpoint as it is (TimeSformer's ``pretrained`` converts a 2D
ViT). The classifier's input is the encoder's ``feat_dim``; the config's
``I3DHead`` pools ``(B, C, T, H, W)`` maps, so a backbone that returns
vectors (TimeSformer, MViT) needs ``model.cls_head.type`` set to its head.
"""
import dataclasses
import gc
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log

from xdc_plugin.encoders.resnet import scaled
from xdc_plugin.engine.runner.config import load_config, parse_overrides
from xdc_plugin.engine.runner.precision import optim_wrapper_config
from xdc_plugin.evaluation.encoder_sources import RANDOM, load_encoders
from xdc_plugin.evaluation.video_splits import (SPLITS, convert_split,
                                                find_release)
from xdc_plugin.models.host_backbone import (HostBackbone,
                                             backbone_arguments,
                                             recognizer_backbone_cfg)
from xdc_plugin.probe.records import make_record
from xdc_plugin.tables import markdown_table
from xdc_plugin.weights import XDC_SCHEME, infer_width, save_hash_named

#: backbone settings of each mode: fc-only freezes the stem and layers 1-4
#: and keeps BatchNorm in eval mode, so that only the classifier learns.
MODES = {'finetune': dict(frozen_stages=-1, norm_eval=False),
         'fc-only': dict(frozen_stages=4, norm_eval=True)}
BACKBONE_CHANNELS = 512  # layer4 of R(2+1)D-18 at width 1
# fc-only with a host backbone: every backbone parameter at lr 0 here (its
# frozen_stages, where it has them, may leave layers out), BatchNorm kept
# by its norm_eval where it has one.
FROZEN_BY_OPTIMIZER = 'optim_wrapper.paramwise_cfg.custom_keys'
_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@dataclasses.dataclass
class SplitResult:
    split: int
    num_test: int = 0
    top1: Optional[float] = None
    top5: Optional[float] = None
    error: Optional[str] = None


@dataclasses.dataclass
class EncoderWeights:
    """What the recognizer takes from an ENCODER: its weights file (None:
    random init) and either the width of our ``XDCBackbone`` or, for a
    ``HostBackbone`` encoder, the host backbone's config and its pooled
    width (the classifier's input)."""
    checkpoint: Optional[str] = None
    width: Optional[float] = None
    host_backbone: Optional[dict] = None
    feat_dim: Optional[int] = None


def _file_stem(encoder: str) -> str:
    return re.sub(r'[^0-9A-Za-z_]+', '_',
                  osp.splitext(osp.basename(encoder))[0].split('-')[0])


def encoder_weights(encoder: str, out_dir: str, trusted: bool = False,
                    cfg=None) -> EncoderWeights:
    """The recognizer's backbone from any ENCODER (see
    :mod:`xdc_plugin.evaluation.encoder_sources`; ``cfg``: its training run's
    config, needed for an exported ``HostBackbone`` and for ``random`` to be
    one). Ours: ``xdc://<name>`` for a release, else the video encoder in
    the official layout written into ``out_dir``, and its width; ``random``
    without a host config keeps the benchmark config's backbone."""
    if encoder == RANDOM and cfg is None:
        return EncoderWeights()
    encoders = load_encoders(encoder, 'video', cfg=cfg, trusted=trusted)
    module = encoders.modules['video']
    if isinstance(module, HostBackbone):
        checkpoint = None
        if encoders.kind != 'random':
            os.makedirs(out_dir, exist_ok=True)
            checkpoint = save_hash_named(
                {'backbone.' + k: v for k, v in
                 encoders.state_dict('video').items()},
                out_dir, _file_stem(encoder))
        return EncoderWeights(checkpoint, host_backbone=module.backbone_cfg,
                              feat_dim=module.feat_dim)
    if encoders.kind == 'random':
        return EncoderWeights()
    if encoders.kind == 'release':
        name = encoder[len(XDC_SCHEME):] if encoder.startswith(
            XDC_SCHEME) else encoder
        return EncoderWeights(XDC_SCHEME + name, 1.0)
    state_dict = encoders.state_dict('video')
    os.makedirs(out_dir, exist_ok=True)
    return EncoderWeights(save_hash_named(state_dict, out_dir,
                                          _file_stem(encoder)),
                          infer_width(state_dict))


def _pipeline_index(pipeline: Sequence[dict], kind: str) -> List[int]:
    return [i for i, t in enumerate(pipeline) if t.get('type') == kind]


def _as_tuples(cfg: Config) -> None:
    """mmaction2's ``Resize`` accepts a tuple scale only, and overrides read
    as YAML give lists."""
    for loader in _LOADERS:
        for transform in cfg[loader].dataset.pipeline:
            if transform.get('type') == 'Resize' and isinstance(
                    transform.get('scale'), list):
                transform['scale'] = tuple(transform['scale'])


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f'mode must be one of {sorted(MODES)}, got {mode!r}')


def _host_backbone(weights: EncoderWeights, mode: str) -> dict:
    """The host backbone's config with the mode's settings among those its
    class takes (X3D's frozen stages leave its conv5 out; TimeSformer has
    none: the optimizer freezes every backbone parameter in fc-only)."""
    backbone = recognizer_backbone_cfg(weights.host_backbone)
    arguments = backbone_arguments(backbone)
    backbone.update({k: v for k, v in MODES[mode].items()
                     if k in arguments})
    return backbone


def run_settings(cfg: Config, *, annotations: dict, frames: int, mode: str,
                 weights: EncoderWeights, work_dir: str) -> Dict[str, object]:
    """The dotted keys :func:`benchmark_config` sets for one split run."""
    _check_mode(mode)
    if weights.host_backbone is not None:
        settings = {'model.backbone': dict(_host_backbone(weights, mode),
                                           _delete_=True),
                    'load_from': weights.checkpoint}
        if mode == 'fc-only':
            settings[f'{FROZEN_BY_OPTIMIZER}.backbone'] = dict(
                lr_mult=0.0, decay_mult=0.0)
    else:
        settings = {f'model.backbone.{k}': v for k, v in MODES[mode].items()}
        settings['model.backbone.init_cfg'] = (
            dict(type='Pretrained', checkpoint=weights.checkpoint)
            if weights.checkpoint else None)
        if weights.width is not None:
            settings['model.backbone.width'] = weights.width
    settings['model.cls_head.num_classes'] = annotations['num_classes']
    for loader in _LOADERS:
        part = 'train' if loader == 'train_dataloader' else 'test'
        prefix = f'{loader}.dataset'
        settings[f'{prefix}.ann_file'] = annotations[part]
        settings[f'{prefix}.data_prefix'] = dict(
            video=annotations['video_dir'])
        for i in _pipeline_index(cfg[loader].dataset.pipeline,
                                 'SampleFrames'):
            settings[f'{prefix}.pipeline.{i}.clip_len'] = frames
    settings['work_dir'] = work_dir
    return settings


def benchmark_config(config: str, cfg_options: Sequence[str] = (), *,
                     launcher: str = 'none', amp: bool = False,
                     **run_args) -> Config:
    """``config`` with ``cfg_options`` (``KEY=VALUE``, checked against the
    config), then the settings of one run (:func:`run_settings` of
    ``run_args``) for the keys the options leave alone (a host backbone
    replaces the config's, then takes the options' ``model.backbone``
    keys). The classifier's input width follows the backbone's."""
    cfg = load_config(config, cfg_options)
    existing, new = parse_overrides(cfg_options)
    chosen = set(existing) | set(new)
    settings = run_settings(cfg, **run_args)
    cfg.merge_from_dict({k: v for k, v in settings.items()
                         if k not in chosen})
    weights = run_args['weights']
    if weights.host_backbone is not None:  # the options reach it too
        cfg.merge_from_dict({k: v for k, v in {**existing, **new}.items()
                             if k.startswith('model.backbone.')})
        channels, source = weights.feat_dim, cfg.model.backbone.type
    else:
        channels = scaled(BACKBONE_CHANNELS, cfg.model.backbone.width)
        source = f'a backbone of width {cfg.model.backbone.width}'
    if 'model.cls_head.in_channels' in chosen:
        if cfg.model.cls_head.in_channels != channels:
            raise ValueError(
                f'model.cls_head.in_channels={cfg.model.cls_head.in_channels}'
                f' but {source} gives {channels} channels')
    cfg.model.cls_head.in_channels = channels
    _as_tuples(cfg)
    for loader in _LOADERS:  # torch refuses persistent workers without any
        if cfg[loader].num_workers == 0:
            cfg[loader].persistent_workers = False
    cfg.launcher = launcher
    # --amp as tools/run_net.py builds it: bf16 autocast, no loss scaler.
    cfg.optim_wrapper = optim_wrapper_config(cfg.optim_wrapper,
                                             'bf16' if amp else None)
    if not torch.cuda.is_available():
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg


def run_split(cfg: Config) -> Dict[str, float]:
    """Train, then test, one split with a fresh Runner; the test metrics
    (mmaction2's ``AccMetric``: ``acc/top1``, ``acc/top5``)."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
        return runner.test()
    finally:
        del runner
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_video_benchmark(dataset: str, encoder: str, data_root: str, *,
                        config: str, frames: int = 32,
                        mode: str = 'finetune',
                        splits: Sequence[int] = SPLITS,
                        work_dir: Optional[str] = None,
                        cfg_options: Sequence[str] = (),
                        trusted: bool = False, skip_missing: bool = False,
                        launcher: str = 'none', amp: bool = False,
                        cfg=None) -> List[SplitResult]:
    """Convert the official split files of the release under
    ``data_root`` (into ``<work_dir>/annotations``), then train and test
    each of ``splits``. A split that fails is logged with the reason and
    reported as such; the others still run. ``cfg``: the encoder's training
    config (see :func:`encoder_weights`)."""
    _check_mode(mode)
    if frames < 1:
        raise ValueError(f'frames must be positive, got {frames}')
    work_dir = work_dir or osp.join(
        'work_dirs', 'benchmarks',
        f'{dataset}_{mode}_{frames}f_{_encoder_tag(encoder)}')
    load_config(config, cfg_options)  # a wrong key stops before any work
    layout = find_release(dataset, data_root)
    weights = encoder_weights(encoder, osp.join(work_dir, 'encoder'),
                              trusted=trusted, cfg=cfg)
    results = []
    for split in splits:
        result = SplitResult(split)
        results.append(result)
        try:
            annotations = convert_split(
                dataset, data_root, osp.join(work_dir, 'annotations'), split,
                skip_missing=skip_missing, layout=layout)
            result.num_test = annotations['num_test']
            print_log(
                f'{dataset} split {split}: {mode}, {frames} frames, '
                f'{annotations["num_train"]} training and '
                f'{annotations["num_test"]} test videos, '
                f'{annotations["num_classes"]} classes', logger='current')
            cfg = benchmark_config(
                config, cfg_options, launcher=launcher, amp=amp,
                annotations=annotations, frames=frames, mode=mode,
                weights=weights, work_dir=osp.join(work_dir, f'split_{split}'))
            cfg.experiment_name = f'{dataset}_{mode}_split{split}'
            metrics = run_split(cfg)
            result.top1 = float(metrics['acc/top1'])
            result.top5 = float(metrics['acc/top5'])
        except Exception as exc:  # noqa: BLE001 - reported, next split runs
            result.error = f'{type(exc).__name__}: {exc}'
            MMLogger.get_current_instance().error(
                f'{dataset} split {split} failed: {result.error}',
                exc_info=True)
    return results


def _encoder_tag(encoder: str) -> str:
    name = osp.splitext(osp.basename(encoder.rstrip('/')))[0]
    return re.sub(r'[^0-9A-Za-z_.]+', '_', name)


def summary_record(results: Sequence[SplitResult], *, dataset: str,
                   encoder: str, frames: int, mode: str) -> Optional[dict]:
    """The run as one record of :mod:`xdc_plugin.probe.records`
    (``folds``: the top-1 of each split that ran; ``failed``: the reason of
    each that did not), with the top-5 beside it; None if no split ran."""
    done = [r for r in results if r.error is None]
    if not done:
        return None
    return make_record(
        mode, 'video', 'top1', [r.top1 for r in done],
        num_samples=sum(r.num_test for r in done), encoder=encoder,
        benchmark=dataset, dataset=dataset, frames=frames,
        splits=[r.split for r in done],
        top5=float(np.mean([r.top5 for r in done])),
        top5_folds=[r.top5 for r in done],
        failed={str(r.split): r.error for r in results if r.error})


def format_table(results: Sequence[SplitResult], *, dataset: str,
                 encoder: str, frames: int, mode: str,
                 record: Optional[dict] = None) -> str:
    """Per-split and mean top-1 / top-5 (in %): a title line and a table."""
    rows = [(r.split, r.num_test, f'FAILED: {r.error}', '') if r.error else
            (r.split, r.num_test, f'{100 * r.top1:.2f}', f'{100 * r.top5:.2f}')
            for r in results]
    if record:
        rows.append((f"mean (top-1 std {100 * record['std']:.2f} over "
                     f"{len(record['folds'])} splits)", record['num_samples'],
                     f"{100 * record['accuracy']:.2f}",
                     f"{100 * record['top5']:.2f}"))
    return (f'{dataset} {mode}, {frames} frames, encoder {encoder}\n' +
            markdown_table(('split', 'test videos', 'top-1', 'top-5'), rows))


__all__ = ['EncoderWeights', 'MODES', 'SplitResult', 'benchmark_config',
           'encoder_weights', 'format_table', 'run_settings', 'run_split',
           'run_video_benchmark', 'summary_record']
