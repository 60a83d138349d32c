"""``tools/run_net.py --cfg CONFIG --dry-run``: build what the run builds,
check its data, print its cost; train nothing, write nothing.

It builds the model, the optimizer, every hook and, through the clustering
hook, every clusterer; builds the train and feature-extraction datasets
with ``lazy_init`` (their arguments are checked, no file is decoded) and
checks each manifest as ``summarize_manifest`` does (header, rows, a sample
of files that exist) and that the work dir can be written. Then, for the
world size of the planned run (``--world-size``), it prints the forward
FLOPs of a clip (any encoder: ``models.flops``; the clip is the train
pipeline's ``ClipSpec``), the memory per rank of a clustering round
(``clustering.memory_model``: everything gathered on rank 0, and
``DistributedKMeans`` on shards) and the expected time of an epoch, a round
and the run (``engine.launch.run_cost``), every rate with its origin: measured
(``--throughput gpu_check.json`` or a flag) or the config's
``throughput_estimate``. The estimate is for the device the run will use
(``--device``, ``--launcher`` and ``--world-size`` as the run would decide
it, ``device.planned_device``): a round's k-means runs where the encoders
run, so rates measured on another kind of device are refused, and the
config's estimate (a GPU's) is not used for a CPU run.

No ``Runner`` is built: it would create the work dir and its logs.
"""
import argparse
import os
import os.path as osp
from types import SimpleNamespace
from typing import Callable, Dict, Mapping, Tuple

from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch import nn

from xdc_plugin.clustering.memory_model import (MemoryEstimate,
                                                clustering_memory)
from xdc_plugin.data.clip_spec import ClipSpec
from xdc_plugin.data.manifest import summarize_manifest
from xdc_plugin.engine.launch.run_cost import (Rate, Rates, clustering_rounds,
                                               duration, merge_rates,
                                               rates_from_estimate,
                                               rates_from_gpu_check, run_times)
from xdc_plugin.engine.round.extract_loader import extract_dataset_cfg
from xdc_plugin.engine.round.round_clustering import build_clusterer
from xdc_plugin.engine.runner.lock import LOCK_NAME
from xdc_plugin.models.flops import forward_flops
from xdc_plugin.registry import DATASETS, HOOKS, MODELS

HOOK_TYPE = 'CrossModalClusteringHook'
GIB = 2**30
# Where the dry run prints its lines.
Echo = Callable[[str], None]


class DryRunError(ValueError):
    """The run would fail: a manifest without its files, k above N, ..."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        'dry run', 'build the run and print its cost; nothing is trained '
        'or written')
    group.add_argument('--dry-run', action='store_true')
    group.add_argument('--world-size', type=int,
                       default=int(os.environ.get('WORLD_SIZE', 1)),
                       help='ranks of the planned run (default: $WORLD_SIZE '
                       'or 1)')
    group.add_argument('--throughput', metavar='JSON',
                       help='rates measured by tools/gpu_check.py --out')
    group.add_argument('--train-clips-per-s', type=float,
                       help='measured training clips/s per rank')
    group.add_argument('--extract-clips-per-s', type=float,
                       help='measured feature-extraction clips/s per rank')
    group.add_argument('--data-clips-per-s', type=float,
                       help='measured data-loader clips/s per rank '
                       '(bench/bench_data_pipeline.py); caps training')
    group.add_argument('--kmeans-tflops', type=float,
                       help="measured k-means distance TFLOP/s per rank")
    group.add_argument('--sample-files', type=int, default=200,
                       help='listed files checked for existence')


def clip_shapes(dataset_cfg: Mapping) -> Tuple[Tuple[int, ...],
                                               Tuple[int, ...]]:
    """``(video (3, T, H, W), audio (1, n_mels, frames))`` of one clip of
    the dataset's pipeline (its ``ClipSpec``); ``DryRunError`` when the
    pipeline lacks a transform that sets a size."""
    spec = ClipSpec.from_pipeline(dataset_cfg.get('pipeline'))
    crops = {'VideoCrop', 'VideoRandomResizedCrop'}
    if not ({'SampleClip', 'DecodeAVClip', 'AudioLogMel'} <= spec.transforms
            and crops & spec.transforms):
        raise DryRunError('the train pipeline must have a SampleClip, a '
                          'DecodeAVClip, a VideoCrop (or '
                          'VideoRandomResizedCrop) and an AudioLogMel')
    return spec.video_shape, spec.audio_shape


def build_run(cfg: Config, world_size: int = 1) -> SimpleNamespace:
    """Everything the run builds except the Runner and the data: model,
    optimizer, hooks (the clustering hook's clusterers too, as a run of
    ``world_size`` ranks builds them)."""
    model = MODELS.build(cfg.model)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    hooks = [HOOKS.build(h) for h in (cfg.get('default_hooks') or {})
             .values() if h] + [HOOKS.build(h) for h in
                                cfg.get('custom_hooks') or ()]
    clustering = next((h for h in hooks if type(h).__name__ == HOOK_TYPE),
                      None)
    clusterers = {} if clustering is None else {
        s: build_clusterer(clustering.clusterer_cfgs, s,
                           model.num_clusters[s], world_size)
        for s in model.cluster_sources}
    return SimpleNamespace(model=model, optim_wrapper=optim_wrapper,
                           hooks=hooks, clustering=clustering,
                           clusterers=clusterers)


def check_data(name: str, dataset_cfg: Mapping, args: argparse.Namespace,
               echo: Echo) -> int:
    """Build ``dataset_cfg`` lazily and check its manifest; returns its
    number of rows. ``DryRunError`` when no sampled file exists."""
    try:
        dataset = DATASETS.build(dict(dataset_cfg, lazy_init=True))
    except (KeyError, TypeError, ValueError) as exc:
        raise DryRunError(f'{name}: building the dataset failed: {exc}') \
            from exc
    if not dataset.ann_file:
        raise DryRunError(f'{name}: --dry-run needs a manifest (ann_file); '
                          'a folder scan of data_root is not counted')
    try:
        found = summarize_manifest(
            dataset.ann_file, dataset_cfg.get('data_root') or None,
            dataset_cfg.get('label_column'), args.sample_files)
    except (OSError, ValueError) as exc:
        raise DryRunError(f'{name}: {exc}') from exc
    echo(f'{name}: {found.source}: columns {found.columns} (labels: '
         f'{found.label_column or "none"}), {found.num_rows:,} rows')
    missing = len(found.missing)
    if missing == found.num_sampled:
        raise DryRunError(
            f'{name}: none of {found.num_sampled} sampled files exists (e.g. '
            f'{found.missing[0]}); is data_root or the manifest right?')
    echo(f'  files: {missing} of {found.num_sampled} sampled are missing' +
         (f' (about {found.estimated_missing:,} in all; the build skips '
          f'them), e.g. {found.missing[:3]}' if missing else ''))
    return found.num_rows


def check_work_dir(work_dir: str) -> str:
    """``DryRunError`` when the run could not write ``work_dir`` (its
    nearest existing folder is not writable, or its lock is a link, which
    the run refuses); else a line saying where it writes. Creates
    nothing."""
    folder = existing = osp.abspath(work_dir)
    while not osp.lexists(existing):
        existing = osp.dirname(existing)
    if not (osp.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)):
        raise DryRunError(f'the work_dir {work_dir} cannot be written: '
                          f'{existing} is not a writable folder')
    if osp.islink(osp.join(folder, LOCK_NAME)):
        raise DryRunError(f'{osp.join(folder, LOCK_NAME)} is a symbolic '
                          'link, which the run refuses: remove it')
    return f'work dir: {folder}' + ('' if existing == folder else
                                    ' (to be created)')


def clustering_sources(run: SimpleNamespace) -> Dict[str, dict]:
    """Per source: k, dimension clustered, iterations, training rows cap,
    storage dtype, read from the built clusterers."""
    sources = {}
    for source, c in run.clusterers.items():
        feat_dim = (sum(run.model.feat_dims.values()) if source == 'joint'
                    else run.model.feat_dims[source])
        pca_dim = (c.preprocess or {}).get('pca_dim')
        if pca_dim and pca_dim > feat_dim:
            raise DryRunError(f'{source}: pca_dim={pca_dim} is more than '
                              f'the {feat_dim}-d features')
        sources[source] = dict(
            type=type(c).__name__, num_clusters=c.num_clusters,
            feat_dim=feat_dim, dim=pca_dim or feat_dim,
            num_iters=c.num_iters, num_redo=c.num_redo,
            max_points_per_centroid=c.max_points_per_centroid,
            feature_dtype=getattr(c, 'feature_dtype', 'float32'))
    return sources


def memory_per_rank(num_clips: int, sources: Mapping[str, dict], world: int,
                    feat_dim: int) -> Dict[str, MemoryEstimate]:
    """Peak bytes per rank of a round: gathered on rank 0, and sharded in
    the clusterers' storage dtype (the largest k and dimension of the
    sources)."""
    common = dict(num_clips=num_clips, world_size=world, feat_dim=feat_dim,
                  dim=max(s['dim'] for s in sources.values()),
                  num_clusters=max(s['num_clusters']
                                   for s in sources.values()),
                  num_sources=len(sources))
    dtype = next(iter(sources.values()))['feature_dtype']
    return {'gathered on rank 0': clustering_memory(sharded=False, **common),
            f'sharded ({dtype})': clustering_memory(
                sharded=True, feature_dtype=dtype, **common)}


def gather_rates(args: argparse.Namespace, cfg: Config, model: nn.Module,
                 train_cfg: Mapping) -> Rates:
    """Flags first, then ``--throughput``, then ``throughput_estimate``."""
    video, audio = clip_shapes(train_cfg)
    given = Rates()
    for name, value, unit in (
            ('train', args.train_clips_per_s, 'clips'),
            ('extract', args.extract_clips_per_s, 'clips'),
            ('data', args.data_clips_per_s, 'clips'),
            ('kmeans', args.kmeans_tflops, 'TFLOP')):
        if value:
            setattr(given, name, Rate(value, 'given on the command line',
                                      unit))
    sources = [given]
    if args.throughput:
        try:
            sources.append(rates_from_gpu_check(args.throughput, audio[-1],
                                                cfg.device))
        except ValueError as exc:
            raise DryRunError(str(exc)) from exc
    if cfg.get('throughput_estimate') and cfg.device == 'cuda':
        sources.append(rates_from_estimate(cfg.throughput_estimate, model,
                                           video, audio))
    elif cfg.get('throughput_estimate'):
        given.notes.append(
            "the config's throughput_estimate is a GPU's: not used for this "
            'CPU run (give --throughput from tools/gpu_check.py --cpu, or '
            'the rate flags)')
    return merge_rates(*sources)


def print_flops(model: nn.Module, train_cfg: Mapping,
                echo: Echo) -> Dict[str, int]:
    """Forward FLOPs of one clip at the train pipeline's sizes, counted by
    ``models.flops`` for any encoder (ours or a host backbone)."""
    video, audio = clip_shapes(train_cfg)
    flops = forward_flops(model, video, audio)
    echo(f'forward FLOPs per clip ({"x".join(map(str, video))} video, '
         f'{"x".join(map(str, audio))} log-mel): ' + ', '.join(
             f'{name} {count / 1e9:,.3f} G' for name, count in flops.items()))
    return flops


def print_times(times: Mapping[str, float], rates: Rates, world: int,
                echo: Echo) -> None:
    echo(f'expected time at world {world}:')
    for note in rates.notes:
        echo(f'  note: {note}')
    for name, rate in (('training', rates.train), ('extraction',
                                                   rates.extract),
                       ('k-means', rates.kmeans), ('data loading',
                                                   rates.data)):
        echo(f'  {name} rate: {rate or "unknown"}')
    if rates.data is None:
        echo('  (data loading assumed to keep up: give --data-clips-per-s)')
    for name, seconds in times.items():
        echo(f'  {name}: {duration(seconds)}')
    if 'round (sharded)' not in times:
        echo('  round: unknown (give --throughput gpu_check.json or the '
             'rate flags)')


def run(cfg: Config, args: argparse.Namespace, echo: Echo = print) -> dict:
    """The dry run of ``cfg``; returns what it printed as a dict."""
    if args.world_size < 1:
        raise DryRunError(f'--world-size must be >= 1, got {args.world_size}')
    where = check_work_dir(cfg.work_dir)
    init_default_scope(cfg.get('default_scope', 'xdc'))
    try:
        built = build_run(cfg, args.world_size)
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        # (mmengine asserts a GPU for AmpOptimWrapper: --amp fp16 here)
        raise DryRunError(f'building the run failed: {exc}') from exc
    model, world = built.model, args.world_size
    echo(f'dry run of {args.cfg} at world size {world} on {cfg.device}: '
         'nothing is trained or written')
    echo(where)
    params = sum(p.numel() for p in model.parameters())
    echo(f'built: {type(model).__name__} ({model.variant}, {params:,} '
         f'parameters), {type(built.optim_wrapper).__name__}, '
         f'{len(built.hooks)} hooks')
    train_cfg = cfg.train_dataloader.dataset
    n = check_data('train data', train_cfg, args, echo)
    report = dict(rows=n, world_size=world, parameters=params,
                  device=cfg.device)
    if built.clustering is None:
        echo(f'no {HOOK_TYPE}: nothing is clustered')
        return report
    extract_cfg = extract_dataset_cfg(train_cfg,
                                      built.clustering.extract_dataloader)
    if extract_cfg.get('ann_file') != train_cfg.get('ann_file'):
        check_data('extraction data', extract_cfg, args, echo)
    sources = clustering_sources(built)
    for source, s in sources.items():
        echo(f"clustering {source}: {s['type']}, k={s['num_clusters']:,}, "
             f"{s['feat_dim']}-d -> {s['dim']}-d, {s['num_iters']} "
             f"iterations, rows stored in {s['feature_dtype']}")
        if s['num_clusters'] > n:
            raise DryRunError(f"k={s['num_clusters']:,} for {source!r} is "
                              f'more than the {n:,} rows to cluster')
    memory = memory_per_rank(n, sources, world,
                             max(model.feat_dims.values()))
    echo(f'clustering memory per rank at world {world} (model of the '
         'largest arrays; largest k and dimension):')
    for name, m in memory.items():
        echo(f'  {name}: {m.peak / GIB:,.2f} GiB (peak in {m.peak_phase})')
    epochs, interval = cfg.train_cfg.max_epochs, built.clustering.interval
    final = built.clustering.evaluate_after_train
    rounds = clustering_rounds(epochs, interval)
    echo(f'schedule: {epochs} epochs of {n:,} clips, a clustering round '
         f'every {interval} epochs ({rounds} rounds' +
         (' and a final one)' if final else ')'))
    report['forward_flops'] = print_flops(model, train_cfg, echo)
    rates = gather_rates(args, cfg, model, train_cfg)
    times = run_times(n, world, epochs, interval, sources, rates, final)
    print_times(times, rates, world, echo)
    report.update(sources=sources, seconds=times,
                  memory_gib={k: m.peak / GIB for k, m in memory.items()})
    return report
