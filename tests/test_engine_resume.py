"""Kill a real training process, resume it: it ends with the weights and
pseudo-labels of the uninterrupted run of the same seed (CPU)."""
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_engine_launch import REPO, tiny_demo_args

RUN_NET = osp.join(REPO, 'tools', 'run_net.py')
EPOCHS = 2


def resume_args(tmp_path, work_dir):
    """The tiny demo with DataLoader workers, a clustering round at every
    epoch and a log line at every iteration."""
    args = tiny_demo_args(tmp_path, max_epochs=EPOCHS) + [
        'train_dataloader.num_workers=2', 'default_hooks.logger.interval=1',
        f'param_scheduler.0.T_max={EPOCHS}',
        '+custom_hooks.0.evaluate_after_train=false']
    args[args.index('--work-dir') + 1] = str(work_dir)
    return args


def start(args):
    return subprocess.Popen(
        [sys.executable, '-u', RUN_NET] + args, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


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
