"""Time rank 0 spends alone in a clustering round, before and after every
rank writes its part of the round file and runs its share of the probe.

Two (``--world``) gloo ranks on this machine run the rank-0 steps of a
round at each size N, on synthetic data: a dataset of N serialized clip
infos exactly as ``AVClipDataset`` holds them after its build (path, label
of ``--classes``, duration, fps; made without the per-file check), the
extraction pipeline of ``configs/xdc_ig65m.yaml``, random labels and
distances of 2 clustering sources with k = 8192, and each rank's shard of
``--dim``-d features. Each step starts at a barrier; a rank's time is from
there to the end of its own work. "Rank 0 alone" is rank 0's time minus
the other ranks' longest: how long they wait for it in their next
collective (NCCL's default timeout is 10 minutes).

* round file, before: rank 0 writes every clip while the others wait
  (``save_round`` as one rank: one part of N clips and the index). The old
  writer did the same arrays in three passes over the clips (paths,
  labels, windows) plus the label statistics, so this baseline is a lower
  bound of the old time.
* round file, after: every rank writes the part of its N / W clips, rank 0
  then the index (``save_round`` with the process group).
* probe sample: choosing and gathering the bounded sample of labelled rows
  (``probe_shard`` with no protocol): unchanged (measured once, shown in
  both columns), every rank.
* probe jobs, before: rank 0 runs ``probe_round`` on the gathered sample
  (``--probe-samples`` rows of 2 modalities of ``--probe-dim``, every
  class of ``--classes``) while the others wait; after: every rank runs
  its share (``probe_shard`` on that sample). Its cost does not depend on
  N.

Threads: one per rank (torchrun sets ``OMP_NUM_THREADS=1`` when it starts
more than one process). Memory per rank is printed (``VmHWM``): at 10M
clips, about 1.5 GB of dataset infos per rank and some GB more on rank 0
for the "before" write; round files go to ``--out-dir`` (default: a
temporary folder), a few hundred MB at 10M clips.

    python bench/bench_round_rank0.py --sizes 1000000 10000000
    python bench/bench_round_rank0.py --sizes 20000      # a quick check
"""
import argparse
import os

os.environ.setdefault('OMP_NUM_THREADS', '1')  # as torchrun, before numpy

import glob  # noqa: E402
import os.path as osp  # noqa: E402
import pickle  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as torch_dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

K, SOURCES = 8192, ('video', 'audio')
CHUNK = 100_000
STEPS = ('round file', 'probe sample', 'probe jobs')


def ig65m_extract_pipeline():
    from xdc_plugin.data.transforms import centred_pipeline
    from xdc_plugin.engine.runner.config import load_config, shipped_config
    cfg = load_config(shipped_config('xdc_ig65m.yaml'))
    return centred_pipeline(cfg.train_dataloader.dataset.pipeline)


def synthetic_dataset(num_clips, num_classes, pipeline):
    """An ``AVClipDataset`` of ``num_clips`` serialized infos (as mmengine
    serializes them), built in chunks to keep the peak memory low."""
    from xdc_plugin.data import AVClipDataset
    dataset = AVClipDataset(pipeline=pipeline, lazy_init=True)
    rng = np.random.default_rng(0)
    chunks, sizes = [], []
    for start in range(0, num_clips, CHUNK):
        stop = min(start + CHUNK, num_clips)
        durations = rng.uniform(5, 60, stop - start)
        blobs = [pickle.dumps(dict(
            path=f'/datasets/ig65m/videos/{i // 10000:04d}/{i:010d}.mp4',
            label=i % num_classes, duration=float(duration), fps=30.0),
            protocol=4) for i, duration in zip(range(start, stop), durations)]
        sizes += [len(b) for b in blobs]
        chunks.append(np.frombuffer(b''.join(blobs), np.uint8))
    dataset.data_bytes = np.concatenate(chunks)
    dataset.data_address = np.cumsum(np.asarray(sizes, np.int64))
    dataset._metainfo['classes'] = [f'class{c}' for c in range(num_classes)]
    dataset._fully_initialized = True
    return dataset


def synthetic_results(num_clips):
    """What ``cluster_shard`` returns for 2 sources, the same on every
    rank."""
    from xdc_plugin.clustering.kmeans import ClusterResult
    results = {}
    for s, source in enumerate(SOURCES):
        rng = np.random.default_rng(s)
        labels = rng.integers(0, K, num_clips, dtype=np.int32)
        results[source] = ClusterResult(
            labels=labels, inertia=0.0, num_resplit=0,
            centroids=rng.standard_normal((K, 128), dtype=np.float32),
            counts=np.bincount(labels, minlength=K),
            distances=rng.random(num_clips, dtype=np.float32))
    return results


def planted_sample(num, dim, num_classes, seed=0):
    """Features that carry the class (a probe has something to learn)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num) % num_classes
    centres = rng.standard_normal((num_classes, dim), dtype=np.float32)
    return labels, torch.from_numpy(
        centres[labels] + 2 * rng.standard_normal((num, dim),
                                                  dtype=np.float32))


def _peak_mib():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return float('nan')


class _Clock:
    """Each step from a common barrier to the end of this rank's work."""

    def __init__(self):
        self.seconds = {}

    def time(self, key, work):
        torch_dist.barrier()
        start = time.perf_counter()
        work()
        self.seconds[key] = time.perf_counter() - start


def _worker(rank, world, opts, init_file, out_dir):
    from mmengine import dist

    from xdc_plugin.clustering.collectives import ProcessGroupCollectives
    from xdc_plugin.clustering.round_file import round_path, save_round
    from xdc_plugin.engine.round.feature_shard import FeatureShard
    from xdc_plugin.engine.round.round_probe_sample import probe_shard
    from xdc_plugin.probe.round_probe import probe_round
    torch.set_num_threads(1)
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world)
    collectives = ProcessGroupCollectives()
    alone = SimpleNamespace(rank=0, world_size=1,
                            all_reduce_sum=lambda tensor: tensor)
    pipeline = ig65m_extract_pipeline()
    probe = dict(folds=opts['folds'], max_samples=opts['probe_samples'])
    sample = {}
    for seed, modality in enumerate(SOURCES):
        labels, sample[modality] = planted_sample(
            opts['probe_samples'], opts['probe_dim'], opts['classes'], seed)
    mine = torch.arange(rank, len(labels), world)
    sample_shard = FeatureShard(mine, {m: f[mine] for m, f in sample.items()})
    rows = []
    for n in opts['sizes']:
        dataset = synthetic_dataset(n, opts['classes'], pipeline)
        results = synthetic_results(n)
        ground_truth = np.arange(n) % opts['classes']
        held = torch.arange(rank, n, world)
        shard = FeatureShard(held, {m: torch.randn(len(held), opts['dim'])
                                    for m in SOURCES})
        folder = osp.join(out_dir, f'n{n}')
        clock = _Clock()

        def write(name, collectives):
            save_round(round_path(osp.join(folder, name), 0), 0, 0, results,
                       dataset, variant='xdc', collectives=collectives)

        clock.time(('round file', 'before'),
                   lambda: rank == 0 and write('before', alone))
        clock.time(('round file', 'after'),
                   lambda: write('after', collectives))
        clock.time(('probe sample', 'unchanged'), lambda: probe_shard(
            shard, ground_truth, collectives, protocols=(), **probe))
        clock.time(('probe jobs', 'before'), lambda: rank == 0 and
                   probe_round(sample, labels, **probe))
        clock.time(('probe jobs', 'after'), lambda: probe_shard(
            sample_shard, labels, collectives, **probe))
        torch_dist.barrier()
        sizes = {name: sum(osp.getsize(p) for p in glob.glob(
            osp.join(folder, name, 'clusters', '*.npz')))
            for name in ('before', 'after')}
        rows.append(dict(n=n, seconds=clock.seconds, bytes=sizes))
        dataset = results = shard = None  # freed before the next size
    everyone = dist.all_gather_object(dict(rows=rows, peak_mib=_peak_mib()))
    if rank == 0:
        with open(osp.join(out_dir, 'report.pkl'), 'wb') as f:
            pickle.dump(everyone, f)
    torch_dist.destroy_process_group()


def table(report, opts):
    """Markdown rows: per N and step, rank 0's and the others' seconds
    before and after, and rank 0's time alone."""
    from xdc_plugin.tables import markdown_table
    header = ('N', 'step', 'before: rank 0 s', 'before: others s',
              'after: rank 0 s', 'after: others s', 'rank 0 alone before s',
              'rank 0 alone after s')
    rows, totals = [], {}
    for i, n in enumerate(opts['sizes']):
        for step in STEPS:
            cells, alone = [], []
            for when in ('before', 'after'):
                seconds = [r['rows'][i]['seconds'] for r in report]
                times = [s.get((step, when), s.get((step, 'unchanged')))
                         for s in seconds]
                others = max(times[1:])
                cells += [times[0], others]
                alone.append(max(0.0, times[0] - others))
            for key, value in zip(('before', 'after'), alone):
                totals[n, key] = totals.get((n, key), 0.0) + value
            rows.append([f'{n:,}', step] +
                        [f'{x:.2f}' for x in cells + alone])
        rows.append([f'{n:,}', '**rank 0 alone**', '', '', '', ''] +
                    [f'{totals[n, when]:.2f}' for when in ('before', 'after')])
    return markdown_table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[1_000_000, 10_000_000])
    parser.add_argument('--world', type=int, default=2)
    parser.add_argument('--dim', type=int, default=16,
                        help='feature dimension of the shards (the probe '
                        'sample is --probe-dim)')
    parser.add_argument('--classes', type=int, default=400,
                        help='dataset classes (Kinetics: 400)')
    parser.add_argument('--probe-samples', type=int, default=5000,
                        help="the probe's max_samples (its default)")
    parser.add_argument('--probe-dim', type=int, default=512)
    parser.add_argument('--folds', type=int, default=5)
    parser.add_argument('--out-dir', help='where the round files go '
                        '(default: a temporary folder, removed)')
    args = parser.parse_args()
    opts = vars(args)
    print(f'{args.world} gloo ranks, 1 thread each, torch '
          f'{torch.__version__}; shards {args.dim}-d, probe '
          f'{args.probe_samples} x {args.probe_dim} of {args.classes} '
          f'classes, {args.folds} folds')
    with tempfile.TemporaryDirectory(dir=args.out_dir) as out_dir:
        mp.start_processes(_worker, nprocs=args.world, start_method='spawn',
                           args=(args.world, opts,
                                 osp.join(out_dir, 'init'), out_dir))
        with open(osp.join(out_dir, 'report.pkl'), 'rb') as f:
            report = pickle.load(f)
    print(table(report, opts))
    for i, n in enumerate(args.sizes):
        written = report[0]['rows'][i]['bytes']
        print(f'N={n:,}: round file {written["before"] / 2**20:,.1f} MiB '
              f'in one part, {written["after"] / 2**20:,.1f} MiB in '
              f'{args.world} parts')
    print('peak MiB per rank: ' + ', '.join(
        f'{r["peak_mib"]:,.0f}' for r in report))


if __name__ == '__main__':
    main()
