"""Kill or signal a real training process, resume it: it ends with the
weights and pseudo-labels of the uninterrupted run of the same seed (CPU).
Ctrl-C and signals mid-round stop the run within seconds with a checkpoint;
a chaos run killed at seeded random moments ends bit-identical."""
import os
import os.path as osp
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from test_engine_launch import REPO, tiny_demo_args
from xdc_plugin.clustering.round_file import load_round

RUN_NET = osp.join(REPO, 'tools', 'run_net.py')
WITH_FAULTS = osp.join(REPO, 'tests', 'run_net_with_faults.py')
EPOCHS = 2


def assert_same_round_labels(work, reference_dir, round_file):
    resumed = load_round(str(work / 'clusters' / round_file))
    ref = load_round(str(reference_dir / 'clusters' / round_file))
    for source in ('video', 'audio'):
        np.testing.assert_array_equal(resumed.sources[source].labels,
                                      ref.sources[source].labels)


def resume_args(tmp_path, work_dir):
    """The tiny demo with DataLoader workers, a clustering round at every
    epoch and a log line at every iteration."""
    args = tiny_demo_args(tmp_path, max_epochs=EPOCHS) + [
        'train_dataloader.num_workers=2', 'default_hooks.logger.interval=1',
        f'param_scheduler.0.T_max={EPOCHS}',
        '+default_hooks.clustering.evaluate_after_train=false']
    args[args.index('--work-dir') + 1] = str(work_dir)
    return args


def start(args, fault=None, **kwargs):
    """``run_net.py args`` running, or with ``fault`` injected
    (``run_net_with_faults.py``)."""
    command = [RUN_NET] if fault is None else [WITH_FAULTS, fault]
    return subprocess.Popen(
        [sys.executable, '-u'] + command + args, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(args):
    out = subprocess.run([sys.executable, RUN_NET] + args, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    return out.stdout


def wait_for_line(proc, pattern):
    """Read ``proc``'s output until a line matches; returns the output."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return ''.join(seen)
    proc.wait()
    raise AssertionError(f'{pattern!r} never printed:\n' +
                         ''.join(seen)[-3000:])


def final_state(work_dir):
    return torch.load(osp.join(work_dir, f'epoch_{EPOCHS}.pth'),
                      weights_only=False)['state_dict']


def assert_same_run(work_dir, reference_dir):
    resumed, reference = final_state(work_dir), final_state(reference_dir)
    assert resumed.keys() == reference.keys()
    assert (resumed['pseudo_labels'] >= 0).all()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The uninterrupted run (it also makes the demo data the others use)."""
    tmp_path = tmp_path_factory.mktemp('resume')
    finish(resume_args(tmp_path, tmp_path / 'reference'))
    return tmp_path, tmp_path / 'reference'


def test_kill_9_mid_epoch_then_resume(reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'killed_mid_epoch'
    proc = start(resume_args(tmp_path, work))
    wait_for_line(proc, r'Epoch\(train\)\s+\[2\]\[1/3\]')
    proc.kill()
    proc.wait()
    assert not osp.exists(work / 'epoch_2.pth')  # killed inside epoch 2
    log = finish(resume_args(tmp_path, work) + ['--resume'])
    assert f'Resuming from {work / "epoch_1.pth"}' in log
    assert_same_run(work, reference_dir)


def test_kill_9_during_a_clustering_round_then_resume(reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'killed_in_round'
    proc = start(resume_args(tmp_path, work))
    wait_for_line(proc, 'Saving checkpoint at 1 epochs')
    while not osp.exists(work / 'epoch_1.pth'):  # complete once renamed
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    # Killed after epoch 1 was saved, before round 1 (epoch 2) finished.
    assert not osp.exists(work / 'clusters' / 'round_1.npz')
    finish(resume_args(tmp_path, work) + ['--resume'])
    assert_same_run(work, reference_dir)


def test_preemption_signal_checkpoints_mid_epoch_and_resumes_there(
        reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'preempted'
    proc = start(resume_args(tmp_path, work))
    wait_for_line(proc, r'Epoch\(train\)\s+\[2\]\[1/3\]')
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
    saved = [name for name in os.listdir(work) if name.startswith('iter_')]
    assert saved, log[-3000:]
    done = int(re.search(r'iter_(\d+)', saved[0]).group(1)) - 3
    assert done in (1, 2)  # the signal's iteration or the next, epoch 2
    log = finish(resume_args(tmp_path, work) + ['--resume'])
    assert f'Resuming from {work / saved[0]}' in log
    assert f'Resuming epoch 2 after its first {done} batches' in log
    # The log counts on from the interrupted run's last batch.
    assert re.search(rf'Epoch\(train\)\s+\[2\]\[{done + 1}/3\]', log), log
    assert not re.search(r'Epoch\(train\)\s+\[2\]\[1/', log), log
    # epoch_2.pth supersedes the preemption checkpoint: removed.
    assert f'Removed {saved[0]}' in log
    assert sorted(os.listdir(work)).count(saved[0]) == 0
    assert_same_run(work, reference_dir)


def test_resume_skips_a_damaged_last_checkpoint(reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'damaged'
    work.mkdir()
    shutil.copy(reference_dir / 'epoch_1.pth', work / 'epoch_1.pth')
    data = (reference_dir / 'epoch_2.pth').read_bytes()
    (work / 'epoch_2.pth').write_bytes(data[:len(data) // 2])  # newest
    log = finish(resume_args(tmp_path, work) + ['--resume'])
    assert f'--resume: skipped {work / "epoch_2.pth"} (unreadable' in log
    assert f'Resuming from {work / "epoch_1.pth"}' in log
    assert_same_run(work, reference_dir)


def test_ctrl_c_checkpoints_mid_epoch_and_exits_130(reference):
    tmp_path, _ = reference
    work = tmp_path / 'ctrl_c'
    # Ctrl-C signals the whole process group, DataLoader workers included.
    proc = start(resume_args(tmp_path, work), start_new_session=True)
    wait_for_line(proc, r'Epoch\(train\)\s+\[2\]\[1/3\]')
    os.killpg(proc.pid, signal.SIGINT)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, log[-3000:]
    saved = [name for name in os.listdir(work) if name.startswith('iter_')]
    assert len(saved) == 1, log[-3000:]
    lines = [line for line in log.splitlines() if 'SIGINT' in line]
    assert len(lines) == 1 and f'saved {saved[0]}' in lines[0], log[-3000:]
    assert 'exiting with 130' in lines[0]
    assert 'Traceback' not in log and 'KeyboardInterrupt' not in log


def test_signals_mid_round_stop_within_seconds_and_the_round_is_redone(
        reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'signal_in_round'
    args = resume_args(tmp_path, work)
    # In round 1 (epoch 2), a k-means of hours, signalled one second in.
    proc = start(args, 'signal-in-round:2:SIGTERM')
    log = proc.communicate(timeout=300)[0]
    ended = time.time()
    sent = float(re.search(r'FAULT SIGTERM sent at (\S+)', log).group(1))
    assert proc.returncode == 143, log[-3000:]
    assert ended - sent < 15, log[-3000:]
    assert ('SIGTERM received during clustering round 1 (epoch 1)' in log
            and 'the state after iteration 3 is already saved' in log), \
        log[-3000:]
    assert not osp.exists(work / 'clusters' / 'round_1.npz')
    assert 'Traceback' not in log
    # Resumed with the final round on: round 1 again, then SIGUSR2 in the
    # final round (after training) is not swallowed either.
    with_final = [a.replace('evaluate_after_train=false',
                            'evaluate_after_train=true') for a in args]
    proc = start(with_final + ['--resume'], 'signal-in-round:2:SIGUSR2')
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGUSR2, log[-3000:]
    assert 'SIGUSR2 received during the final clustering round' in log
    assert 'XDC round 1 (epoch 1' in log
    # The uninterrupted run's weights and labels.
    finish(args + ['--resume'])
    assert_same_run(work, reference_dir)
    assert_same_round_labels(work, reference_dir, 'round_1.npz')


def test_two_ranks_stop_together_when_one_is_signalled_mid_round(reference):
    tmp_path, _ = reference
    work = tmp_path / 'two_ranks'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc-per-node', '2', WITH_FAULTS, 'signal-in-round:2:SIGTERM:1']
        + resume_args(tmp_path, work) + ['--launcher', 'pytorch',
                                         '--device', 'cpu'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.communicate(timeout=300)[0]
    ended = time.time()
    sent = float(re.search(r'FAULT SIGTERM sent at (\S+)', log).group(1))
    assert ended - sent < 30, log[-3000:]  # with torchrun's 5 s polls
    # Rank 1 alone got the signal: both ranks stopped, with its status.
    assert 'SIGTERM received during clustering round 1 (epoch 1)' in log
    assert len(re.findall(r'exitcode\s*: 143 ', log)) == 2, log[-3000:]
    assert '[rank0]: Traceback' not in log and '[rank1]: Traceback' not in log


def test_resume_of_a_copied_and_touched_work_dir_follows_last_checkpoint(
        reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'copied'
    subprocess.run(['cp', '-r', str(reference_dir), str(work)], check=True)
    os.utime(work / 'epoch_1.pth')  # the older checkpoint is now the newest
    finished = (work / 'epoch_2.pth').read_bytes()
    log = finish(resume_args(tmp_path, work) + ['--resume'])
    assert (f'Resuming from {work / "epoch_2.pth"}: named by last_checkpoint'
            ' (epoch 2, iteration 6)') in log
    assert 'outside this work dir (a copied work dir?)' in log
    assert (work / 'epoch_2.pth').read_bytes() == finished  # not retrained


# The chaos run: its kill points are drawn from this seed (printed).
CHAOS_SEED = 17
EVENT = r'Epoch\(train\)|XDC round|Saving checkpoint'


def chaos_plan(seed):
    """Runs of the chaos test, each ``(fault, kill at the n-th event line
    after a delay in s, or None)``: a kill -9 at a random moment, in a
    clustering round and in a checkpoint save (in a random order), at
    another random moment, then a run to the end."""
    rng = random.Random(seed)
    middle = ['kill-in-round:1', 'kill-in-save:1']
    rng.shuffle(middle)

    def moment():
        return rng.randint(1, 4), round(rng.uniform(0, 0.5), 2)

    return ([('none', moment())] + [(f, None) for f in middle] +
            [('none', moment()), ('none', None)])


def test_chaos_kill_9_at_seeded_moments_ends_bit_identical(reference):
    tmp_path, reference_dir = reference
    work = tmp_path / 'chaos'
    plan = chaos_plan(CHAOS_SEED)
    print(f'chaos plan (seed {CHAOS_SEED}):', plan)
    for run, (fault, kill_at) in enumerate(plan):
        args = resume_args(tmp_path, work) + (['--resume'] if run else [])
        if fault == 'none' and kill_at is None:
            finish(args)
            break
        proc = start(args, fault)
        if kill_at is not None:
            events, delay = kill_at
            for _ in range(events):
                wait_for_line(proc, EVENT)
            time.sleep(delay)
            proc.kill()
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == -signal.SIGKILL, (run, fault, kill_at,
                                                    log[-3000:])
    names = os.listdir(work)
    assert not [n for n in names if n.startswith(('.tmp-', 'iter_'))], names
    assert_same_run(work, reference_dir)
    for round_file in ('round_0.npz', 'round_1.npz'):
        assert_same_round_labels(work, reference_dir, round_file)
