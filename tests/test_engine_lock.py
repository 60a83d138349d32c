"""One run per work_dir: a second run fails at once and writes nothing; a
killed holder leaves the lock free."""
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

import pytest

from test_engine_launch import REPO, tiny_demo_args
from xdc_plugin.engine.launch.launch import work_dir_lock
from xdc_plugin.engine.runner.lock import WorkDirBusyError, WorkDirLock

HOLDER = '''
import os, sys, time
from xdc_plugin.engine.runner.lock import WorkDirLock
with WorkDirLock(sys.argv[1]):
    # Like a DataLoader worker: a forked child with the lock file open.
    child = os.fork() if len(sys.argv) > 2 else None
    if child == 0:
        time.sleep(600)
        os._exit(0)
    print('locked', child or '', flush=True)
    time.sleep(600)
'''


@pytest.fixture
def holder(tmp_path):
    """A real process holding ``tmp_path/work``'s lock."""
    proc = subprocess.Popen([sys.executable, '-c', HOLDER,
                             str(tmp_path / 'work')], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == 'locked'
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_fails_at_once_and_writes_nothing(tmp_path, holder):
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'run_net.py')] +
        tiny_demo_args(tmp_path), capture_output=True, text=True,
        timeout=300)
    assert out.returncode != 0
    message = out.stderr
    assert f'in use by run PID {holder.pid} on host ' \
           f'{socket.gethostname()}' in message
    assert f'{sys.executable} -c {tmp_path / "work"}' in message  # command
    assert '--force' in message
    assert os.listdir(tmp_path / 'work') == ['run.lock']
    assert not osp.exists(tmp_path / 'data')  # not even the demo data


def test_force_shares_the_work_dir_deliberately(tmp_path, holder):
    work = str(tmp_path / 'work')
    with pytest.raises(WorkDirBusyError, match=f'PID {holder.pid}'):
        with WorkDirLock(work):
            pass
    told = []
    with WorkDirLock(work, force=True, on_force=told.append):
        pass
    assert len(told) == 1 and f'PID {holder.pid}' in told[0]
    assert 'Sharing it (--force)' in told[0]


def test_the_lock_of_a_killed_run_is_free(tmp_path, holder):
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    lock = WorkDirLock(str(tmp_path / 'work'))
    with lock:
        assert lock.holder()['pid'] == os.getpid()
        assert lock.holder()['pid'] == os.getpid()  # reading keeps it
        other = subprocess.run([sys.executable, '-c', HOLDER,
                                str(tmp_path / 'work')], capture_output=True,
                               text=True, timeout=120)
        assert other.returncode != 0
        assert f'in use by run PID {os.getpid()}' in other.stderr
    with WorkDirLock(str(tmp_path / 'work')):  # released on exit
        pass


def test_the_lock_dies_with_the_run_not_with_its_workers(tmp_path):
    """kill -9 of a run whose forked workers still hold the file open: the
    next run (e.g. --resume) gets the lock at once."""
    work = str(tmp_path / 'work')
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, work, 'fork'],
                            stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline().split()[1])
    try:
        proc.kill()
        proc.wait()
        os.kill(child, 0)  # the worker is still alive
        with WorkDirLock(work):
            pass
    finally:
        os.kill(child, 9)


TWO_RANKS = textwrap.dedent('''
    import sys
    import torch.distributed as td
    from xdc_plugin.engine.launch.launch import work_dir_lock
    from xdc_plugin.engine.runner.lock import WorkDirBusyError
    td.init_process_group('gloo')
    try:
        with work_dir_lock(sys.argv[1], force=False):
            print('entered', flush=True)
    except WorkDirBusyError as exc:
        print('busy:', exc, flush=True)
''')


def test_every_rank_stops_when_the_work_dir_is_busy(tmp_path, holder):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    ranks = [subprocess.Popen(
        [sys.executable, '-c', TWO_RANKS, str(tmp_path / 'work')],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, RANK=str(rank), WORLD_SIZE='2',
                 MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port)))
        for rank in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in ranks]
    for out in outputs:  # rank 1 learns it from rank 0, and does not hang
        assert f'busy: {tmp_path / "work"} is in use by run PID ' \
               f'{holder.pid}' in out, out[-2000:]


def test_a_link_planted_as_the_lock_is_never_written_through(tmp_path):
    from xdc_plugin.engine.launch import launch
    from xdc_plugin.engine.runner.lock import WorkDirError
    work = tmp_path / 'work'
    work.mkdir()
    target = tmp_path / 'precious'
    target.write_text('keep me')
    for points_to in (target, tmp_path / 'would_be_created'):
        (work / 'run.lock').symlink_to(points_to)
        with pytest.raises(WorkDirError) as info:
            with WorkDirLock(str(work)):
                pass
        assert str(info.value) == (
            f'{work / "run.lock"} is a symbolic link; the run writes its '
            'lock there and never through a link: remove it')
        with pytest.raises(SystemExit, match='^error: .* is a symbolic link'):
            launch.cli(tiny_demo_args(tmp_path))
        (work / 'run.lock').unlink()
    assert target.read_text() == 'keep me'
    assert not (tmp_path / 'would_be_created').exists()
    assert os.listdir(work) == [] and not osp.exists(tmp_path / 'data')


ORPHAN = '.tmp-' + 'a' * 32 + '-epoch_4.pth'  # a save killed midway


def test_orphans_are_removed_only_by_the_lock_holder(tmp_path, holder):
    work = tmp_path / 'work'
    (work / ORPHAN).write_bytes(b'x' * 2048)
    # Another run holds the lock and may be saving: sharing it (--force)
    # removes nothing.
    with work_dir_lock(str(work), force=True, orphan_dirs=[str(work)]) as \
            removed:
        assert removed == []
    assert (work / ORPHAN).exists()
    holder.kill()
    holder.wait()
    with work_dir_lock(str(work), force=False,
                       orphan_dirs=[str(work), str(work)]) as removed:
        assert removed == [f'Removed the temporary files of an interrupted '
                           f'save from {work} (1, 0.0 MiB): {ORPHAN}.']
    assert not (work / ORPHAN).exists()
