"""tools/run_net.py end to end on a tiny demo set: train, resume, SLURM."""
import datetime
import os
import os.path as osp
import shutil
import socket
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_demo_args
from mmengine.config import Config
from mmengine.dist import utils as mmengine_dist

from xdc_plugin.engine.launch import launch, slurm
from xdc_plugin.engine.runner.config import (ConfigTypeError, load_config,
                                             shipped_config)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CFG = osp.join(REPO, 'configs', 'xdc_demo.yaml')


# Files the run writes in its work dir by name, planted there as symbolic
# links to files outside it before the run (the targets must not change).
PLANTED = ('last_checkpoint', 'xdc_demo.yaml')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('run')
    (tmp_path / 'work').mkdir()
    for name in PLANTED:
        (tmp_path / f'precious_{name}').write_text('keep me')
        (tmp_path / 'work' / name).symlink_to(tmp_path / f'precious_{name}')
    previous = os.umask(0o022)  # a usual umask: files are 0644
    try:
        runner = launch.main(tiny_demo_args(tmp_path))
    finally:
        os.umask(previous)
    return tmp_path, runner


def test_demo_trains_and_reports_cluster_quality(trained):
    tmp_path, runner = trained
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    rounds = [r['round'] for r in hook.history]
    assert rounds == [0, 0, 1, 1, 'final', 'final']
    assert all(0.0 <= r['nmi'] <= 1.0 for r in hook.history)
    assert osp.isfile(tmp_path / 'work' / 'epoch_2.pth')
    assert osp.isfile(tmp_path / 'work' / 'clusters' / 'round_1.npz')
    labels = runner.model.pseudo_labels
    assert labels.shape == (2, 9) and (labels >= 0).all()


def test_every_file_of_the_run_has_the_mode_of_a_plain_write(trained):
    tmp_path, _ = trained
    modes = {}
    for folder, _, files in os.walk(tmp_path / 'work'):
        for name in files:
            path = osp.join(folder, name)
            modes[osp.relpath(path, tmp_path / 'work')] = stat.S_IMODE(
                os.stat(path).st_mode)
    written_atomically = [n for n in modes if n.endswith(('.pth', '.npz'))
                          or n in ('last_checkpoint', 'xdc_demo.yaml')]
    assert len(written_atomically) >= 5, sorted(modes)
    assert {n: m for n, m in modes.items() if m != 0o644} == {}


def test_links_planted_in_the_work_dir_are_replaced_not_followed(trained):
    tmp_path, _ = trained
    work = tmp_path / 'work'
    for name in PLANTED:
        assert (tmp_path / f'precious_{name}').read_text() == 'keep me'
        assert not (work / name).is_symlink()
    assert (work / 'last_checkpoint').read_text() == str(work /
                                                         'epoch_2.pth')
    assert 'CrossModalClusteringHook' in (work / 'xdc_demo.yaml').read_text()


def test_resume_continues_with_the_checkpointed_labels(trained, tmp_path):
    run_dir, first = trained
    checkpoint = torch.load(run_dir / 'work' / 'epoch_2.pth',
                            weights_only=False)
    saved_labels = checkpoint['state_dict']['pseudo_labels']
    torch.testing.assert_close(saved_labels, first.model.pseudo_labels)

    # Resume into a fresh model from the epoch-1 checkpoint: epoch 1 is not
    # a round start with interval=2, so the labels must come from the file.
    args = tiny_demo_args(run_dir, max_epochs=2) + [
        'default_hooks.clustering.interval=2',
        '+default_hooks.clustering.evaluate_after_train=false']
    args[args.index('--work-dir') + 1] = str(tmp_path / 'resumed')
    resumed = launch.main(args + ['--resume',
                                  str(run_dir / 'work' / 'epoch_1.pth')])
    assert resumed.epoch == 2
    epoch1 = torch.load(run_dir / 'work' / 'epoch_1.pth', weights_only=False)
    hook = next(h for h in resumed.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    # History restored from the checkpoint, no new round at epoch 1.
    assert [r['round'] for r in hook.history] == [0, 0]
    torch.testing.assert_close(resumed.model.pseudo_labels,
                               epoch1['state_dict']['pseudo_labels'])


def test_a_checkpoint_with_int64_labels_resumes(trained, tmp_path):
    """Checkpoints written before the labels were int32 hold them as int64
    under the same key: they resume on the same labels."""
    run_dir, _ = trained
    checkpoint = torch.load(run_dir / 'work' / 'epoch_1.pth',
                            weights_only=False)
    labels = checkpoint['state_dict']['pseudo_labels']
    assert labels.dtype == torch.int32
    checkpoint['state_dict']['pseudo_labels'] = labels.long()
    work = tmp_path / 'resumed'
    work.mkdir()
    torch.save(checkpoint, work / 'epoch_1.pth')
    args = tiny_demo_args(run_dir, max_epochs=2) + [
        'default_hooks.clustering.interval=2',
        '+default_hooks.clustering.evaluate_after_train=false']
    args[args.index('--work-dir') + 1] = str(work)
    resumed = launch.main(args + ['--resume', str(work / 'epoch_1.pth')])
    assert resumed.epoch == 2
    hook = next(h for h in resumed.hooks
                if type(h).__name__ == 'CrossModalClusteringHook')
    assert [r['round'] for r in hook.history] == [0, 0]  # no new round
    assert resumed.model.pseudo_labels.dtype == torch.int32
    torch.testing.assert_close(resumed.model.pseudo_labels, labels)
    saved = torch.load(work / 'epoch_2.pth', weights_only=False)
    torch.testing.assert_close(saved['state_dict']['pseudo_labels'], labels)


def test_run_net_script_rejects_a_wrong_key(tmp_path):
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'run_net.py'), '--cfg',
         DEMO_CFG, 'train_cfg.max_epoch=1'],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode != 0
    assert "unknown config key 'train_cfg.max_epoch'" in out.stderr
    assert 'max_epochs' in out.stderr
    # What cli raises is printed as it is: one line, no traceback.
    assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1


def dist_config(launcher, **dist_cfg):
    return Config(dict(launcher=launcher, device='cpu',
                       env_cfg=dict(dist_cfg=dict(backend='nccl',
                                                  **dist_cfg))))


GROUP_TIMEOUTS = textwrap.dedent('''
    from mmengine.config import Config
    from xdc_plugin.clustering.collectives import _gloo_group
    from xdc_plugin.compat import default_group_timeout
    from xdc_plugin.engine.launch import launch
    launch.init_distributed(Config(dict(
        launcher='pytorch', device='cpu',
        env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=1234)))))
    side = _gloo_group()
    print(default_group_timeout().total_seconds(),
          side._get_backend(side._device_types[0]).options._timeout
          .total_seconds())
''')


def test_the_configured_timeout_reaches_the_cpu_groups():
    """A real gloo group (CPU): the default group and the gloo side group
    of the clustering collectives both wait ``dist_cfg.timeout``."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
               CUDA_VISIBLE_DEVICES='')
    out = subprocess.run([sys.executable, '-c', GROUP_TIMEOUTS], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['1234.0', '1234.0']


@pytest.mark.parametrize('launcher', ['pytorch', 'slurm'])
def test_the_default_timeout_reaches_init_process_group_on_gpus(
        launcher, monkeypatch):
    """The recipes' timeout (an hour, not NCCL's 10 minutes) reaches torch
    through our pytorch and slurm launch path (GPU machines: CUDA mocked),
    which takes seconds and gives torch a ``timedelta``."""
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: None)
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(mmengine_dist.mp, 'get_start_method',
                        lambda allow_none: 'fork')
    for name, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                            SLURM_PROCID='0', SLURM_NTASKS='1',
                            SLURM_LOCALID='0', SLURM_NODELIST='localhost',
                            MASTER_ADDR='127.0.0.1',
                            MASTER_PORT='29500').items():
        monkeypatch.setenv(name, value)
    cfg = load_config(shipped_config('xdc_ig65m.yaml'))
    cfg.launcher, cfg.device = launcher, 'cuda'
    launch.init_distributed(cfg)
    assert calls == [dict(backend='nccl',
                          timeout=datetime.timedelta(hours=1))]


@pytest.mark.parametrize('timeout', [0, -5, '600', True])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout):
    with pytest.raises(ConfigTypeError, match='env_cfg.dist_cfg.timeout '
                       'must be a positive number of seconds'):
        launch.init_distributed(dist_config('pytorch', timeout=timeout))


def test_slurm_task_environment_maps_to_torch_distributed():
    class JobEnv:
        hostnames = ['node-a', 'node-b']
        global_rank, local_rank, num_tasks = 9, 1, 16

    assert slurm.distributed_env(JobEnv(), 29501) == dict(
        MASTER_ADDR='node-a', MASTER_PORT='29501', RANK='9', LOCAL_RANK='1',
        WORLD_SIZE='16')


def test_slurm_job_runs_through_submitit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = slurm.submit(tiny_demo_args(tmp_path, max_epochs=1),
                       folder=str(tmp_path / 'submitit'), cluster='debug',
                       gpus_per_node=1)
    job.result()
    assert osp.isfile(tmp_path / 'work' / 'epoch_1.pth')
    # Requeue on preemption resubmits the same arguments.
    requeued = slurm.TrainingJob(['--cfg', 'x.yaml']).checkpoint()
    assert requeued.function.run_args == ['--cfg', 'x.yaml']


def test_export_of_a_demo_model_reloads_through_the_hub(trained, tmp_path):
    run_dir, runner = trained
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'export_encoder.py'),
         str(run_dir / 'work' / 'epoch_2.pth'), str(tmp_path), '--name',
         'demo'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    video_file = next(tmp_path.glob('demo_video-*.pth'))
    reloaded = torch.hub.load(REPO, 'xdc_video_encoder', source='local',
                              pretraining=None, weights=str(video_file),
                              num_classes=0, width=0.125)
    trained_encoder = runner.model.video_encoder.eval()
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator()
                       .manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(clip),
                                   trained_encoder(clip))


# --- one line, no traceback, before any expensive work ---------------------
AVOBJECTS_CFG = osp.join(REPO, 'configs', 'xdc_avobjects.yaml')


def _one_line_error(argv):
    """The message ``cli`` exits with (what the command line prints)."""
    with pytest.raises(SystemExit) as info:
        launch.cli([str(a) for a in argv])
    message = str(info.value.code)
    assert message.startswith('error: ') and '\n' not in message, message
    return message


def _on_manifest(tmp_path, manifest, *extra):
    return ['--cfg', AVOBJECTS_CFG, '--work-dir', tmp_path / 'work',
            f'train_dataloader.dataset.ann_file={manifest}',
            'train_dataloader.num_workers=0',
            'default_hooks.clustering.extract_dataloader.num_workers=0',
            'model.video_encoder.width=0.125',
            'model.audio_encoder.width=0.125', *extra]


def test_config_problems_are_one_line_before_any_work(tmp_path):
    work = tmp_path / 'work'
    assert _one_line_error(['--cfg', tmp_path / 'nope.yaml']) == (
        f'error: config file {tmp_path / "nope.yaml"}: no such file')
    assert _one_line_error(['--cfg', DEMO_CFG, '--work-dir', work,
                            'train_cfg.max_epochs']) == (
        "error: override 'train_cfg.max_epochs' is not KEY=VALUE")
    for key in ('train_dataloader',
                'default_hooks.clustering.extract_dataloader'):
        for extra in ([], ['--dry-run']):
            assert _one_line_error(
                ['--cfg', DEMO_CFG, '--work-dir', work, *extra,
                 f'{key}.num_workers=-1']) == (
                f'error: {key}.num_workers must be an integer >= 0, got -1')
    assert not work.exists()


@pytest.mark.parametrize('text, says', [
    ('', 'has no "path" column'),
    ('path,coarse_label\n', 'lists no file'),
    (None, 'is not UTF-8 CSV text (a media file?)'),
])
def test_a_manifest_that_lists_nothing_stops_training_with_one_line(
        tmp_path, media_dir, text, says):
    manifest = tmp_path / 'train.csv'
    if text is None:  # a video given as the manifest
        manifest = media_dir / 'timecode.mp4'
    else:
        manifest.write_text(text)
    message = _one_line_error(_on_manifest(tmp_path, manifest))
    assert str(manifest) in message and says in message
    assert not (tmp_path / 'work' / 'epoch_1.pth').exists()


def test_more_clusters_than_clips_stops_before_round_0(tmp_path, media_dir):
    for name in ('a.mp4', 'b.mp4'):
        shutil.copy(media_dir / 'timecode.mp4', tmp_path / name)
    manifest = tmp_path / 'train.csv'
    manifest.write_text('path,coarse_label\na.mp4,x\nb.mp4,y\ngone.mp4,x\n')
    message = _one_line_error(_on_manifest(tmp_path, manifest))
    assert message == (
        "error: k=8 clusters for 'video' is more than the 2 clips of the "
        'dataset (1 more files were skipped at its build): lower '
        'model.num_clusters or give more data')
    assert not (tmp_path / 'work' / 'clusters').exists()  # no round ran


def test_a_read_only_work_dir_is_one_line(tmp_path, monkeypatch):
    work = tmp_path / 'work'
    work.mkdir()
    work.chmod(0o555)
    if os.access(work, os.W_OK):  # root writes anyway: as a user would see
        real = os.access
        monkeypatch.setattr(os, 'access', lambda path, mode: False if str(
            path) == str(work) else real(path, mode))
    try:
        message = _one_line_error(tiny_demo_args(tmp_path))
    finally:
        work.chmod(0o755)
    assert message == (f'error: cannot write in the work_dir {work}: '
                       'Permission denied')
    assert os.listdir(work) == []


def test_disk_full_on_save_is_one_line_and_keeps_the_checkpoint_before(
        tmp_path, monkeypatch):
    """The save of epoch_1.pth fails with ENOSPC (as fsync reports it): one
    line naming the file; the epoch_1.pth and last_checkpoint that were
    there are intact and no temporary file is left."""
    import errno
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'the previous checkpoint')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    real = os.fsync

    def fsync(fd):
        if os.readlink(f'/proc/self/fd/{fd}').endswith('-epoch_1.pth'):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, 'fsync', fsync)
    message = _one_line_error(tiny_demo_args(tmp_path, max_epochs=1) + [
        '+default_hooks.clustering.evaluate_after_train=false'])
    assert message == (
        f'error: could not write {work / "epoch_1.pth"}: No space left on '
        'device; nothing was replaced (the file there before, if any, is '
        'intact); the checkpoints saved before and last_checkpoint are '
        'intact')
    assert (work / 'epoch_1.pth').read_bytes() == b'the previous checkpoint'
    assert (work / 'last_checkpoint').read_text() == str(work /
                                                         'epoch_1.pth')
    assert not [n for n in os.listdir(work) if n.startswith('.tmp-')]
