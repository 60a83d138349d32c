"""engine/launch/slurm.py without a cluster: what each task does when training
ends, normally or on a signal (tests/test_slurm_real.py runs real jobs)."""
import signal
from types import SimpleNamespace

import pytest
import torch

from xdc_plugin.engine.launch import slurm

TORCH_ENV = ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'LOCAL_RANK', 'WORLD_SIZE')


class FakeJobEnvironment:
    USR_SIG = 'USR2'
    job_id = '42'
    hostnames = ['node-a']
    local_rank = 0
    num_tasks = 2

    def __init__(self, global_rank):
        self.global_rank = global_rank


@pytest.fixture
def task(monkeypatch):
    """``task(rank, training)``: run a TrainingJob as task ``rank`` of 2,
    with ``training(argv)`` in place of ``launch.main``."""
    for name in TORCH_ENV:  # restored after the test
        monkeypatch.setenv(name, '')
    monkeypatch.delenv('SLURM_RESTART_COUNT', raising=False)
    threads = torch.get_num_threads()

    def run(rank, training):
        monkeypatch.setattr(slurm.submitit, 'JobEnvironment',
                            lambda: FakeJobEnvironment(rank))
        monkeypatch.setattr(slurm.launch, 'main', training)
        return slurm.TrainingJob(['--cfg', 'x.yaml'])()

    yield run
    torch.set_num_threads(threads)


@pytest.fixture
def submitit_handler():
    """A stand-in for submitit's USR2 handler (it requeues, then exits)."""
    calls = []

    def requeue_and_exit(signum, frame):
        calls.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def exits_with(code):
    def training(argv):
        raise SystemExit(code)
    return training


def test_a_finished_task_returns_its_summary(task, monkeypatch):
    monkeypatch.setenv('SLURM_CPUS_PER_TASK', '1')
    monkeypatch.setenv('SLURM_RESTART_COUNT', '2')
    argvs = []

    def training(argv):
        argvs.append(argv)
        return SimpleNamespace(epoch=3, iter=18)

    assert task(1, training) == dict(rank=1, world_size=2, epoch=3, iter=18,
                                     restarts=2)
    assert argvs == [['--launcher', 'pytorch', '--resume', '--cfg',
                      'x.yaml']]
    assert torch.get_num_threads() == 1


def test_rank0_requeues_after_the_preemption_checkpoint(task,
                                                        submitit_handler):
    with pytest.raises(SystemExit) as stop:
        task(0, exits_with(128 + signal.SIGUSR2))
    assert stop.value.code == -1
    assert submitit_handler == [signal.SIGUSR2]


def test_other_ranks_wait_for_the_requeue(task, submitit_handler,
                                          monkeypatch):
    monkeypatch.setattr(slurm, 'REQUEUE_WAIT_S', 0)
    with pytest.raises(RuntimeError, match='job 42 was not requeued'):
        task(1, exits_with(128 + signal.SIGUSR2))
    assert submitit_handler == []


def test_sigterm_exit_is_not_a_requeue(task, submitit_handler):
    # SLURM itself is stopping (scontrol requeue, scancel, the end of the
    # time limit): the checkpoint is saved and the task just exits.
    with pytest.raises(SystemExit) as stop:
        task(0, exits_with(128 + signal.SIGTERM))
    assert stop.value.code == 128 + signal.SIGTERM
    assert submitit_handler == []


def test_cpu_tasks_need_a_task_count(tmp_path):
    with pytest.raises(ValueError, match='tasks_per_node'):
        slurm.submit([], str(tmp_path), gpus_per_node=0)


def test_rendezvous_port_follows_the_job_id(monkeypatch):
    monkeypatch.setenv('SLURM_JOB_ID', '123457')
    assert slurm.rendezvous_port() == slurm.PORT_BASE + 3457
    monkeypatch.delenv('SLURM_JOB_ID')
    assert slurm.rendezvous_port() == 29500


def test_submit_checks_the_run_arguments_before_submitting(tmp_path,
                                                           capsys):
    import os.path as osp
    import runpy
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    main = runpy.run_path(osp.join(repo, 'tools', 'submit_slurm.py'))['main']
    demo = osp.join(repo, 'configs', 'xdc_demo.yaml')
    for run_args, says in (
            (['--cfg', demo, 'train_cfg.max_epochs'],
             "override 'train_cfg.max_epochs' is not KEY=VALUE"),
            (['--cfg', str(tmp_path / 'nope.yaml')],
             f'config file {tmp_path / "nope.yaml"}: no such file'),
            (['--cfg', demo, 'train_dataloader.num_workers=-1'],
             'train_dataloader.num_workers must be an integer >= 0')):
        with pytest.raises(SystemExit) as info:
            main(['--gpus-per-node', '0', '--tasks-per-node', '1',
                  '--cluster', 'debug', '--folder', str(tmp_path / 'jobs'),
                  '--', *run_args])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f'error: {says}') and err.count('\n') == 1
    assert not (tmp_path / 'jobs').exists()  # nothing was submitted
