"""SLURM jobs with submitit: one task per GPU (or CPU tasks with gloo).

Each task maps submitit's job environment onto the variables that
``torch.distributed`` reads, then runs ``launch.main`` with
``--launcher pytorch --resume`` (and ``--device cpu`` for CPU tasks). A
task that sees one GPU (``gpus_per_task``) uses device 0 whatever its
local rank (``device.local_cuda_index``).

Preemption and the time limit: SLURM sends submitit's signal (USR2) to
every task. ``PreemptionCheckpointHook`` takes it during training: the
ranks finish the current iteration, save ``iter_<n>.pth`` and leave
training with exit status 128 + the signal. Only then does rank 0 run
submitit's handler, which calls :meth:`TrainingJob.checkpoint` and requeues
the job; the requeued job resumes from that checkpoint at the next batch.
"""
import os
import signal
import time
from typing import Dict, Optional, Sequence

import submitit
import torch
from submitit.slurm.slurm import SlurmJobEnvironment

from xdc_plugin.engine.launch import launch

# Rendezvous ports for jobs that share a node: one per job id in this range.
PORT_BASE, PORT_SPAN = 20000, 10000
# How long the other ranks wait for rank 0's requeue to stop them.
REQUEUE_WAIT_S = 300


def distributed_env(job_env: submitit.JobEnvironment,
                    port: int) -> Dict[str, str]:
    """torch.distributed variables for one submitit task."""
    return {
        'MASTER_ADDR': job_env.hostnames[0],
        'MASTER_PORT': str(port),
        'RANK': str(job_env.global_rank),
        'LOCAL_RANK': str(job_env.local_rank),
        'WORLD_SIZE': str(job_env.num_tasks),
    }


def slurm_task_env() -> Dict[str, str]:
    """torch.distributed variables of this ``srun`` task (``--launcher
    slurm``, not started by submitit): from SLURM's, read by submitit's SLURM
    environment; a ``MASTER_PORT`` already set is kept."""
    return distributed_env(SlurmJobEnvironment(), os.environ.get(
        'MASTER_PORT') or rendezvous_port())


def rendezvous_port(default: int = 29500) -> int:
    """A port derived from ``SLURM_JOB_ID`` (unique per job, also per array
    element), so that jobs sharing a node do not collide; ``default``
    outside SLURM (submitit's local executor)."""
    job_id = os.environ.get('SLURM_JOB_ID')
    return PORT_BASE + int(job_id) % PORT_SPAN if job_id else default


class TrainingJob:
    """The callable submitit pickles and runs on every task."""

    def __init__(self, run_args: Sequence[str],
                 port: Optional[int] = None) -> None:
        self.run_args = list(run_args)
        self.port = port

    def __call__(self) -> Dict[str, int]:
        """Train; returns this task's summary (rank, world size, where
        training ended, how often SLURM restarted the job)."""
        job_env = submitit.JobEnvironment()
        port = self.port or rendezvous_port()
        os.environ.update(distributed_env(job_env, port))
        # torch would start one thread per core of the node in every task.
        if os.environ.get('SLURM_CPUS_PER_TASK'):
            torch.set_num_threads(int(os.environ['SLURM_CPUS_PER_TASK']))
        args = ['--launcher', 'pytorch' if job_env.num_tasks > 1 else 'none',
                '--resume']
        requeue_signal = getattr(signal, 'SIG' + job_env.USR_SIG)
        # submitit's checkpoint-and-requeue handler, installed before this
        # call; the preemption hook replaces it while training runs.
        requeue = signal.getsignal(requeue_signal)
        try:
            runner = launch.main(args + self.run_args)
        except SystemExit as stop:
            if stop.code != 128 + requeue_signal or not callable(requeue):
                raise
            # Every rank has saved the preemption checkpoint.
            if job_env.global_rank == 0:
                requeue(requeue_signal, None)  # requeues, then exits
            else:
                # Leaving now could end the job step before rank 0 requeues
                # (srun's --kill-on-bad-exit): wait to be stopped.
                time.sleep(REQUEUE_WAIT_S)
            raise RuntimeError(
                f'job {job_env.job_id} was not requeued after its '
                'preemption checkpoint') from stop
        summary = dict(
            rank=job_env.global_rank, world_size=job_env.num_tasks,
            epoch=runner.epoch, iter=runner.iter,
            restarts=int(os.environ.get('SLURM_RESTART_COUNT', 0)))
        # Every task's own log (only rank 0 has the runner's log).
        print(f'xdc task finished: {summary}', flush=True)
        return summary

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        # Called by submitit on preemption/timeout: requeue the same job;
        # ``--resume`` picks up the latest checkpoint of the work dir.
        return submitit.helpers.DelayedSubmission(TrainingJob(
            self.run_args, self.port))


def submit(run_args: Sequence[str], folder: str, nodes: int = 1,
           gpus_per_node: int = 8, tasks_per_node: Optional[int] = None,
           cpus_per_task: int = 10, partition: Optional[str] = None,
           timeout_min: int = 72 * 60, mem_gb: Optional[int] = None,
           name: str = 'xdc', cluster: Optional[str] = None,
           port: Optional[int] = None,
           gpus_per_task: Optional[int] = None) -> submitit.Job:
    """Submit ``tools/run_net.py RUN_ARGS`` as a SLURM job; returns the job.

    One task per GPU unless ``tasks_per_node`` says otherwise; with
    ``gpus_per_node=0`` the tasks train on CPU (gloo, ``--device cpu``) and
    ``tasks_per_node`` is required. ``gpus_per_task`` (instead of
    ``gpus_per_node``) gives each task its own GPU(s), the only ones it
    sees. ``cluster`` picks submitit's executor: ``None`` detects SLURM,
    ``'slurm'`` insists on it, ``'local'`` or ``'debug'`` run the same job
    without SLURM. ``port=None`` derives the rendezvous port from
    ``SLURM_JOB_ID``.
    """
    if tasks_per_node is None:
        if gpus_per_task or not gpus_per_node:
            raise ValueError('gpus_per_node=0 (CPU tasks) or gpus_per_task '
                             'needs tasks_per_node')
        tasks_per_node = gpus_per_node
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = dict(name=name, nodes=nodes, timeout_min=timeout_min,
                  tasks_per_node=tasks_per_node, cpus_per_task=cpus_per_task)
    if gpus_per_task:
        params['slurm_gpus_per_task'] = gpus_per_task
    else:
        params['gpus_per_node'] = gpus_per_node
    if not (gpus_per_task or gpus_per_node):
        run_args = ['--device', 'cpu', *run_args]
    if mem_gb:
        params['mem_gb'] = mem_gb
    if partition:
        params['slurm_partition'] = partition
    executor.update_parameters(**params)
    return executor.submit(TrainingJob(run_args, port))
