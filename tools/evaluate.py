"""Frozen-feature evaluation of an encoder on a labelled manifest.

    python tools/evaluate.py ENCODER --data MANIFEST --label-column COL \\
        --protocol linear knn --modality both [--folds 5] [--cfg CONFIG] \\
        [--json OUT]
    python tools/evaluate.py ENCODER --train-manifest A --test-manifest B \\
        --label-column COL --protocol linear --modality video

ENCODER: a training checkpoint (``work_dirs/x/epoch_48.pth``; its run's
config gives the architecture and input settings; it is read with
``weights_only=True``, ``--trust-checkpoint`` to unpickle an older one
you made), an exported encoder file (``<name>_video-<h8>.pth`` or
``_audio-``; one of a host backbone needs its training config, ``--cfg``),
a release name (``r2plus1d_18_xdc_ig65m_kinetics``: video only) or
``random`` (random-init encoders of ``--cfg``, seeded).

Features: per file, the pooled encoder outputs averaged over ``--num-clips``
(10) uniformly spaced clips (video, centre crop) or audio windows. Protocols:
``linear`` (standardised features, logistic regression, C chosen by inner
cross-validation on the training part) and ``knn`` (cosine; k=1 and 10, and
retrieval recall@1/5/10; a k not below the training part's size is left
out, with a warning). Stratified ``--folds``-fold over one manifest, or
the given train/test manifests. Prints a table; ``--json`` writes the
records (protocol, modality, metric, accuracy, std, folds, num_samples,
encoder, ...).
"""
import argparse
import time

from xdc_plugin.evaluation.features import DEFAULT_NUM_CLIPS
from xdc_plugin.evaluation.manifest_eval import evaluate_manifest
from xdc_plugin.probe.protocols import PROTOCOLS
from xdc_plugin.probe.records import format_table, write_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('encoder', metavar='ENCODER')
    data = parser.add_argument_group('data (one of)')
    data.add_argument('--data', metavar='MANIFEST',
                      help='CSV manifest, evaluated by stratified k-fold')
    data.add_argument('--train-manifest', metavar='A')
    data.add_argument('--test-manifest', metavar='B')
    parser.add_argument('--label-column', required=True)
    parser.add_argument('--protocol', nargs='+', choices=PROTOCOLS,
                        default=['linear'])
    parser.add_argument('--modality', choices=('video', 'audio', 'both'),
                        default='both')
    parser.add_argument('--folds', type=int, default=5)
    parser.add_argument('--cfg', metavar='CONFIG',
                        help='architecture (random) and input settings; '
                        "replaces a checkpoint's own config")
    parser.add_argument('--json', metavar='OUT', help='write the records')
    clips = parser.add_argument_group('clips')
    clips.add_argument('--num-clips', type=int, default=DEFAULT_NUM_CLIPS,
                       help='clips (video) or windows (audio) per file')
    clips.add_argument('--num-frames', type=int)
    clips.add_argument('--short-side', type=int)
    clips.add_argument('--crop-size', type=int)
    clips.add_argument('--audio-duration', type=float)
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a full unpickle of a checkpoint you made '
                        'yourself (needed only for files that hold more '
                        'than weights and numpy values)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--batch-size', type=int, default=4,
                        help='files per batch')
    parser.add_argument('--workers', type=int, default=0)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.train_manifest or args.test_manifest):
        parser.error('give --data, or --train-manifest and --test-manifest')
    if args.data is None and not (args.train_manifest and args.test_manifest):
        parser.error('--train-manifest and --test-manifest go together')
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    started = time.monotonic()
    overrides = dict(num_frames=args.num_frames, short_side=args.short_side,
                     crop_size=args.crop_size,
                     audio_duration=args.audio_duration)
    try:
        records = evaluate_manifest(
            args.encoder, args.label_column, data=args.data,
            train_manifest=args.train_manifest,
            test_manifest=args.test_manifest, protocols=args.protocol,
            modality=args.modality, folds=args.folds, cfg=args.cfg,
            trusted=args.trust_checkpoint, input_overrides=overrides,
            num_clips=args.num_clips, seed=args.seed,
            batch_size=args.batch_size, num_workers=args.workers,
            device=args.device, progress=not args.no_progress)
    except (ValueError, OSError, RuntimeError) as exc:
        parser.exit(1, f'error: {exc}\n')
    print(format_table(records))
    skipped = records[0]['num_skipped']
    print(f'{records[0]["num_samples"]} labelled files evaluated, '
          f'{skipped} skipped; {time.monotonic() - started:.0f} s')
    if args.json:
        write_json(records, args.json)
        print(f'records written to {args.json}')
    return records


if __name__ == '__main__':
    main()
