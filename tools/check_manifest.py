"""Decode every file of a manifest (or folder) and report the bad ones.

    python tools/check_manifest.py data/avobjects/manifest.csv \
        --label-column coarse_label --write-clean clean.csv

Exits 0 when every file is usable and no row repeats another, 1 otherwise,
2 when the manifest itself cannot be read (no path column, empty, ...) or
the ``--write-clean`` folder does not exist (checked before the files).
The results are cached where the dataset build finds them (same clip
settings: pass those of your config).
"""
import argparse
import os
import os.path as osp
import sys

from xdc_plugin.data.manifest_check import check_manifest


def _workers(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def _output_problem(out_csv):
    """Why ``out_csv`` cannot be written (checked before the long check),
    or None."""
    folder = osp.dirname(osp.abspath(out_csv))
    if not osp.isdir(folder):
        return f'--write-clean {out_csv}: the folder {folder} does not exist'
    if osp.isdir(out_csv):
        return f'--write-clean {out_csv} is a folder'
    if not os.access(folder, os.W_OK | os.X_OK):
        return f'--write-clean {out_csv}: the folder {folder} is not writable'
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', help='CSV manifest or folder of videos')
    parser.add_argument('--data-root', default=None,
                        help="root of the manifest's relative paths "
                        "(default: the manifest's folder)")
    parser.add_argument('--label-column', default=None,
                        help='label column (default: "label" if present)')
    parser.add_argument('--num-workers', type=_workers, default=None,
                        help='checking threads (default: one per core)')
    parser.add_argument('--num-frames', type=int, default=8)
    parser.add_argument('--frame-rate', type=float, default=None)
    parser.add_argument('--audio-duration', type=float, default=2.0)
    parser.add_argument('--audio-only', action='store_true',
                        help='audio files (no video stream needed); give '
                        '--clip-duration')
    parser.add_argument('--clip-duration', type=float, default=None)
    parser.add_argument('--headers-only', action='store_true',
                        help='probe headers only, no decoding')
    parser.add_argument('--no-cache', action='store_true',
                        help='neither read nor write the check cache')
    parser.add_argument('--write-clean', metavar='OUT.csv', default=None,
                        help='write the rows of the good files, each once')
    args = parser.parse_args(argv)
    problem = args.write_clean and _output_problem(args.write_clean)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    modalities = ('audio', ) if args.audio_only else ('video', 'audio')
    try:
        report = check_manifest(
            args.source, data_root=args.data_root,
            label_column=args.label_column, num_workers=args.num_workers,
            progress=True, cache=not args.no_cache,
            full_decode=not args.headers_only, num_frames=args.num_frames,
            frame_rate=args.frame_rate, audio_duration=args.audio_duration,
            clip_duration=args.clip_duration,
            modalities=modalities)
    except (OSError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(report.table())
    if args.write_clean:
        n = report.write_clean(args.write_clean)
        print(f'wrote {n} rows to {args.write_clean}')
    return 0 if report.clean else 1


if __name__ == '__main__':
    sys.exit(main())
