"""``tools/run_net.py --dry-run``: build what a run needs, print its cost,
train nothing and write nothing.

It builds the model (and prints its parameters), checks the header of every
manifest the run reads and counts its rows without decoding a file (the
datasets are built with ``lazy_init``), then prints, for the world size the
run will have:

* the memory per rank of one clustering round (``clustering_memory``): the
  gather on rank 0 and ``DistributedKMeans`` on shards;
* the schedule (epochs per round, rounds) and the expected time of a round:
  training, feature extraction and k-means, from throughputs measured by
  ``tools/gpu_check.py`` (``--throughput gpu_check.json``) or given on the
  command line; every figure says whether it is measured, given or assumed.

No ``Runner`` is built: it would create the work dir and its logs.
"""
import json
import math
import os
from dataclasses import dataclass, field

from mmengine.registry import init_default_scope

from xdc_plugin.clustering.memory_model import clustering_memory
from xdc_plugin.data.manifest import count_manifest_rows
from xdc_plugin.registry import DATASETS, MODELS

HOOK_TYPE = 'CrossModalClusteringHook'
GIB = 2**30


def add_arguments(parser):
    group = parser.add_argument_group(
        'dry run', 'build the run and print its cost; no training, nothing '
        'written')
    group.add_argument('--dry-run', action='store_true')
    group.add_argument('--world-size', type=int,
                       default=int(os.environ.get('WORLD_SIZE', 1)),
                       help='ranks of the planned run (default: $WORLD_SIZE '
                       'or 1)')
    group.add_argument('--throughput', metavar='JSON',
                       help='throughputs measured by tools/gpu_check.py')
    group.add_argument('--train-clips-per-s', type=float,
                       help='training clips/s per rank (overrides the JSON)')
    group.add_argument('--extract-clips-per-s', type=float,
                       help='extraction clips/s per rank (overrides the '
                       'JSON)')


@dataclass
class Rate:
    """A throughput and where it comes from."""
    value: float
    origin: str

    def __str__(self):
        return f'{self.value:,.0f} clips/s/rank ({self.origin})'


@dataclass
class Throughputs:
    train: Rate = None
    extract: Rate = None
    kmeans: dict = None          # a gpu_check k-means row
    kmeans_origin: str = ''
    notes: list = field(default_factory=list)


def _matching_step(rows, audio_frames):
    for row in rows:
        if audio_frames is None or row['audio_shape'][-1] == audio_frames:
            return row, None
    return rows[0], (f'no step measured at {audio_frames} audio frames; '
                     f"used {rows[0]['audio_shape'][-1]}")


def load_throughputs(args, audio_frames=None):
    """The rates the estimate uses: the command line's, else the JSON's
    (the step row at the config's audio size; the k-means row of
    ``DistributedKMeans``, else ``TorchKMeans``)."""
    out = Throughputs()
    if args.throughput:
        with open(args.throughput) as f:
            report = json.load(f)
        where = f"measured: {args.throughput}, {report['environment']['device']}"
        if report.get('train_step'):
            step, note = _matching_step(report['train_step'], audio_frames)
            out.train = Rate(step['clips_per_s'], where)
            out.extract = Rate(step['extract_clips_per_s'], where)
            out.notes += [note] if note else []
        timed = {r['method']: r for r in report.get('kmeans', [])
                 if 'seconds' in r}
        for method in ('DistributedKMeans', 'TorchKMeans', 'FaissKMeans'):
            if method in timed:
                out.kmeans, out.kmeans_origin = timed[method], (
                    f'{where}, {method}')
                break
    if args.train_clips_per_s:
        out.train = Rate(args.train_clips_per_s, 'given')
    if args.extract_clips_per_s:
        out.extract = Rate(args.extract_clips_per_s, 'given')
    return out


def _transform(pipeline, type_name):
    return next((dict(t) for t in pipeline or () if t.get('type') ==
                 type_name), None)


def clip_shapes(dataset_cfg):
    """``(video shape (3, T, H, W), audio frames)`` one training clip has,
    read from the pipeline's ``SampleClip``, ``VideoCrop``, ``DecodeAVClip``
    and ``AudioLogMel`` (None where the pipeline does not say)."""
    pipeline = dataset_cfg.get('pipeline')
    sample, crop = (_transform(pipeline, 'SampleClip'),
                    _transform(pipeline, 'VideoCrop'))
    decode, logmel = (_transform(pipeline, 'DecodeAVClip'),
                      _transform(pipeline, 'AudioLogMel'))
    video = None
    if sample and crop and 'num_frames' in sample and 'size' in crop:
        video = (3, sample['num_frames'], crop['size'], crop['size'])
    frames = None
    if decode and logmel and 'audio_duration' in decode:
        rate = decode.get('sample_rate', 16000)
        hop = round(rate * logmel.get('hop_ms', 10) / 1000)
        # centred STFT frames, as torchaudio's MelSpectrogram gives
        frames = round(decode['audio_duration'] * rate) // hop + 1
    return video, frames


def clustering_plan(cfg, model):
    """Per clustering source: k, clustered dimension, iterations and
    storage dtype, from the hook's ``clusterers`` (as the hook builds
    them); and the hook's ``interval``. None without the hook."""
    hook = next((h for h in cfg.get('custom_hooks', []) or ()
                 if h.get('type') == HOOK_TYPE), None)
    if hook is None:
        return None
    sources = {}
    for source in model.cluster_sources:
        clusterer = hook['clusterers']
        if source in clusterer:
            clusterer = clusterer[source]
        feat_dim = (sum(model.feat_dims.values()) if source == 'joint' else
                    model.feat_dims[source])
        preprocess = clusterer.get('preprocess', {}) or {}
        mppc = clusterer.get('max_points_per_centroid')
        sources[source] = dict(
            type=clusterer['type'],
            num_clusters=clusterer.get('num_clusters',
                                       model.num_clusters[source]),
            dim=preprocess.get('pca_dim') or feat_dim, feat_dim=feat_dim,
            num_iters=clusterer.get('num_iters', 20),
            max_points_per_centroid=mppc,
            feature_dtype=clusterer.get('feature_dtype', 'float32'))
    return dict(interval=hook.get('interval', 1), sources=sources,
                final_round=hook.get('evaluate_after_train', True),
                extract_dataset=hook.get('extract_dataloader', {}).get(
                    'dataset', {}))


def kmeans_seconds(measured, num_points, dim, num_clusters, num_iters,
                   max_points_per_centroid=None):
    """k-means time scaled from a measured fit, linearly in points x dim x
    k per pass: the measured fit made ``num_iters + 1`` passes over all its
    points (iterations and the final assignment), the estimated one makes
    ``num_iters`` on its training rows (``k * max_points_per_centroid`` at
    most) and one on all."""
    unit = measured['seconds'] / (
        (measured['num_iters'] + 1) * measured['num_points'] *
        measured['dim'] * measured['num_clusters'])
    train_rows = num_points if max_points_per_centroid is None else min(
        num_points, num_clusters * max_points_per_centroid)
    return unit * dim * num_clusters * (num_iters * train_rows + num_points)


def _parameters(module):
    return sum(p.numel() for p in module.parameters())


def dataset_rows(dataset_cfg):
    """Build the dataset lazily (its arguments are checked, no file is
    opened) and count the rows of its manifest after checking its header:
    ``(manifest path, header, rows)``."""
    dataset = DATASETS.build(dict(dataset_cfg, lazy_init=True))
    if not dataset.ann_file:
        raise ValueError('--dry-run needs a manifest (ann_file): a folder '
                         'scan of data_root is not counted')
    header, rows = count_manifest_rows(dataset.ann_file,
                                       dataset_cfg.get('label_column'))
    return dataset.ann_file, header, rows


def _hours(seconds):
    return f'{seconds / 3600:,.2f} h' if seconds >= 360 else \
        f'{seconds:,.1f} s'


def _memory_lines(n, plan, world, feat_dim):
    sources = list(plan['sources'].values())
    common = dict(num_clips=n, dim=max(s['dim'] for s in sources),
                  num_clusters=max(s['num_clusters'] for s in sources),
                  world_size=world, feat_dim=feat_dim,
                  num_sources=len(sources))
    dtype = sources[0]['feature_dtype']
    memory = {'gather on rank 0': clustering_memory(sharded=False, **common),
              f'sharded ({dtype})': clustering_memory(
                  sharded=True, feature_dtype=dtype, **common)}
    lines = [f'clustering memory per rank, one round at world {world} '
             f"(model; largest k and dimension): "]
    lines += [f'  {name}: {m.peak / GIB:,.1f} GiB (peak phase: '
              f'{m.peak_phase})' for name, m in memory.items()]
    return lines, {name: m.peak for name, m in memory.items()}


def _round_time(n, plan, world, rates, echo):
    """Seconds of each phase of one round (those that can be estimated),
    printed with their origin."""
    echo(f'time per round at world {world} (assumes data loading keeps up: '
         'the rates are those of the model on batches already on the GPU):')
    for note in rates.notes:
        echo(f'  note: {note}')
    phases = {}
    for phase, clips, rate, flag in (
            ('train', plan['interval'] * n, rates.train,
             '--train-clips-per-s'),
            ('extract', n, rates.extract, '--extract-clips-per-s')):
        if rate is None:
            echo(f'  {phase}: unknown (pass --throughput gpu_check.json or '
                 f'{flag})')
            continue
        phases[phase] = clips / (rate.value * world)
        echo(f'  {phase} {clips:,} clips at {rate}: {_hours(phases[phase])}')
    if rates.kmeans is None:
        echo('  k-means: unknown (pass --throughput with a k-means row)')
        return phases
    m = rates.kmeans
    one_rank = 0.0
    for source, s in plan['sources'].items():
        seconds = kmeans_seconds(m, n, s['dim'], s['num_clusters'],
                                 s['num_iters'], s['max_points_per_centroid'])
        one_rank += seconds
        echo(f'  k-means {source}: {_hours(seconds)} on one rank, '
             f'{_hours(seconds / world)} sharded over {world}')
    echo(f"    (scaled from {m['num_points']:,} x {m['dim']}, "
         f"k={m['num_clusters']:,}, {m['num_iters']} iterations in "
         f"{m['seconds']:.2f} s, {rates.kmeans_origin}; assumed linear in "
         'rows x dim x k and ideal sharding)')
    phases.update({'kmeans on rank 0': one_rank,
                   'kmeans sharded': one_rank / world})
    if {'train', 'extract'} <= set(phases):
        base = phases['train'] + phases['extract']
        echo(f'  round: {_hours(base + one_rank)} with k-means on rank 0, '
             f'{_hours(base + one_rank / world)} sharded')
    return phases


def run(cfg, args, echo=print):
    """The dry run of ``cfg`` (see the module docstring); returns what it
    printed as a dict."""
    init_default_scope(cfg.get('default_scope', 'xdc'))
    world = args.world_size
    model = MODELS.build(cfg.model)
    params = {'video encoder': _parameters(model.video_encoder),
              'audio encoder': _parameters(model.audio_encoder),
              'heads': _parameters(model.heads), 'total': _parameters(model)}
    echo(f'dry run of {args.cfg}: nothing is trained or written')
    echo(f'model {type(model).__name__} ({model.variant}), parameters: ' +
         ', '.join(f'{k} {v:,}' for k, v in params.items()))

    train_cfg = cfg.train_dataloader.dataset
    manifest, header, n = dataset_rows(train_cfg)
    echo(f'train data: {manifest}: columns {header}, {n:,} rows')
    plan = clustering_plan(cfg, model)
    report = dict(parameters=params, manifest=manifest, rows=n,
                  world_size=world)
    if plan is None:
        echo(f'no {HOOK_TYPE}: nothing is clustered')
        return report
    extract_cfg = dict(train_cfg, **plan['extract_dataset'])
    if extract_cfg.get('ann_file') != train_cfg.get('ann_file'):
        echo('extraction data: {}: columns {}, {:,} rows'.format(
            *dataset_rows(extract_cfg)))
    for source, s in plan['sources'].items():
        echo(f"clustering {source}: {s['type']}, k={s['num_clusters']:,}, "
             f"{s['feat_dim']}-d -> {s['dim']}-d, {s['num_iters']} "
             'iterations')
        if s['num_clusters'] > n:
            raise ValueError(f"k={s['num_clusters']} for {source!r} is more "
                             f'than the {n:,} rows to cluster')
    lines, report['memory'] = _memory_lines(n, plan, world,
                                            max(model.feat_dims.values()))
    for line in lines:
        echo(line)

    epochs = cfg.train_cfg.max_epochs
    rounds = math.ceil(epochs / plan['interval'])
    echo(f"schedule: {plan['interval']} epochs per round, {rounds} rounds "
         f"({epochs} epochs of {n:,} clips)" +
         (', then a final clustering' if plan['final_round'] else ''))
    report.update(rounds=rounds, epochs_per_round=plan['interval'])
    report['round_seconds'] = _round_time(
        n, plan, world, load_throughputs(args, clip_shapes(train_cfg)[1]),
        echo)
    return report
