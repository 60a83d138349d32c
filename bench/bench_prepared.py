"""Clips/s of the training pipeline on original files against their
prepared copies (``tools/prepare_dataset.py``), the cost of preparing them,
and the bytes.

1. Prepares ``--source`` (default ``../shared/data/realclips``) with the
   tool's default settings (short side 128, 30 fps, H.264 with a keyframe
   every 16 frames, 16 kHz mono AAC) into a temporary folder with
   ``--prep-workers`` processes: wall time, CPU time (the per-file CPU the
   workers measured, and every process's, imports included), seconds of
   media per CPU second, bytes before and after.
2. Times the Kinetics recipe's train pipeline (``configs/xdc_kinetics.yaml``:
   8 frames at 30 fps, short side 128, random 112 crop, flip, 2 s of 16 kHz
   audio to a 40-band log-mel at a 10 ms hop) through a DataLoader on the
   originals and on the copies, per source resolution (the ``width`` and
   ``height`` columns of the source manifest), with avobjects (128x128,
   15 fps) as the reference. Every loader is timed once per round, for
   ``--repeats`` rounds, so that a load on the machine weighs on all alike;
   a rate is clips over the summed time.
3. Builds the dataset of a prepared manifest of ``--manifest-rows`` rows
   (written by the tool's writer, with its sidecar; the files need not
   exist): seconds, and the media files opened (counted at ``av.open``).

    python bench/bench_prepared.py [--resolutions 1280x720 640x360]
        [--clips 64] [--repeats 3] [--num-workers 0] [--prep-workers 2]
        [--manifest-rows 100000]
"""
import argparse
import csv
import os.path as osp
import resource
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from bench_data_pipeline import SHARED, _ours_loader, _timed  # noqa: E402

from xdc_plugin.data import AVClipDataset  # noqa: E402
from xdc_plugin.data.prepare import PrepareSettings, prepare_dataset  # noqa
from xdc_plugin.data.prepared_manifest import (  # noqa: E402
    read_sidecar, write_prepared_manifest)
from xdc_plugin.engine.runner.config import load_config, shipped_config  # noqa

REFERENCE = 'avobjects'


def kinetics_pipeline():
    cfg = load_config(shipped_config('xdc_kinetics.yaml'))
    return cfg.train_dataloader.dataset.pipeline


def _cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime + r.ru_stime for r in (own, children))


def prepare(source, out, workers):
    """(report, wall s, CPU s of every process)."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    report = prepare_dataset(source, out, PrepareSettings(), workers=workers,
                             progress=False)
    return report, time.perf_counter() - wall, _cpu_seconds() - cpu


def _write_manifest(path, paths):
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path'])
        writer.writerows([p] for p in paths)
    return path


def groups(source, prepared_manifest, resolutions, tmp):
    """``{'WxH': (original manifest, prepared manifest, files)}`` by the
    source manifest's width and height columns; the prepared one is a
    prepared manifest of those rows (trusted as the whole is)."""
    with open(source, newline='') as f:
        root = osp.dirname(osp.abspath(source))
        size = {osp.normpath(osp.join(root, r['path'])):
                f'{r["width"]}x{r["height"]}' for r in csv.DictReader(f)}
    with open(prepared_manifest, newline='') as f:
        rows = list(csv.DictReader(f))
    folder = osp.dirname(prepared_manifest)
    settings = read_sidecar(prepared_manifest)['settings']
    found = {}
    for row in rows:
        found.setdefault(size[row['source_path']], []).append(row)
    wanted = resolutions or sorted(
        found, key=lambda s: -int(s.split('x')[0]) * int(s.split('x')[1]))
    out = {}
    for name in wanted:
        if name not in found:
            raise SystemExit(f'no prepared {name} file (sizes: '
                             f'{sorted(found)})')
        picked = found[name]
        prepared = osp.join(folder, f'bench_{name}.csv')
        write_prepared_manifest(prepared, picked, settings)
        original = _write_manifest(osp.join(tmp, f'{name}.csv'),
                                   [r['source_path'] for r in picked])
        out[name] = (original, prepared, len(picked))
    return out


def rates(datasets, args):
    """Clips/s of each dataset's loader, timed once per round."""
    totals = {name: [0, 0.0] for name in datasets}
    for _ in range(args.repeats):
        for name, ds in datasets.items():
            n, sec = _timed(_ours_loader(ds, args.num_workers, args.clips,
                                         args.batch_size),
                            args.clips, args.batch_size)
            totals[name][0] += n
            totals[name][1] += sec
    return {name: n / sec for name, (n, sec) in totals.items()}


def manifest_build(rows, pipeline, tmp):
    """(seconds, files opened) of building a prepared manifest's dataset
    of ``rows`` Kinetics-like rows: 400 class folders of 10 s clips."""
    import av
    manifest = osp.join(tmp, 'rows.csv')
    write_prepared_manifest(manifest, (dict(
        path=f'c{i % 400:03d}/{i:07d}.mp4', label=f'c{i % 400:03d}',
        duration=10.0, fps=30.0, width=228, height=128,
        audio_sample_rate=16000, num_frames=300,
        source_path=f'/data/{i:07d}.mp4') for i in range(rows)),
        PrepareSettings().record())
    opened, real = [], av.open
    av.open = lambda *a, **kw: opened.append(a[0]) or real(*a, **kw)
    try:
        start = time.perf_counter()
        ds = AVClipDataset(manifest, pipeline=pipeline)
        seconds = time.perf_counter() - start
    finally:
        av.open = real
    assert len(ds) == rows
    return seconds, len(opened)


def _dataset(manifest, pipeline):
    # Headers only: the originals' check is not what is timed.
    return AVClipDataset(manifest, pipeline=pipeline, check='headers',
                         check_cache=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--source', default=osp.join(SHARED, 'realclips',
                                                     'manifest.csv'),
                        help='manifest with path, width and height columns')
    parser.add_argument('--resolutions', nargs='*', default=None,
                        help='source sizes WxH to time (default: all)')
    parser.add_argument('--clips', type=int, default=64,
                        help='clips timed per loader and round')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--num-workers', type=int, default=0,
                        help='DataLoader workers of each loader')
    parser.add_argument('--prep-workers', type=int, default=2,
                        help='processes of the preparation')
    parser.add_argument('--manifest-rows', type=int, default=100_000,
                        help='rows of the prepared manifest whose build is '
                        'timed')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pipeline = kinetics_pipeline()
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'prepared')
        report, wall, cpu = prepare(args.source, out, args.prep_workers)
        print(f'Preparation of {args.source} ({args.prep_workers} '
              f'processes, default settings):\n')
        print('| files | prepared | media s | source MB | prepared MB | '
              'prepared / source | wall s | CPU s per file, summed | media '
              's per CPU s | CPU s, all processes |')
        print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
        print(f'| {len(report.results)} | {report.counts["ok"]} | '
              f'{report.source_seconds:.0f} | {report.source_bytes / 1e6:.1f}'
              f' | {report.output_bytes / 1e6:.1f} | '
              f'{report.output_bytes / report.source_bytes:.3f} | {wall:.1f} '
              f'| {report.cpu_seconds:.1f} | '
              f'{report.source_seconds / report.cpu_seconds:.1f} | '
              f'{cpu:.1f} |', flush=True)
        found = groups(args.source, report.manifest, args.resolutions, tmp)
        datasets = {REFERENCE: _dataset(
            osp.join(SHARED, 'avobjects', 'manifest.csv'), pipeline)}
        for name, (original, prepared, _) in found.items():
            datasets[f'{name} original'] = _dataset(original, pipeline)
            datasets[f'{name} prepared'] = _dataset(prepared, pipeline)
        assert all(datasets[f'{n} prepared'].prepared for n in found)
        measured = rates(datasets, args)
        build_s, opened = manifest_build(args.manifest_rows, pipeline, tmp)
    reference = measured[REFERENCE]
    print(f'\nClips/s of the Kinetics train pipeline, {args.clips} clips x '
          f'{args.repeats} rounds per loader, batch {args.batch_size}, '
          f'{args.num_workers} DataLoader workers, torch threads 1; '
          f'{REFERENCE}: {reference:.1f} clips/s ({len(datasets[REFERENCE])}'
          ' files)\n')
    print('| source | files | original clips/s | prepared clips/s | '
          'prepared / original | prepared / avobjects |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, (_, _, files) in found.items():
        before = measured[f'{name} original']
        after = measured[f'{name} prepared']
        print(f'| {name} | {files} | {before:.1f} | {after:.1f} | '
              f'{after / before:.2f}x | {after / reference:.2f} |')
    print(f'\nBuild of a {args.manifest_rows}-row prepared manifest (files '
          f'that do not exist): {build_s:.2f} s, {opened} media files '
          'opened')
    return report, measured


if __name__ == '__main__':
    main()
