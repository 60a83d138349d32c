"""Submit XDC pretraining to SLURM with submitit.

    python tools/submit_slurm.py --nodes 4 --gpus-per-node 8 \
        --partition learn -- --cfg configs/xdc_kinetics.yaml \
        work_dir=/checkpoint/$USER/xdc_k400

    # one GPU per task, the only one each task sees
    python tools/submit_slurm.py --gpus-per-task 1 --tasks-per-node 8 \
        -- --cfg configs/xdc_kinetics.yaml --amp

    # CPU only: 2 gloo tasks on one node (they run with --device cpu)
    python tools/submit_slurm.py --gpus-per-node 0 --tasks-per-node 2 \
        --cpus-per-task 1 -- --cfg configs/xdc_demo.yaml

Everything after ``--`` is passed to ``tools/run_net.py``; its config and
overrides are checked before anything is submitted. Jobs requeue
themselves on preemption and resume from the last checkpoint.
"""
import argparse

from xdc_plugin.engine.launch.launch import build_parser, prepare_config
from xdc_plugin.engine.launch.slurm import submit
from xdc_plugin.engine.runner.config import CONFIG_ERRORS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--nodes', type=int, default=1)
    parser.add_argument('--gpus-per-node', type=int, default=8,
                        help='0: train on CPU (gloo)')
    parser.add_argument('--gpus-per-task', type=int,
                        help='GPUs of each task, the only ones it sees '
                        '(instead of --gpus-per-node; needs --tasks-per-node)')
    parser.add_argument('--tasks-per-node', type=int,
                        help='default: one per GPU')
    parser.add_argument('--cpus-per-task', type=int, default=10)
    parser.add_argument('--mem-gb', type=int)
    parser.add_argument('--partition')
    parser.add_argument('--timeout-min', type=int, default=72 * 60)
    parser.add_argument('--name', default='xdc')
    parser.add_argument('--folder', default='work_dirs/slurm/%j',
                        help='submitit logs')
    parser.add_argument('--cluster', choices=['slurm', 'local', 'debug'],
                        help="submitit's executor (default: SLURM when "
                        'srun is on the PATH)')
    parser.add_argument('--port', type=int,
                        help='rendezvous port (default: from the job id)')
    parser.add_argument('run_args', nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if (args.gpus_per_node == 0 or args.gpus_per_task) and \
            args.tasks_per_node is None:
        parser.error('--gpus-per-node 0 and --gpus-per-task need '
                     '--tasks-per-node')
    run_args = args.run_args[1:] if args.run_args[:1] == ['--'] else \
        args.run_args
    try:  # a bad config stops here, not after a wait in the queue
        prepare_config(build_parser().parse_args(run_args))
    except CONFIG_ERRORS as exc:
        parser.exit(2, f'error: {exc}\n')
    job = submit(run_args, args.folder, nodes=args.nodes,
                 gpus_per_node=args.gpus_per_node,
                 tasks_per_node=args.tasks_per_node,
                 cpus_per_task=args.cpus_per_task, partition=args.partition,
                 timeout_min=args.timeout_min, mem_gb=args.mem_gb,
                 name=args.name, cluster=args.cluster, port=args.port,
                 gpus_per_task=args.gpus_per_task)
    print(f'submitted job {job.job_id}; logs in {args.folder}')


if __name__ == '__main__':
    main()
