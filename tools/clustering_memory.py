"""Per-rank memory of a clustering round, gathered on rank 0 vs sharded.

Prints, for each dataset size and clustered dimension, the peak GiB per
rank (the model of ``xdc_plugin.clustering.memory_model``) at each world
size: the path that gathers every feature on rank 0, and
``DistributedKMeans`` with float32 or float16 storage. ``--explain`` prints
one configuration array by array.

    python tools/clustering_memory.py
    python tools/clustering_memory.py --explain 65000000 128 64
"""
import argparse

from xdc_plugin.clustering.memory_model import clustering_memory
from xdc_plugin.tables import markdown_table

PATHS = (('before: gather on rank 0', dict(sharded=False)),
         ('after: sharded, fp32', dict(sharded=True, feature_dtype='float32')),
         ('after: sharded, fp16', dict(sharded=True, feature_dtype='float16')))


def table(sizes, dims, worlds, **kwargs):
    """Markdown table: one row per (N, dim, path), one column per world."""
    header = ['N', 'dim', 'path'] + [f'world {w}' for w in worlds]
    rows = []
    for n in sizes:
        for dim in dims:
            for name, path in PATHS:
                rows.append([f'{n:,}', dim, name] + [
                    f'{clustering_memory(n, dim, world_size=w, **path, **kwargs).peak / 2**30:.1f}'  # noqa: E501
                    for w in worlds])
    return markdown_table(header, rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[1_000_000, 10_000_000, 65_000_000])
    parser.add_argument('--dims', type=int, nargs='+', default=[512, 128],
                        help='clustered dimension (128: after PCA)')
    parser.add_argument('--worlds', type=int, nargs='+',
                        default=[8, 32, 128, 512])
    parser.add_argument('--clusters', type=int, default=8192,
                        help="k (default: configs/xdc_ig65m.yaml's)")
    parser.add_argument('--feat-dim', type=int, default=512)
    parser.add_argument('--explain', type=int, nargs=3,
                        metavar=('N', 'DIM', 'WORLD'),
                        help='print one configuration array by array')
    args = parser.parse_args(argv)
    common = dict(num_clusters=args.clusters, feat_dim=args.feat_dim)
    if args.explain:
        n, dim, world = args.explain
        for name, path in PATHS:
            print(f'## {name}: N={n:,} dim={dim} world={world}')
            print(clustering_memory(n, dim, world_size=world, **path,
                                    **common).describe())
        return
    print(f'Peak GiB per rank of one clustering round (model), K='
          f'{args.clusters}, {args.feat_dim}-d features of 2 modalities, '
          '2 clusterings per round:')
    print(table(args.sizes, args.dims, args.worlds, **common))


if __name__ == '__main__':
    main()
