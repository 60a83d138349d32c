"""``python tools/visualize_clusters.py WORK_DIR``: the cluster gallery of a
run as a static site that opens offline (``WORK_DIR/gallery/index.html``)."""
import argparse
import sys
import time

from xdc_plugin.visualization.gallery import GalleryError, build_gallery


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def _round(value):
    if value in ('all', 'final') or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(
        f"expected 'all', 'final' or a round number, got {value!r}")


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write the cluster gallery of an XDC run: audio '
        'clusters to listen to, visual clusters to look at, per round.')
    parser.add_argument('work_dir', help='the run\'s work dir (holds '
                        'clusters/round_<r>.npz)')
    parser.add_argument('--round', default='all', type=_round,
                        help="'all' (default: a page per round), 'final' or "
                        'a round number')
    parser.add_argument('--top-clusters', type=_positive, default=12,
                        help='clusters shown per section (default 12)')
    parser.add_argument('--clips-per-cluster', type=_positive, default=10,
                        help='clips nearest the centre shown per cluster '
                        '(default 10)')
    parser.add_argument('--out', help='output folder (default '
                        'WORK_DIR/gallery)')
    parser.add_argument('--workers', type=_positive, default=None,
                        help='transcoding processes (default: every core)')
    parser.add_argument('--data-root', default=None,
                        help='read clips only under this folder (default: '
                        'the dataset root recorded in the round files)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        report = build_gallery(args.work_dir, args.round, args.top_clusters,
                               args.clips_per_cluster, args.out,
                               args.workers, data_root=args.data_root)
    except GalleryError as e:
        print(f'visualize_clusters: {e}', file=sys.stderr)
        return 2
    for note in report.notes:
        print(f'note: {note}', file=sys.stderr)
    for path, why in sorted(report.failed.items()):
        print(f'could not show {path}: {why}', file=sys.stderr)
    for path, why in sorted(report.refused.items()):
        print(f'not read {path!r}: {why}', file=sys.stderr)
    print(report.read_under)
    print(f'{len(report.pages)} round page(s), {report.num_clips} clips '
          f'({len(report.failed)} failed, {len(report.refused)} not read) '
          f'in {time.perf_counter() - started:.1f}s: {report.index}')
    return 0
