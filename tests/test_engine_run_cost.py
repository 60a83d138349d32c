"""run_cost: k-means FLOPs, rates from gpu_check's JSON or an estimate,
their precedence, and the epoch/round/run times."""
import json

import pytest

import xdc_plugin  # noqa: F401  (registers the models)
from xdc_plugin.engine.launch.run_cost import (Rate, Rates, duration,
                                               kmeans_flops, merge_rates,
                                               rates_from_estimate,
                                               rates_from_gpu_check, run_times)
from xdc_plugin.models.flops import forward_flops
from xdc_plugin.registry import MODELS


def test_kmeans_flops_count_iterations_and_the_final_pass():
    assert kmeans_flops(1000, 8, 4, 10) == 2 * 8 * 4 * (10 * 1000 + 1000)
    # Training rows capped at k * max_points_per_centroid.
    assert kmeans_flops(1000, 8, 4, 10, max_points_per_centroid=50) == \
        2 * 8 * 4 * (10 * 200 + 1000)
    assert kmeans_flops(100, 8, 4, 10, max_points_per_centroid=50) == \
        kmeans_flops(100, 8, 4, 10)
    # num_redo runs, one final assignment.
    assert kmeans_flops(1000, 8, 4, 10, num_redo=3) == \
        2 * 8 * 4 * (3 * 10 * 1000 + 1000)


def _gpu_check(tmp_path):
    report = dict(
        environment=dict(device='NVIDIA H200'),
        train_step=[dict(audio_shape=[1, 40, 100], clips_per_s=900.0,
                         extract_clips_per_s=2500.0),
                    dict(audio_shape=[1, 40, 201], clips_per_s=800.0,
                         extract_clips_per_s=2000.0)],
        kmeans=[dict(method='TorchKMeans', num_points=1000, dim=64,
                     num_clusters=16, num_iters=9, seconds=0.5),
                dict(method='FaissKMeans', skipped='no GPU')])
    path = tmp_path / 'gpu.json'
    path.write_text(json.dumps(report))
    return str(path)


def test_rates_measured_by_gpu_check(tmp_path):
    path = _gpu_check(tmp_path)
    rates = rates_from_gpu_check(path, 201)
    assert (rates.train.value, rates.extract.value) == (800.0, 2000.0)
    assert rates.kmeans.value == pytest.approx(
        2 * 64 * 16 * 10 * 1000 / 0.5 / 1e12)
    assert rates.kmeans.unit == 'TFLOP'
    assert 'measured on NVIDIA H200' in rates.train.origin
    assert 'TorchKMeans' in rates.kmeans.origin and not rates.notes
    other = rates_from_gpu_check(path, 55)
    assert other.train.value == 900.0
    assert other.notes == ['no step measured at 55 audio frames; used 100']
    assert rates_from_gpu_check(path, 201, 'cuda').train.value == 800.0
    with pytest.raises(ValueError, match='measured on NVIDIA H200, but the '
                       'run trains and clusters on cpu'):
        rates_from_gpu_check(path, 201, 'cpu')


def test_estimate_from_counted_flops():
    model = MODELS.build(dict(
        type='XDCModel', num_clusters=8,
        video_encoder=dict(type='R2Plus1D18', width=0.125),
        audio_encoder=dict(type='AudioResNet18', width=0.125)))
    video, audio = (3, 4, 32, 32), (1, 40, 51)
    flops = forward_flops(model, video, audio)['total']
    rates = rates_from_estimate(dict(label='a guess', peak_tflops=100.0,
                                     mfu=0.25, kmeans_tflops=7.0),
                                model, video, audio)
    assert rates.train.value == pytest.approx(25e12 / (3 * flops))
    assert rates.extract.value == pytest.approx(25e12 / flops)
    assert rates.kmeans.value == 7.0
    assert rates.train.origin == 'estimate: a guess'
    with pytest.raises(ValueError, match=r"lacks \['mfu'\]"):
        rates_from_estimate(dict(label='x', peak_tflops=1.0,
                                 kmeans_tflops=1.0), model, video, audio)


def test_the_first_source_of_each_rate_wins():
    given = Rates(train=Rate(10.0, 'flag'))
    measured = Rates(train=Rate(20.0, 'json'), extract=Rate(30.0, 'json'),
                     notes=['n'])
    estimate = Rates(train=Rate(1.0, 'e'), extract=Rate(1.0, 'e'),
                     kmeans=Rate(5.0, 'e', 'TFLOP'))
    merged = merge_rates(given, measured, estimate)
    assert [(r.value, r.origin) for r in (merged.train, merged.extract,
                                          merged.kmeans)] == [
        (10.0, 'flag'), (30.0, 'json'), (5.0, 'e')]
    assert merged.data is None and merged.notes == ['n']
    assert str(merged.kmeans) == '5 TFLOP/s/rank (e)'


def test_times_of_epoch_round_and_run():
    sources = {s: dict(dim=128, num_clusters=1000, num_iters=20,
                       max_points_per_centroid=None)
               for s in ('video', 'audio')}
    rates = Rates(train=Rate(100.0, 'x'), extract=Rate(400.0, 'x'),
                  kmeans=Rate(1.0, 'x', 'TFLOP'))
    n, world = 1_000_000, 10
    times = run_times(n, world, epochs=9, interval=4, sources=sources,
                      rates=rates)
    assert times['epoch'] == pytest.approx(n / 1000)
    assert times['extract'] == pytest.approx(n / 4000)
    kmeans = 2 * kmeans_flops(n, 128, 1000, 20) / 1e12
    assert times['kmeans on rank 0'] == pytest.approx(kmeans)
    assert times['kmeans sharded'] == pytest.approx(kmeans / world)
    clustering = n / 4000 + kmeans / world
    assert times['round (sharded)'] == pytest.approx(4 * n / 1000 +
                                                     clustering)
    # 3 rounds (epochs 0, 4, 8) and the final one.
    assert times['run (sharded)'] == pytest.approx(9 * n / 1000 +
                                                   4 * clustering)
    # A slower data loader caps training; without k-means, no round.
    assert times['clustering (sharded)'] == pytest.approx(clustering)
    # A slower data loader caps training and extraction; without k-means,
    # no round.
    capped = run_times(n, world, 9, 4, sources, Rates(
        train=Rate(100.0, 'x'), data=Rate(50.0, 'x'),
        extract=Rate(400.0, 'x')))
    assert capped == {'epoch': pytest.approx(n / 500),
                      'extract': pytest.approx(n / 500)}
    redone = run_times(n, world, 9, 4, {s: dict(v, num_redo=3) for s, v in
                                        sources.items()}, rates)
    assert redone['kmeans on rank 0'] == pytest.approx(
        2 * kmeans_flops(n, 128, 1000, 20, num_redo=3) / 1e12)


def test_duration():
    assert duration(12.34) == '12.3 s'
    assert duration(7200) == '2.00 h'
    assert duration(4 * 86400) == '4.0 days'
