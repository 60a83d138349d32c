"""Downstream benchmarks of an encoder, one command each.

Video (mmaction2; every official split trained and tested, then the mean):

    python tools/benchmark.py ucf101 --encoder ENCODER --frames 32 \\
        --data-root data/ucf101 [--mode finetune|fc-only] [--splits 1 2 3] \\
        [--work-dir D] [--json OUT] [--cfg-options KEY=VALUE ...]
    python tools/benchmark.py hmdb51 ...

``--data-root`` holds the unpacked official release (``UCF-101/`` and
``ucfTrainTestlist/``; HMDB51's class folders and
``testTrainMulti_7030_splits/``) or mmaction2's ``videos/`` and
``annotations/``; the split files are converted into
``<work-dir>/annotations``.

Audio (a linear classifier on frozen features, the official folds):

    python tools/benchmark.py esc50 --encoder ENCODER --data-root ESC-50-master
    python tools/benchmark.py dcase2014 --encoder ENCODER --data-root D

ENCODER: ``random``, a release name (``r2plus1d_18_xdc_ig65m_kinetics``), an
exported encoder file or a training checkpoint of ours (read with
``weights_only=True``; ``--trust-checkpoint`` to unpickle an older one you
made yourself). An encoder trained as a host backbone (``HostBackbone``:
mmaction2's X3D, a pytorchvideo hub model, ...) is fine-tuned as that
backbone in the recognizer; give its training config with ``--cfg`` when
ENCODER is an exported file (or ``random``: the backbone at its random
init):

    python tools/benchmark.py ucf101 --encoder OUT/xdc_x3d_video-<h8>.pth \\
        --cfg configs/xdc_kinetics_x3d.yaml --frames 8 --data-root data/ucf101

``--json`` writes the records of ``tools/evaluate.py`` (accuracies 0-1).
"""
import argparse

from mmengine import dist

VIDEO_BENCHMARKS = ('ucf101', 'hmdb51')
AUDIO_BENCHMARKS = ('esc50', 'dcase2014')


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 2)[2])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--encoder', required=True, metavar='ENCODER',
                        help='random, a release name, an exported encoder '
                        'file or a training checkpoint')
    common.add_argument('--data-root', required=True,
                        help='the unpacked official release')
    common.add_argument('--json', metavar='OUT', help='write the records')
    common.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a full unpickle of a checkpoint you '
                        'made yourself')
    common.add_argument('--cfg', help="config of the encoder's training run "
                        '(architecture and input settings; a checkpoint '
                        'finds its own): needed for an exported encoder of '
                        'a host backbone, and for random to be one')
    sub = parser.add_subparsers(dest='benchmark', required=True)
    for name in VIDEO_BENCHMARKS:
        video = sub.add_parser(name, parents=[common],
                               help=f'{name}: 3 official splits, mmaction2')
        video.add_argument('--frames', type=int, required=True,
                           help='frames per clip (8: ablations, 32: the '
                           'state-of-the-art protocol)')
        video.add_argument('--mode', default='finetune',
                           choices=['finetune', 'fc-only'])
        video.add_argument('--splits', type=int, nargs='+',
                           default=[1, 2, 3], choices=[1, 2, 3])
        video.add_argument('--work-dir')
        video.add_argument('--config', help='the mmaction2 fine-tuning '
                           'config (default: the shipped benchmarks/'
                           f'{name}.yaml)')
        video.add_argument('--cfg-options', nargs='+', default=[],
                           metavar='KEY=VALUE',
                           help='config overrides, e.g. '
                           'train_cfg.max_epochs=10')
        video.add_argument('--skip-missing', action='store_true',
                           help='drop listed videos that are absent (logged '
                           'with their count) instead of stopping')
        video.add_argument('--launcher', default='none',
                           choices=['none', 'pytorch', 'slurm'])
        video.add_argument('--amp', action='store_true',
                           help='bf16 autocast, no loss scaler (as '
                           'tools/run_net.py --amp)')
    for name in AUDIO_BENCHMARKS:
        audio = sub.add_parser(name, parents=[common],
                               help=f'{name}: linear probe, official folds')
        audio.add_argument('--device', default='cpu')
        audio.add_argument('--num-workers', type=int, default=0)
    return parser


def run_video(args):
    from xdc_plugin.engine.runner.config import shipped_config
    from xdc_plugin.evaluation.video_benchmark import (format_table,
                                                       run_video_benchmark,
                                                       summary_record)
    config = args.config or shipped_config(f'benchmarks/{args.benchmark}.yaml')
    results = run_video_benchmark(
        args.benchmark, args.encoder, args.data_root, config=config,
        frames=args.frames, mode=args.mode, splits=args.splits,
        work_dir=args.work_dir, cfg_options=args.cfg_options,
        trusted=args.trust_checkpoint, skip_missing=args.skip_missing,
        launcher=args.launcher, amp=args.amp, cfg=args.cfg)
    run = dict(dataset=args.benchmark, encoder=args.encoder,
               frames=args.frames, mode=args.mode)
    record = summary_record(results, **run)
    table = format_table(results, record=record, **run)
    failed = [r.split for r in results if r.error]
    return [record] if record else [], table, failed


def run_audio(args):
    from xdc_plugin.evaluation.audio_benchmarks import run_audio_benchmark
    from xdc_plugin.probe.records import format_table
    records = run_audio_benchmark(
        args.benchmark, args.encoder, args.data_root, cfg=args.cfg,
        trusted=args.trust_checkpoint, device=args.device,
        num_workers=args.num_workers)
    return records, f'{args.benchmark}, encoder {args.encoder}\n' + (
        format_table(records)), []


def main(argv=None):
    from xdc_plugin.probe.records import write_json
    parser = build_parser()
    args = parser.parse_args(argv)
    run = run_video if args.benchmark in VIDEO_BENCHMARKS else run_audio
    try:
        records, table, failed = run(args)
    # A missing release or encoder file, a bad ENCODER or config key.
    except (OSError, ValueError, KeyError) as exc:
        parser.exit(1, f'error: {exc}\n')
    if dist.is_main_process():
        print(table)
        if args.json and records:
            write_json(records, args.json)
    if failed:
        parser.exit(1, f'error: split(s) {failed} failed (see FAILED above '
                    'and the log)\n')
    return records


if __name__ == '__main__':
    main()
