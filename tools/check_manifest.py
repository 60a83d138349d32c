"""Decode every file of a manifest (or folder) and report the bad ones.

    python tools/check_manifest.py data/avobjects/manifest.csv \
        --label-column coarse_label --num-workers 2 --write-clean clean.csv
"""
import argparse
import sys

from xdc_plugin.data.manifest import check_manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', help='CSV manifest or folder of videos')
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--label-column', default='label')
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--num-frames', type=int, default=8)
    parser.add_argument('--frame-rate', type=float, default=None)
    parser.add_argument('--audio-duration', type=float, default=2.0)
    parser.add_argument('--headers-only', action='store_true',
                        help='probe headers only, no decoding')
    parser.add_argument('--write-clean', metavar='OUT.csv', default=None,
                        help='write path,label of the good files')
    args = parser.parse_args(argv)
    report = check_manifest(
        args.source, data_root=args.data_root,
        label_column=args.label_column, num_workers=args.num_workers,
        full_decode=not args.headers_only, num_frames=args.num_frames,
        frame_rate=args.frame_rate, audio_duration=args.audio_duration)
    print(report.table())
    if args.write_clean:
        n = report.write_clean(args.write_clean)
        print(f'wrote {n} rows to {args.write_clean}')
    return report


if __name__ == '__main__':
    report = main()
    sys.exit(0 if report.counts['ok'] == len(report.rows) else 1)
