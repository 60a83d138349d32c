"""tools/submit_slurm.py on a real one-node SLURM cluster.

``.ci/start_slurm.sh`` (root) brings the cluster up; ``.ci/run`` calls it.
Select these tests with ``pytest -m slurm``. They skip, quoting the reason,
only when no cluster answers. Jobs run through submitit's Slurm executor
with 2 CPU tasks (gloo) on a tiny demo set.
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import submitit
import torch

from xdc_plugin.clustering.round_file import load_round, part_path, round_path

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
START_FAILURE = osp.join(os.environ.get('XDC_SLURM_DIR', '/var/lib/xdc-slurm'),
                         'start_failure.txt')
JOB_TIMEOUT_S = 300
# 24 clips over 2 ranks, 2 per batch: 6 iterations per epoch on each rank.
CLIPS, BATCH, EPOCHS = 24, 2, 3
ITERS_PER_EPOCH = CLIPS // 2 // BATCH

pytestmark = pytest.mark.slurm


def cluster_unavailable_reason():
    """Why no SLURM cluster answers here, or None when one does."""
    if shutil.which('sinfo') is None:
        reason = 'sinfo not found: run .ci/start_slurm.sh as root'
    else:
        out = subprocess.run(['sinfo', '-h', '-o', '%T %E'],
                             capture_output=True, text=True, timeout=30)
        state = out.stdout.split()[:1]
        if out.returncode == 0 and state and state[0] in (
                'idle', 'mixed', 'allocated', 'completing'):
            return None
        reason = (f'sinfo answers {out.stdout.strip()!r} '
                  f'{out.stderr.strip()!r} (no node up)')
    if osp.isfile(START_FAILURE):
        with open(START_FAILURE) as f:
            reason += '; .ci/start_slurm.sh said: ' + f.read()
    return reason


@pytest.fixture(scope='module')
def slurm_cluster():
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(f'no SLURM cluster: {reason}')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return tmp_path_factory.mktemp('slurm_demo')


def run_args(root, work_dir):
    return [
        '--cfg', osp.join(REPO, 'configs', 'xdc_demo.yaml'),
        '--work-dir', str(work_dir),
        f"train_dataloader.dataset.data_root={root / 'data'}",
        f'train_dataloader.dataset.generate.clips_per_class={CLIPS // 4}',
        'train_dataloader.dataset.generate.num_classes=4',
        '+train_dataloader.dataset.generate.progress=false',
        f'train_dataloader.batch_size={BATCH}',
        'train_dataloader.num_workers=0', 'model.num_clusters=4',
        f'train_cfg.max_epochs={EPOCHS}', f'param_scheduler.0.T_max={EPOCHS}',
        'default_hooks.clustering.interval=1',
        'default_hooks.clustering.extract_dataloader.num_workers=0',
        'default_hooks.clustering.clusterers.num_redo=1',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
    ]


def submit(root, name):
    """Submit through the CLI with submitit's Slurm executor; returns
    ``(job_id, submitit folder, work dir)``."""
    folder, work_dir = root / name / 'submitit', root / name / 'work'
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'submit_slurm.py'),
         '--cluster', 'slurm', '--gpus-per-node', '0', '--tasks-per-node',
         '2', '--cpus-per-task', '1', '--timeout-min', '30', '--name', name,
         '--folder', str(folder), '--'] + run_args(root, work_dir),
        capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    job_id = re.search(r'submitted job (\d+)', out.stdout).group(1)
    return job_id, folder, work_dir


def job_info(job_id):
    out = subprocess.run(['scontrol', 'show', 'job', '-o', job_id],
                         capture_output=True, text=True, timeout=30)
    return dict(re.findall(r'(\w+)=(\S*)', out.stdout))


def task_log(folder, job_id, task=0):
    path = folder / f'{job_id}_{task}_log.out'
    return path.read_text() if path.exists() else ''


def wait_until(job_id, folder, done, what):
    """Poll until ``done()``; on a timeout or a failed job, cancel it and
    fail with the tails of its task logs."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not done():
        state = job_info(job_id).get('JobState')
        if state in ('FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL',
                     'OUT_OF_MEMORY') or time.monotonic() > deadline:
            subprocess.run(['scancel', job_id], timeout=30)
            logs = '\n'.join(
                f'--- task {t} ---\n' + task_log(folder, job_id, t)[-2000:]
                + (folder / f'{job_id}_{t}_log.err').read_text()[-2000:]
                for t in (0, 1) if (folder / f'{job_id}_{t}_log.err').exists())
            pytest.fail(f'job {job_id} is {state} while waiting for {what}\n'
                        f'{logs}')
        time.sleep(1)


def finished(job_id, folder):
    """Wait for the job to complete; returns both tasks' summaries."""
    wait_until(job_id, folder,
               lambda: job_info(job_id).get('JobState') == 'COMPLETED',
               'completion')
    job = submitit.SlurmJob(folder=folder, job_id=job_id, tasks=(0, 1))
    return sorted(job.results(), key=lambda summary: summary['rank'])


def final_clusters(work_dir):
    """Labels and centroids of the final round, whose two parts the two
    tasks wrote."""
    path = round_path(str(work_dir), 'final')
    assert all(osp.isfile(part_path(path, p, 2)) for p in (0, 1))
    loaded = load_round(path)
    return {f'{source}_{name}': getattr(clusters, name)
            for source, clusters in loaded.sources.items()
            for name in ('labels', 'centroids')}


@pytest.fixture(scope='module')
def uninterrupted(slurm_cluster, demo_root):
    job_id, folder, work_dir = submit(demo_root, 'uninterrupted')
    return job_id, folder, work_dir, finished(job_id, folder)


def test_two_cpu_tasks_train_together_and_finish(uninterrupted):
    job_id, folder, work_dir, summaries = uninterrupted
    # Each rank ran every iteration of its half of the data: 6 per epoch.
    assert summaries == [
        dict(rank=rank, world_size=2, epoch=EPOCHS,
             iter=EPOCHS * ITERS_PER_EPOCH, restarts=0) for rank in (0, 1)]
    for task in (0, 1):
        assert f'global_rank={task}(2)' in task_log(folder, job_id, task)
    assert f'Epoch(train) [{EPOCHS}][{ITERS_PER_EPOCH}/{ITERS_PER_EPOCH}]' \
        in task_log(folder, job_id, 0)
    clusters = final_clusters(work_dir)
    for modality in ('video', 'audio'):
        labels = clusters[f'{modality}_labels']
        assert labels.shape == (CLIPS,)
        assert set(labels) <= set(range(4))


def last_logged_iter(log):
    """The global iteration of the last ``Epoch(train) [e][i/n]`` line."""
    steps = re.findall(r'Epoch\(train\) \[(\d+)\]\[(\d+)/(\d+)\]', log)
    epoch, step, per_epoch = map(int, steps[-1])
    return (epoch - 1) * per_epoch + step


def pseudo_labels(checkpoint_path):
    checkpoint = torch.load(checkpoint_path, map_location='cpu',
                            weights_only=False)
    return checkpoint['meta'], checkpoint['state_dict']['pseudo_labels']


def test_preempted_job_checkpoints_requeues_and_resumes(uninterrupted,
                                                        demo_root):
    job_id, folder, work_dir = submit(demo_root, 'preempted')
    # Preempt once epoch 2 runs (after clustering round 1).
    mid_epoch = f'Epoch(train) [2][2/{ITERS_PER_EPOCH}]'
    wait_until(job_id, folder, lambda: mid_epoch in task_log(folder, job_id),
               mid_epoch)
    logged_before = last_logged_iter(task_log(folder, job_id))
    subprocess.run(['scancel', '--signal=USR2', job_id], check=True,
                   timeout=30)
    summaries = finished(job_id, folder)
    assert [(s['restarts'], s['iter']) for s in summaries] == \
        [(1, EPOCHS * ITERS_PER_EPOCH)] * 2

    # The requeued job resumed from the checkpoint taken on the signal
    # (iter_<n>.pth, written at the iteration that saw it), with no logged
    # iteration lost. Where n lands depends on how fast the signal travels
    # (polling, scancel, SLURM): after the epoch-2 mark, before the end. A
    # signal that reaches the clustering round after an epoch finds that
    # epoch's checkpoint, which then is the one resumed.
    # (Only the requeued run loads a checkpoint.)
    log = task_log(folder, job_id)
    resumed_from = re.search(r'Load checkpoint from (\S+)', log)
    assert resumed_from, 'the requeued job did not resume'
    meta, labels = pseudo_labels(resumed_from.group(1))
    n = meta['iter']
    assert osp.basename(resumed_from.group(1)) in (
        f'iter_{n}.pth', f'epoch_{n // ITERS_PER_EPOCH}.pth'
        if n % ITERS_PER_EPOCH == 0 else None)
    assert logged_before <= n < EPOCHS * ITERS_PER_EPOCH
    assert re.search(rf'resumed epoch: \d+, iter: {n}\b', log)

    # Identical pseudo-labels: those the checkpoint held are the ones the
    # uninterrupted run trained epoch e with, and the resumed job kept them
    # to the end of that epoch.
    epoch = (n - 1) // ITERS_PER_EPOCH + 1
    _, uninterrupted_labels = pseudo_labels(
        uninterrupted[2] / f'epoch_{epoch}.pth')
    _, resumed_labels = pseudo_labels(work_dir / f'epoch_{epoch}.pth')
    torch.testing.assert_close(labels, uninterrupted_labels, rtol=0, atol=0)
    torch.testing.assert_close(resumed_labels, labels, rtol=0, atol=0)

    # Same final clusters as the uninterrupted run of the same seed.
    expected, final = final_clusters(uninterrupted[2]), final_clusters(
        work_dir)
    for modality in ('video', 'audio'):
        np.testing.assert_array_equal(final[f'{modality}_labels'],
                                      expected[f'{modality}_labels'])
        np.testing.assert_allclose(final[f'{modality}_centroids'],
                                   expected[f'{modality}_centroids'],
                                   rtol=1e-5, atol=1e-6)
