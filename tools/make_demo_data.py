"""Generate the synthetic audio-visual demo set (see xdc_plugin/data/demo.py).

    python tools/make_demo_data.py --out data/demo [--num-classes 4]
"""
import argparse
import time

from xdc_plugin.data.demo import make_demo_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-classes', type=int, default=4)
    parser.add_argument('--clips-per-class', type=int, default=40)
    parser.add_argument('--duration', type=float, default=3.0)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--fps', type=int, default=15)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args(argv)
    t = time.time()
    manifest = make_demo_dataset(
        args.out, num_classes=args.num_classes,
        clips_per_class=args.clips_per_class, duration=args.duration,
        size=args.size, fps=args.fps, seed=args.seed,
        progress=not args.quiet)
    print(f'{manifest} ready in {time.time() - t:.1f}s')
    return manifest


if __name__ == '__main__':
    main()
