"""SLURM jobs with submitit: one task per GPU, mmengine's pytorch launcher.

Each task maps submitit's job environment onto the variables that
``torch.distributed`` reads, then runs ``launch.main`` with
``--launcher pytorch --resume``: a preempted or timed-out job is requeued
and continues from its last checkpoint.
"""
import os

import submitit

from xdc_plugin.engine import launch


def distributed_env(job_env, port):
    """torch.distributed variables for one submitit task."""
    return {
        'MASTER_ADDR': job_env.hostnames[0],
        'MASTER_PORT': str(port),
        'RANK': str(job_env.global_rank),
        'LOCAL_RANK': str(job_env.local_rank),
        'WORLD_SIZE': str(job_env.num_tasks),
    }


class TrainingJob:
    """The callable submitit pickles and runs on every task."""

    def __init__(self, run_args, port=29500):
        self.run_args = list(run_args)
        self.port = port

    def __call__(self):
        job_env = submitit.JobEnvironment()
        os.environ.update(distributed_env(job_env, self.port))
        args = ['--launcher', 'pytorch' if job_env.num_tasks > 1 else 'none',
                '--resume']
        launch.main(args + self.run_args)

    def checkpoint(self):
        # Called by submitit on preemption/timeout: requeue the same job;
        # ``--resume`` picks up the latest checkpoint of the work dir.
        return submitit.helpers.DelayedSubmission(TrainingJob(
            self.run_args, self.port))


def submit(run_args, folder, nodes=1, gpus_per_node=8, cpus_per_task=10,
           partition=None, timeout_min=72 * 60, mem_gb=None, name='xdc',
           cluster=None, port=29500):
    """Submit ``tools/run_net.py RUN_ARGS`` as a SLURM job; returns the job.

    ``cluster='local'`` or ``'debug'`` runs the same job without SLURM.
    """
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = dict(name=name, nodes=nodes, timeout_min=timeout_min,
                  tasks_per_node=gpus_per_node, gpus_per_node=gpus_per_node,
                  cpus_per_task=cpus_per_task)
    if mem_gb:
        params['mem_gb'] = mem_gb
    if partition:
        params['slurm_partition'] = partition
    executor.update_parameters(**params)
    return executor.submit(TrainingJob(run_args, port))
