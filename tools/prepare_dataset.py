"""Prepare a dataset once for training: every file re-encoded at the
training resolution and frame rate (H.264 with short GOPs) with its audio
(AAC, resampled to the training rate, mono), a manifest that the dataset
build trusts without opening a file, and a report of the files left out.

    python tools/prepare_dataset.py data/kinetics400/train data/k400_128 \
        --class-folders --workers 16
    python tools/prepare_dataset.py train.csv data/k400_128 --dry-run

SOURCE is a CSV manifest (``path`` column, optional label column) or a
folder (scanned recursively; ``--class-folders``: each file's top folder is
its label, as in Kinetics' ``train/<class>/<id>.mp4``). OUT receives the
copies in the source's relative layout, ``manifest.csv`` (train with
``train_dataloader.dataset.ann_file=OUT/manifest.csv``), its sidecar and
``left_out.csv``. A rerun skips the files already done.

Exits 0 when every file was prepared, 1 when some were left out, 2 when
the run could not go on (unreadable manifest, other settings in OUT, ...).
"""
import argparse
import sys

from xdc_plugin.data.prepare import (PrepareSettings, PreparationError,
                                     estimate_preparation, prepare_dataset)


def _fps(text):
    return None if text == 'source' else float(text)


def build_parser():
    defaults = PrepareSettings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', help='CSV manifest or folder of videos')
    parser.add_argument('out', help='output folder')
    parser.add_argument('--data-root', default=None,
                        help="root of the manifest's relative paths "
                        "(default: the manifest's folder)")
    parser.add_argument('--label-column', default=None,
                        help='label column of the manifest (default: '
                        '"label" if present)')
    parser.add_argument('--class-folders', action='store_true',
                        help='folder source: label = top folder')
    parser.add_argument('--short-side', type=int,
                        default=defaults.short_side,
                        help='short side of the copies (even; smaller '
                        'videos keep their size)')
    parser.add_argument('--fps', type=_fps, default=defaults.fps,
                        help='frame rate of the copies, or "source" to keep '
                        "each file's (for recipes with frame_rate: null)")
    parser.add_argument('--gop', type=int, default=defaults.gop,
                        help='frames from one keyframe to the next')
    parser.add_argument('--crf', type=int, default=defaults.crf,
                        help='libx264 quality (lower: better, larger)')
    parser.add_argument('--preset', default=defaults.preset,
                        help='libx264 preset (slower: smaller files)')
    parser.add_argument('--tune', default=defaults.tune,
                        help='libx264 tune ("none" for none)')
    parser.add_argument('--sample-rate', type=int,
                        default=defaults.sample_rate,
                        help='audio sample rate of the copies')
    parser.add_argument('--keep-channels', action='store_true',
                        help='keep the audio channels (default: mono)')
    parser.add_argument('--audio-bitrate', type=int,
                        default=defaults.audio_bitrate,
                        help='AAC bit rate, bits/s')
    parser.add_argument('--pad-short-audio', action='store_true',
                        help='keep files whose audio ends before their '
                        'video (the missing audio is silence)')
    parser.add_argument('--silence-db', type=float,
                        default=defaults.silence_db,
                        help='leave out files whose audio is quieter '
                        '(RMS, dBFS)')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes (default: one per core; 0: this '
                        'process)')
    parser.add_argument('--dry-run', action='store_true',
                        help='prepare a sample in a temporary folder and '
                        'estimate the output size and time; OUT is not '
                        'touched')
    parser.add_argument('--sample', type=int, default=8,
                        help='files prepared by --dry-run')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        settings = PrepareSettings(
            short_side=args.short_side, fps=args.fps, gop=args.gop,
            crf=args.crf, preset=args.preset,
            tune=None if args.tune == 'none' else args.tune,
            sample_rate=args.sample_rate, mono=not args.keep_channels,
            audio_bitrate=args.audio_bitrate,
            pad_short_audio=args.pad_short_audio,
            silence_db=args.silence_db)
        source = dict(data_root=args.data_root,
                      label_column=args.label_column,
                      class_folders=args.class_folders,
                      workers=args.workers)
        if args.dry_run:
            print(estimate_preparation(args.source, settings, args.sample,
                                       **source).summary())
            return 0
        report = prepare_dataset(args.source, args.out, settings, **source)
    except (OSError, ValueError, PreparationError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(report.table())
    print(report.summary())
    return 0 if report.counts['ok'] == len(report.results) else 1


if __name__ == '__main__':
    sys.exit(main())
