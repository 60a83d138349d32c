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

    python bench/bench_data_pipeline.py [--data MANIFEST_OR_FOLDER]
        [--num-workers 0 2] [--clips 96]
"""
import argparse
import itertools
import os.path as osp
import time

import torch
from torch.utils.data import DataLoader

from xdc_plugin import compat
from xdc_plugin.data import AVClipDataset
from xdc_plugin.data.transforms import AudioLogMel

compat.alias_torchvision_functional_tensor()  # for pytorchvideo's imports

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
AVOBJECTS = osp.join(osp.dirname(REPO), 'shared', 'data', 'avobjects',
                     'manifest.csv')


def _rate(loader, clips, batch_size):
    """clips/s over ``clips`` clips, after one warm-up batch."""
    it = iter(loader)
    next(it)
    n_batches = max(1, clips // batch_size)
    t = time.perf_counter()
    n = 0
    for batch in itertools.islice(it, n_batches):
        n += len(batch['video'])
    return n / (time.perf_counter() - t), n


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', default=AVOBJECTS,
                        help='CSV manifest or folder (default: avobjects)')
    parser.add_argument('--label-column', default='coarse_label')
    parser.add_argument('--num-workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--clips', type=int, default=160)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--num-frames', type=int, default=8)
    parser.add_argument('--short-side', type=int, default=128)
    parser.add_argument('--crop-size', type=int, default=112)
    parser.add_argument('--skip-baseline', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    pipeline = [
        dict(type='SampleClip', num_frames=args.num_frames, mode='random'),
        dict(type='DecodeAVClip', audio_duration=2.0, sample_rate=16000),
        dict(type='VideoResize', short_side=args.short_side),
        dict(type='VideoCrop', size=args.crop_size, random=True),
        dict(type='VideoFlip', prob=0.5),
        dict(type='AudioLogMel'), dict(type='PackAVInputs')]
    kw = dict(pipeline=pipeline, check='headers', check_cache=False)
    if osp.isdir(args.data):
        ds = AVClipDataset(data_root=args.data, **kw)
    else:
        ds = AVClipDataset(args.data, label_column=args.label_column, **kw)
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    fps = infos[0]['fps']
    clip_duration = args.num_frames / fps
    print(f'{len(ds)} files from {args.data}; clip {args.num_frames} frames '
          f'at {fps:g} fps ({clip_duration:.3f} s), crop {args.crop_size}, '
          f'batch {args.batch_size}, {args.clips} clips timed')

    rows = []
    for workers in args.num_workers:
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True,
                            num_workers=workers,
                            persistent_workers=False)
        rows.append(('AVClipDataset (ours)', workers,
                     *_rate(loader, args.clips, args.batch_size)))
        if args.skip_baseline:
            continue
        from pytorchvideo.data import LabeledVideoDataset, make_clip_sampler
        ptv = LabeledVideoDataset(
            [(s['path'], {'label': s['label']}) for s in infos],
            make_clip_sampler('random', clip_duration),
            video_sampler=torch.utils.data.RandomSampler,
            transform=_PTVTransform(args.num_frames, args.short_side,
                                    args.crop_size),
            decode_audio=True, decoder='pyav')
        loader = DataLoader(ptv, batch_size=args.batch_size,
                            num_workers=workers, collate_fn=_ptv_collate)
        rows.append(('pytorchvideo LabeledVideoDataset', workers,
                     *_rate(loader, args.clips, args.batch_size)))

    print(f'\n| {"pipeline":<34} | workers | clips | clips/s |')
    print(f'|{"-" * 36}|---------|-------|---------|')
    for name, workers, rate, n in rows:
        print(f'| {name:<34} | {workers:>7} | {n:>5} | {rate:>7.1f} |')
    for workers in args.num_workers:
        r = {name: rate for name, w, rate, _ in rows if w == workers}
        if len(r) == 2:
            ours, base = r['AVClipDataset (ours)'], \
                r['pytorchvideo LabeledVideoDataset']
            print(f'ours / pytorchvideo, {workers} workers: '
                  f'{ours / base:.2f}x')
    return rows


if __name__ == '__main__':
    main()
