"""``tools/run_net.py`` with one fault injected, for the resume tests::

    python tests/run_net_with_faults.py FAULT [run_net.py arguments]

FAULT (counted in this process, from 1):

* ``none``;
* ``kill-in-save:<n>``: kill -9 of this process in its n-th checkpoint save,
  the temporary file written, before its rename;
* ``kill-in-round:<n>``: kill -9 in its n-th clustering round, after the
  features, before the k-means;
* ``signal-in-round:<n>:<SIGNAL>[:<rank>]``: at the start of its n-th
  clustering round, a k-means that would run for many minutes (the round's
  clusterer with 10**6 iterations on 20000 random rows per rank), and that
  signal sent to this process one second into it, on every rank or on
  ``<rank>`` only. Prints ``FAULT <SIGNAL> sent at <time.time()>``.
"""
import os
import os.path as osp
import signal
import sys
import threading
import time

import torch


def _kill(what):
    print(f'FAULT kill -9 {what}', flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _nth_call(n, action, wrapped):
    count = [0]

    def call(*args, **kwargs):
        count[0] += 1
        if count[0] == n:
            action(*args, **kwargs)
        return wrapped(*args, **kwargs)

    return call


def _kill_in_save(n):
    replace, saves = os.replace, [0]

    def replace_or_kill(src, dst, *args, **kwargs):
        if osp.basename(src).startswith('.tmp-') and str(dst).endswith(
                '.pth'):
            saves[0] += 1
            if saves[0] == n:
                _kill(f'in the save of {dst}')
        return replace(src, dst, *args, **kwargs)

    os.replace = replace_or_kill


def _signal_in_round(n, name, rank=None):
    from xdc_plugin.engine.hooks import clustering_hook
    from xdc_plugin.engine.round.feature_shard import FeatureShard
    cluster_shard = clustering_hook.cluster_shard
    signum = getattr(signal, name)

    def long_kmeans(shard, sources, clusterer_cfgs, num_clusters, num_total,
                    collectives, **kwargs):
        if rank is None or collectives.rank == rank:
            def send():
                print(f'FAULT {name} sent at {time.time()}', flush=True)
                os.kill(os.getpid(), signum)
            threading.Timer(1.0, send).start()
        rows = 20000
        generator = torch.Generator().manual_seed(collectives.rank)
        big = FeatureShard(
            torch.arange(rows) * collectives.world_size + collectives.rank,
            {m: torch.randn(rows, f.shape[1], generator=generator)
             for m, f in shard.features.items()})
        cluster_shard(big, sources,
                      dict(clusterer_cfgs, num_iters=10**6, num_redo=10**6),
                      num_clusters, rows * collectives.world_size,
                      collectives, with_distances=False)

    clustering_hook.cluster_shard = _nth_call(n, long_kmeans, cluster_shard)


def main():
    fault, args = sys.argv[1], sys.argv[2:]
    kind, _, spec = fault.partition(':')
    if kind == 'kill-in-save':
        _kill_in_save(int(spec))
    elif kind == 'kill-in-round':
        from xdc_plugin.engine.hooks import clustering_hook
        clustering_hook.cluster_shard = _nth_call(
            int(spec), lambda *a, **k: _kill('in a clustering round'),
            clustering_hook.cluster_shard)
    elif kind == 'signal-in-round':
        n, name, *rank = spec.split(':')
        _signal_in_round(int(n), name, int(rank[0]) if rank else None)
    elif kind != 'none':
        raise SystemExit(f'unknown fault {fault!r}')
    from xdc_plugin.engine.launch.launch import cli
    cli(args)


if __name__ == '__main__':
    main()
