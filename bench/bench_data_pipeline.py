"""Throughput (clips/s) of the AV data pipeline against pytorchvideo.

(a) ``AVClipDataset`` with the train pipeline of the configs (random
    clip, 2 s audio window at 16 kHz, log-mel, resize/crop/flip) through a
    DataLoader;
(b) ``pytorchvideo.data.LabeledVideoDataset`` (random clip sampler,
    ``decode_audio=True``, ``decoder='pyav'``) with the equivalent transforms
    (``UniformTemporalSubsample``, ``ShortSideScale``, random crop and flip,
    the same log-mel on its audio, resampled to 16 kHz when needed).

Both decode the same files with the same clip (``num_frames`` frames at the
files' native rate, i.e. a ``num_frames / fps`` s clip). Differences that
favour the baseline: pytorchvideo returns the audio of the clip span only
(0.53 s for 8 frames at 15 fps), not a 2 s window, and its IterableDataset
gives every DataLoader worker the whole file list.

The two are timed in alternation (``--repeats`` rounds of ours then
pytorchvideo), so that a load on the machine weighs on both alike; the
ratio is of the summed times. ``--profile`` adds where our pipeline spends
its time, in one process (cProfile).

Data sources: ``avobjects`` (``../shared/data/avobjects``),
``realclips:WxH`` (the ``../shared/data/realclips`` files of that size), or
a CSV manifest or folder.

    python bench/bench_data_pipeline.py [--sources avobjects
        realclips:640x360 realclips:1280x720] [--num-workers 0 2]
        [--clips 64] [--repeats 2] [--profile]
"""
import argparse
import csv
import itertools
import os.path as osp
import tempfile
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

from xdc_plugin import compat
from xdc_plugin.data import AVClipDataset
from xdc_plugin.data.transforms import AudioLogMel

compat.alias_torchvision_functional_tensor()  # for pytorchvideo's imports

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.join(osp.dirname(REPO), 'shared', 'data')
DEFAULT_SOURCES = ('avobjects', 'realclips:640x360', 'realclips:1280x720')


def resolve_source(source, tmp_dir):
    """Manifest (CSV with ``path`` and ``label``) of a named source."""
    if source == 'avobjects':
        return osp.join(SHARED, 'avobjects', 'manifest.csv')
    if source.startswith('realclips:'):
        width, height = source.split(':', 1)[1].split('x')
        root = osp.join(SHARED, 'realclips')
        with open(osp.join(root, 'manifest.csv')) as f:
            paths = [osp.join(root, r['path']) for r in csv.DictReader(f)
                     if (r['width'], r['height']) == (width, height)]
        if not paths:
            raise SystemExit(f'no {width}x{height} file in {root}')
        manifest = osp.join(tmp_dir, source.replace(':', '_') + '.csv')
        with open(manifest, 'w') as f:
            f.write('path,label\n' + ''.join(f'{p},0\n' for p in paths))
        return manifest
    return source


def train_pipeline(num_frames, short_side, crop_size):
    return [
        dict(type='SampleClip', num_frames=num_frames, mode='random'),
        dict(type='DecodeAVClip', audio_duration=2.0, sample_rate=16000),
        dict(type='VideoResize', short_side=short_side),
        dict(type='VideoCrop', size=crop_size, random=True),
        dict(type='VideoFlip', prob=0.5),
        dict(type='AudioLogMel'), dict(type='PackAVInputs')]


class _PTVTransform:
    """pytorchvideo-side transforms equivalent to our train pipeline."""

    def __init__(self, num_frames, short_side, crop_size, sample_rate=16000):
        from pytorchvideo.transforms import (ShortSideScale,
                                             UniformTemporalSubsample)
        from torchvision.transforms import RandomCrop, RandomHorizontalFlip
        self.video = torch.nn.Sequential(
            UniformTemporalSubsample(num_frames), ShortSideScale(short_side),
            RandomCrop(crop_size), RandomHorizontalFlip())
        self.logmel = AudioLogMel()
        self.sample_rate = sample_rate

    def __call__(self, sample):
        import torchaudio
        video = self.video(sample['video']).to(torch.uint8)  # (C, T, H, W)
        audio = sample['audio'].float()
        if audio.dim() > 1:
            audio = audio.mean(-1)
        sr = sample.get('audio_sample_rate') or self.sample_rate
        if sr != self.sample_rate:
            audio = torchaudio.functional.resample(audio, sr,
                                                   self.sample_rate)
        mel = self.logmel(dict(audio=audio[None],
                               sample_rate=self.sample_rate))['audio']
        return dict(video=video, audio=mel, label=sample['label'])


def _ptv_collate(batch):  # audio lengths may differ by a sample
    return dict(video=torch.stack([b['video'] for b in batch]),
                audio=[b['audio'] for b in batch])


def _ours_loader(ds, workers, clips, batch_size):
    sampler = RandomSampler(ds, replacement=True,
                            num_samples=clips + 2 * batch_size)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler,
                      num_workers=workers)


def _ptv_loader(infos, workers, clips, batch_size, args):
    from pytorchvideo.data import LabeledVideoDataset, make_clip_sampler
    # One pass over its list is all the dataset gives: repeat the files.
    repeat = -(-(clips + 2 * batch_size) // len(infos))
    ptv = LabeledVideoDataset(
        [(s['path'], {'label': s['label']}) for s in infos] * repeat,
        make_clip_sampler('random', args.num_frames / infos[0]['fps']),
        video_sampler=RandomSampler,
        transform=_PTVTransform(args.num_frames, args.short_side,
                                args.crop_size),
        decode_audio=True, decoder='pyav')
    return DataLoader(ptv, batch_size=batch_size, num_workers=workers,
                      collate_fn=_ptv_collate)


def _timed(loader, clips, batch_size):
    """(clips, seconds) over ``clips`` clips, after one warm-up batch."""
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = sum(len(b['video']) for b in
            itertools.islice(it, max(1, clips // batch_size)))
    return n, time.perf_counter() - t


def compare(ds, workers, args):
    """Summed (clips, seconds) of ours and pytorchvideo, alternated."""
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    totals = {'ours': [0, 0.0], 'pytorchvideo': [0, 0.0]}
    for _ in range(args.repeats):
        runs = [('ours', _ours_loader(ds, workers, args.clips,
                                      args.batch_size))]
        if not args.skip_baseline:
            runs.append(('pytorchvideo', _ptv_loader(
                infos, workers, args.clips, args.batch_size, args)))
        for name, loader in runs:
            n, sec = _timed(loader, args.clips, args.batch_size)
            totals[name][0] += n
            totals[name][1] += sec
    return {k: n / sec for k, (n, sec) in totals.items() if n}


# Stages of our pipeline: each sums the cProfile time of built-ins whose
# name holds a pattern ('own'), or of a Python function, alone ('self': a
# generator's own time holds the demuxing it drives) or with what it calls
# ('cum').
_STAGES = (
    ('demux + decode (video and audio)', (
        ('own', "'decode' of 'av.packet.Packet'"),
        ('self', 'MediaSource.frames'))),
    ('open/close file', (('own', 'av.container.core.open'),
                         ('own', "'close' of 'av.container"))),
    ('audio resample (swr)', (('own', 'AudioResampler'),)),
    ('colour conversion + resize', (('own', 'VideoReformatter'),
                                    ('own', '_upsample_bilinear2d_aa'))),
    ('stack/copy frames', (('own', 'torch.stack'), ('own', 'contiguous'),
                           ('own', 'to_ndarray'), ('numpy', 'stack'),
                           ('numpy', 'concatenate'))),
    ('log-mel', (('cum', 'AudioLogMel.transform'),)),
)


def _code_key(qualname):
    from xdc_plugin.data import media_source, transforms
    obj = transforms if hasattr(transforms, qualname.split('.')[0]) \
        else media_source
    for part in qualname.split('.'):
        obj = getattr(obj, part)
    code = obj.__code__
    return code.co_filename, code.co_firstlineno


def profile(ds, clips):
    """(stage, ms per clip) rows and the total ms per clip, of ``clips``
    clips decoded in this process under cProfile."""
    import cProfile
    import pstats
    ds[0]
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for i in range(clips):
        ds[i % len(ds)]
    prof.disable()
    total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats

    def seconds(how, what):
        if how == 'own':
            return sum(v[2] for (f, _, name), v in stats.items()
                       if f == '~' and what in name)
        if how == 'numpy':
            return sum(v[2] for (f, _, name), v in stats.items()
                       if '/numpy/' in f and name == what)
        key = _code_key(what)
        return sum(v[2 if how == 'self' else 3]
                   for (f, line, _), v in stats.items() if (f, line) == key)

    rows = [(stage, sum(seconds(*part) for part in parts))
            for stage, parts in _STAGES]
    rows.append(('other (python, sampling, crop, flip, seeding)',
                 total - sum(sec for _, sec in rows)))
    return [(stage, 1e3 * sec / clips) for stage, sec in rows], \
        1e3 * total / clips


def _row(source, files, workers, rates):
    base = rates.get('pytorchvideo')
    ratio = f'{rates["ours"] / base:.2f}x' if base else '-'
    return (f'| {source} | {files} | {workers} | {rates["ours"]:.1f} | '
            f'{base or 0:.1f} | {ratio} |')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sources', nargs='+', default=DEFAULT_SOURCES)
    parser.add_argument('--num-workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--clips', type=int, default=64,
                        help='clips timed per pipeline and round')
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--num-frames', type=int, default=8)
    parser.add_argument('--short-side', type=int, default=128)
    parser.add_argument('--crop-size', type=int, default=112)
    parser.add_argument('--skip-baseline', action='store_true')
    parser.add_argument('--profile', action='store_true',
                        help='also profile our pipeline in one process')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f'clip {args.num_frames} frames at the file rate, short side '
          f'{args.short_side}, crop {args.crop_size}, flip, 2 s audio to '
          f'40-band log-mel; batch {args.batch_size}, {args.clips} clips x '
          f'{args.repeats} rounds per row; torch threads 1')
    rows, profiles = [], []
    print('\n| source | files | workers | ours clips/s | pytorchvideo '
          'clips/s | ours / pytorchvideo |')
    print('|---|---:|---:|---:|---:|---:|', flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources:
            ds = AVClipDataset(
                resolve_source(source, tmp),
                pipeline=train_pipeline(args.num_frames, args.short_side,
                                        args.crop_size),
                check='headers', check_cache=False)
            for workers in args.num_workers:
                rates = compare(ds, workers, args)
                rows.append((source, len(ds), workers, rates))
                print(_row(*rows[-1]), flush=True)
            if args.profile:
                profiles.append((source, *profile(ds, args.clips)))
    for source, stages, total in profiles:
        print(f'\nWhere our pipeline spends its time, {source} '
              f'({total:.1f} ms per clip, one process, cProfile):\n')
        print('| stage | ms per clip | share |')
        print('|---|---:|---:|')
        for stage, ms in stages:
            print(f'| {stage} | {ms:.2f} | {100 * ms / total:.0f}% |')
    return rows, profiles


if __name__ == '__main__':
    main()
