"""CPU threads of a clustering section: all of this rank's cores, whatever
``OMP_NUM_THREADS`` says.

torchrun sets ``OMP_NUM_THREADS=1`` when it starts several processes (so
that training ranks do not oversubscribe the node), which left every rank's
CPU E-step, PCA and assignment on one core while the rest of the node
idled. A clustering section runs with the rank's share of the cores
instead: the CPUs this process may run on (``os.sched_getaffinity``)
divided among the ranks of the node (``LOCAL_WORLD_SIZE``, set by
torchrun), at most ``SLURM_CPUS_PER_TASK`` where SLURM gives one. torch's
and faiss's OpenMP thread counts are set for the section and restored
after it. (A rank forked from a process that has used OpenMP threads, as
some tests start theirs, must not raise its count: GNU OpenMP is not
fork-safe. torchrun and SLURM start each rank as a fresh process.)
"""
import contextlib
import os

import torch


def rank_cpu_count(environ=None):
    """This rank's share of the node's cores (at least 1)."""
    environ = os.environ if environ is None else environ
    count = len(os.sched_getaffinity(0)) // max(
        1, int(environ.get('LOCAL_WORLD_SIZE') or 1))
    if environ.get('SLURM_CPUS_PER_TASK'):
        count = min(count, int(environ['SLURM_CPUS_PER_TASK']))
    return max(1, count)


def _faiss():
    try:
        import faiss
    except ImportError:  # TorchKMeans and DistributedKMeans need no faiss
        return None
    return faiss


@contextlib.contextmanager
def rank_threads(num_threads=None):
    """torch and faiss use ``num_threads`` (default: ``rank_cpu_count()``)
    threads within the block; yields that number."""
    num_threads = num_threads or rank_cpu_count()
    faiss = _faiss()
    saved = torch.get_num_threads(), faiss and faiss.omp_get_max_threads()
    torch.set_num_threads(num_threads)
    if faiss:
        faiss.omp_set_num_threads(num_threads)
    try:
        yield num_threads
    finally:
        torch.set_num_threads(saved[0])
        if faiss:
            faiss.omp_set_num_threads(saved[1])
