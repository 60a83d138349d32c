"""tools/run_net.py --dry-run: builds the run, checks its manifest, prints
the clustering memory per rank and the expected times; writes nothing and
stops with a clear error when the run could not work."""
import os.path as osp

import pytest

from xdc_plugin.clustering.memory_model import clustering_memory
from xdc_plugin.engine.launch import dry_run
from xdc_plugin.engine.launch.launch import build_parser, cli, main
from xdc_plugin.engine.launch.run_cost import (Rate, Rates, kmeans_flops,
                                               run_times)
from xdc_plugin.engine.runner.config import load_config, shipped_config
from xdc_plugin.models.flops import forward_flops
from xdc_plugin.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# 64-d features, reduced to 32 (the recipes' PCA is 256 or 128).
SMALL = ['model.video_encoder.width=0.125', 'model.audio_encoder.width=0.125',
         'default_hooks.clustering.clusterers.preprocess.pca_dim=32']


def _manifest(tmp_path, rows=600, missing_every=3):
    """``rows`` listed files; every ``missing_every``-th does not exist."""
    lines = ['path,label']
    for i in range(rows):
        if (i + 1) % missing_every:
            (tmp_path / f'{i}.mp4').write_bytes(b'')
        lines.append(f'{i}.mp4,c{i % 4}')
    path = tmp_path / 'train.csv'
    path.write_text('\n'.join(lines) + '\n')
    return path


def _dry_run(tmp_path, config, manifest, *flags, overrides=()):
    return main(['--cfg', osp.join(REPO, 'configs', config), '--dry-run',
                 '--work-dir', str(tmp_path / 'work'), *flags,
                 f'train_dataloader.dataset.ann_file={manifest}', *SMALL,
                 *overrides])


def test_kinetics_memory_and_times_from_given_rates(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    report = _dry_run(tmp_path, 'xdc_kinetics.yaml', manifest,
                      '--world-size', '8', '--train-clips-per-s', '100',
                      '--extract-clips-per-s', '300', '--sample-files',
                      '600')
    out = capsys.readouterr().out
    assert not osp.exists(tmp_path / 'work')  # nothing written
    assert f'work dir: {tmp_path / "work"} (to be created)' in out
    assert report['rows'] == 600 and report['world_size'] == 8
    assert "columns ['path', 'label'] (labels: label), 600 rows" in out
    assert '200 of 600 sampled are missing (about 200 in all' in out
    assert set(report['sources']) == {'video', 'audio'}
    video = report['sources']['video']
    assert (video['type'], video['num_clusters'], video['dim'],
            video['feature_dtype']) == ('DistributedKMeans', 256, 32,
                                        'float32')
    common = dict(num_clips=600, dim=32, num_clusters=256, world_size=8,
                  feat_dim=64, num_sources=2)
    assert report['memory_gib'] == {
        'gathered on rank 0': pytest.approx(clustering_memory(
            sharded=False, **common).peak / 2**30),
        'sharded (float32)': pytest.approx(clustering_memory(
            **common).peak / 2**30)}
    # Given rates win; k-means falls back to the config's estimate.
    expected = run_times(600, 8, 45, 5, report['sources'], Rates(
        train=Rate(100.0, ''), extract=Rate(300.0, ''),
        kmeans=Rate(20.0, '', 'TFLOP')))
    assert report['seconds'] == pytest.approx(expected)
    assert 'training rate: 100 clips/s/rank (given on the command line)' in out
    assert 'k-means rate: 20 TFLOP/s/rank (estimate: our guess, not ' \
        'measured' in out
    assert 'data loading assumed to keep up' in out
    assert '9 rounds and a final one' in out


def test_ig65m_shards_float16_rows(tmp_path, capsys):
    manifest = _manifest(tmp_path, rows=300, missing_every=1000)
    report = _dry_run(tmp_path, 'xdc_ig65m.yaml', manifest, '--world-size',
                      '128', overrides=['model.num_clusters.video=64',
                                        'model.num_clusters.audio=32'])
    sources = report['sources']
    assert [sources[s]['num_clusters'] for s in ('video', 'audio')] == \
        [64, 32]
    assert sources['video']['type'] == 'DistributedKMeans'
    assert sources['video']['dim'] == 32
    assert sources['video']['max_points_per_centroid'] == 256
    assert report['memory_gib']['sharded (float16)'] == pytest.approx(
        clustering_memory(300, 32, 64, 128, feature_dtype='float16',
                          feat_dim=64).peak / 2**30)
    assert '0 of 200 sampled are missing\n' in capsys.readouterr().out
    assert report['seconds']['run (sharded)'] > 0


def test_the_default_timeout_outlasts_a_round_of_the_largest_recipe():
    """``env_cfg.dist_cfg.timeout`` bounds how long a rank waits in one
    collective. In a round the longest wait is the features and k-means
    (a rank done with its shard waits for the slowest one): estimated here
    for xdc_ig65m.yaml at 65M clips on the 128 ranks it is written for,
    from the recipe's own throughput estimate (as the dry run prints it),
    with room for a data loader 10 times slower than that."""
    cfg = load_config(shipped_config('xdc_ig65m.yaml'))
    cfg.device = 'cuda'  # its 128 GPUs: the recipe's estimate applies
    world = 128
    built = dry_run.build_run(cfg, world)
    rates = dry_run.gather_rates(build_parser().parse_args([]), cfg,
                                 built.model, cfg.train_dataloader.dataset)
    times = run_times(65_000_000, world, cfg.train_cfg.max_epochs,
                      built.clustering.interval,
                      dry_run.clustering_sources(built), rates)
    round_seconds = times['extract'] + times['kmeans sharded']
    assert 0 < 10 * round_seconds < cfg.env_cfg.dist_cfg.timeout


def test_measured_rates_from_gpu_check(tmp_path, capsys):
    import json
    measured = tmp_path / 'gpu.json'
    measured.write_text(json.dumps(dict(
        environment=dict(device='NVIDIA H200'),
        train_step=[dict(audio_shape=[1, 40, 201], clips_per_s=500.0,
                         extract_clips_per_s=1500.0)], kmeans=[])))
    report = _dry_run(tmp_path, 'xdc_audioset.yaml', _manifest(tmp_path),
                      '--throughput', str(measured), '--device', 'cuda',
                      overrides=['model.num_clusters.video=8',
                                 'model.num_clusters.audio=8'])
    assert report['device'] == 'cuda'
    assert report['seconds']['epoch'] == pytest.approx(600 / 500)
    out = capsys.readouterr().out
    assert f'500 clips/s/rank (measured on NVIDIA H200 ({measured}))' in out
    assert 'at world size 1 on cuda' in out


def _measured(tmp_path, device):
    import json
    path = tmp_path / f'{device}.json'
    path.write_text(json.dumps(dict(
        environment=dict(device=device),
        train_step=[dict(audio_shape=[1, 40, 201], clips_per_s=50.0,
                         extract_clips_per_s=150.0)],
        kmeans=[dict(method='TorchKMeans', num_points=1000, dim=64,
                     num_clusters=16, num_iters=9, iterations_run=4,
                     seconds=0.5)])))
    return path


def test_a_cpu_run_is_estimated_with_cpu_rates(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    with pytest.raises(SystemExit, match='error: .*gpu.json was measured on '
                       'NVIDIA H200, but the run trains and clusters on cpu'
                       r'.*gpu_check.py --cpu'):
        cli(['--cfg', osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
             '--dry-run', '--world-size', '2', '--device', 'cpu',
             '--throughput', str(_measured(tmp_path, 'NVIDIA H200').rename(
                 tmp_path / 'gpu.json')),
             f'train_dataloader.dataset.ann_file={manifest}', *SMALL])
    report = _dry_run(tmp_path, 'xdc_kinetics.yaml', manifest,
                      '--world-size', '2', '--device', 'cpu',
                      '--throughput', str(_measured(tmp_path, 'cpu')))
    out = capsys.readouterr().out
    assert report['device'] == 'cpu'
    # the k-means rate from the iterations the measured fit ran
    rate = kmeans_flops(1000, 64, 16, 4) / 0.5
    assert f'k-means rate: {rate / 1e12:.3g} TFLOP/s/rank (measured on ' \
        'cpu' in out
    kmeans = sum(kmeans_flops(600, s['dim'], s['num_clusters'],
                              s['num_iters'], s['max_points_per_centroid'],
                              s['num_redo'])
                 for s in report['sources'].values())
    assert report['seconds']['kmeans sharded'] == pytest.approx(
        kmeans / rate / 2)
    assert report['seconds']['clustering (sharded)'] == pytest.approx(
        600 / (150 * 2) + kmeans / rate / 2)


def test_a_cpu_run_does_not_use_the_gpu_estimate(tmp_path, capsys):
    report = _dry_run(tmp_path, 'xdc_kinetics.yaml', _manifest(tmp_path),
                      '--world-size', '2', '--device', 'cpu')
    out = capsys.readouterr().out
    assert "the config's throughput_estimate is a GPU's: not used" in out
    assert 'round (sharded)' not in report['seconds']
    assert 'k-means rate: unknown' in out
    planned = _dry_run(tmp_path, 'xdc_kinetics.yaml', _manifest(tmp_path),
                       '--world-size', '2')
    assert planned['device'] == 'cuda'  # several ranks: a GPU run
    assert 'round (sharded)' in planned['seconds']


def test_host_backbone_recipe_counts_its_flops(tmp_path, capsys):
    manifest = _manifest(tmp_path, missing_every=1000)
    overrides = ['model.audio_encoder.width=0.125',
                 'default_hooks.clustering.clusterers.preprocess.pca_dim=32']
    report = main(['--cfg', osp.join(REPO, 'configs', 'xdc_kinetics_x3d.yaml'),
                   '--dry-run', '--work-dir', str(tmp_path / 'work'),
                   f'train_dataloader.dataset.ann_file={manifest}',
                   *overrides])
    out = capsys.readouterr().out
    assert report['sources']['video']['feat_dim'] == 432  # X3D-S, pooled
    cfg = load_config(osp.join(REPO, 'configs', 'xdc_kinetics_x3d.yaml'),
                      overrides)
    expected = forward_flops(MODELS.build(cfg.model), (3, 8, 112, 112),
                             (1, 40, 201))
    assert report['forward_flops'] == expected
    # X3D-S: 1.96 G multiply-adds at 13x160x160 (X3D paper), so about
    # 2 x 1.96 x 8/13 x (112/160)^2 = 1.18 G FLOPs at 8x112x112.
    assert 1.1e9 < expected['video'] < 1.4e9
    assert ('forward FLOPs per clip (3x8x112x112 video, 1x40x201 log-mel): '
            f'video {expected["video"] / 1e9:.3f} G') in out


def test_clip_shapes_of_the_paper_pipeline():
    cfg = load_config(osp.join(REPO, 'configs', 'xdc_kinetics.yaml'))
    assert dry_run.clip_shapes(cfg.train_dataloader.dataset) == (
        (3, 8, 112, 112), (1, 40, 201))
    with pytest.raises(dry_run.DryRunError, match='AudioLogMel'):
        dry_run.clip_shapes(dict(pipeline=[]))


@pytest.mark.parametrize('make, extra, message', [
    (lambda p: _manifest(p, missing_every=1), [], 'none of 200 sampled '
     'files exists'),
    (lambda p: _manifest(p, rows=100), [], 'k=256 for .video. is more than '
     'the 100 rows'),
    (lambda p: p / 'absent.csv', [], 'No such file'),
    (lambda p: _manifest(p), ['model.num_clusters.video=1'],
     'building the run failed: .*num_clusters.video'),
    (lambda p: _manifest(p), ['--world-size', '0'], 'world-size must be'),
])
def test_clear_errors(tmp_path, make, extra, message):
    flags = [e for e in extra if e.startswith('--') or e.isdigit()]
    overrides = [e for e in extra if e not in flags]
    with pytest.raises(SystemExit, match=f'error: .*{message}'):
        cli(['--cfg', osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
             '--dry-run', '--work-dir', str(tmp_path / 'work'), *flags,
             f'train_dataloader.dataset.ann_file={make(tmp_path)}', *SMALL,
             *overrides])
    assert not osp.exists(tmp_path / 'work')


def test_a_work_dir_the_run_could_not_write(tmp_path):
    """Checked up front: its nearest existing folder must be writable (here
    a file stands in its way), and its lock may not be a link."""
    manifest = _manifest(tmp_path, rows=20)
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(SystemExit) as info:
        cli(['--cfg', osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
             '--dry-run', '--work-dir', str(tmp_path / 'a_file' / 'work'),
             f'train_dataloader.dataset.ann_file={manifest}', *SMALL])
    assert str(info.value) == (
        f'error: the work_dir {tmp_path / "a_file" / "work"} cannot be '
        f'written: {tmp_path / "a_file"} is not a writable folder')
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'run.lock').symlink_to(tmp_path / 'elsewhere')
    with pytest.raises(SystemExit, match='run.lock is a symbolic link'):
        cli(['--cfg', osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
             '--dry-run', '--work-dir', str(work),
             f'train_dataloader.dataset.ann_file={manifest}', *SMALL])


def test_a_manifest_without_path_column(tmp_path):
    bad = tmp_path / 'bad.csv'
    bad.write_text('file\na.mp4\n')
    with pytest.raises(SystemExit, match='no "path" column'):
        cli(['--cfg', osp.join(REPO, 'configs', 'xdc_kinetics.yaml'),
             '--dry-run', f'train_dataloader.dataset.ann_file={bad}', *SMALL])
