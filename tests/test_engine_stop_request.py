"""StopRequest: a signal stops a long clustering step within seconds, in one
process (also inside faiss) and on two gloo processes whether it reached
one rank or both, with no rank left waiting in a collective."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import DistributedKMeans
from xdc_plugin.clustering.collectives import ProcessGroupCollectives
from xdc_plugin.engine.runner.stop_request import (SAME_STOP_S, StopRequest,
                                                   StopRequested)

LONG = 10**6  # k-means iterations or restarts: hours, unless stopped


def signal_in(seconds, signum=signal.SIGUSR1):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signum))
    timer.start()
    return timer


@pytest.fixture
def stop():
    request = StopRequest(['SIGUSR1'])
    request.install()
    yield request
    request.restore()


def test_the_handler_records_and_a_later_second_signal_goes_through(stop):
    stop.restore()
    seen = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    stop.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert stop.signum == signal.SIGUSR1 and seen == []
    os.kill(os.getpid(), signal.SIGUSR1)  # the same stop, delivered twice
    assert seen == []
    time.sleep(SAME_STOP_S)
    os.kill(os.getpid(), signal.SIGUSR1)  # as without the handler
    assert seen == [signal.SIGUSR1]


def test_a_forked_worker_ignores_the_signal(stop, tmp_path):
    pid = os.fork()
    if pid == 0:  # a DataLoader worker inherits the handler
        os.kill(os.getpid(), signal.SIGUSR1)
        (tmp_path / 'alive').write_text(str(stop.signum))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / 'alive').read_text() == '0'
    assert stop.signum == 0  # the main process received nothing


def test_one_process_stops_inside_a_long_faiss_kmeans(stop):
    import faiss
    faiss.omp_set_num_threads(1)  # no OpenMP spinning on a loaded CPU
    x = np.random.default_rng(0).normal(size=(5000, 32)).astype(np.float32)
    kmeans = faiss.Kmeans(32, 16, niter=LONG, nredo=LONG, seed=0)
    timer = signal_in(0.5)
    start = time.monotonic()
    with pytest.raises(StopRequested) as stopped:
        with stop.interruptible():
            kmeans.train(x)
    timer.join()
    seconds = time.monotonic() - start
    assert seconds < 10, seconds
    assert stopped.value.signum == signal.SIGUSR1
    with pytest.raises(StopRequested):  # a signal before the block
        with stop.interruptible():
            pass


def test_outside_interruptible_the_signal_only_records(stop):
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.01)
    assert stop.signum == signal.SIGUSR1
    with pytest.raises(StopRequested):
        stop.check()


def _worker(rank, world_size, init_file, out_dir, signalled, task):
    signal.alarm(120)  # a hang fails the test instead of blocking it
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    stop = StopRequest(['SIGUSR1'])
    stop.install()
    outcome = dict(rank=rank)
    start = time.monotonic()
    try:
        if task == 'kmeans':
            if rank in signalled:
                signal_in(1.0)
            rows = torch.randn(5000, 16, generator=torch.Generator()
                               .manual_seed(rank))
            DistributedKMeans(num_clusters=8, num_redo=LONG).fit_sharded(
                rows, torch.arange(5000) * world_size + rank,
                5000 * world_size,
                collectives=stop.checked(ProcessGroupCollectives()))
        else:  # rank 0 has 3 batches, rank 1 two
            outcome['items'] = []
            for item in stop.each(list(range(3 - rank))):
                outcome['items'].append(item)
                if rank in signalled and item == 1:
                    os.kill(os.getpid(), signal.SIGUSR1)
    except StopRequested as exc:
        outcome['stopped'] = exc.signum
    outcome['seconds'] = time.monotonic() - start
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(outcome, f)
    torch_dist.destroy_process_group()


def _run(tmp_path, signalled, task):
    mp.start_processes(_worker, args=(2, str(tmp_path / 'init'),
                                      str(tmp_path), signalled, task),
                       nprocs=2, start_method='fork')
    return [json.loads((tmp_path / f'rank{r}.json').read_text())
            for r in range(2)]


@pytest.mark.parametrize('signalled', [(1, ), (0, 1)],
                         ids=['one-rank', 'every-rank'])
def test_two_ranks_stop_a_long_kmeans_together(tmp_path, signalled):
    for outcome in _run(tmp_path, signalled, 'kmeans'):
        assert outcome['stopped'] == signal.SIGUSR1, outcome
        assert outcome['seconds'] < 20, outcome  # signal at 1 s


def test_ranks_with_uneven_batches_stop_at_the_same_step(tmp_path):
    # Rank 0 is signalled at its batch 1: both stop there, although rank
    # 1's loader would end one batch before rank 0's.
    ranks = _run(tmp_path, (0, ), 'each')
    assert [r['items'] for r in ranks] == [[0, 1], [0, 1]]
    assert all(r['stopped'] == signal.SIGUSR1 for r in ranks)
    ranks = _run(tmp_path, (), 'each')
    assert [r['items'] for r in ranks] == [[0, 1, 2], [0, 1]]
    assert not any('stopped' in r for r in ranks)
