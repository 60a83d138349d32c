"""tools/gpu_acceptance.py: its CPU mode end to end (the summary it writes,
every step run for real on the CPU with gloo), a failed step, the summary's
markdown."""
import json
import os.path as osp
import re
import runpy
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL_PATH = osp.join(REPO, 'tools', 'gpu_acceptance.py')
TOOL = runpy.run_path(TOOL_PATH)
STEPS = ['environment', 'cuda_tests', 'gpu_check', 'demo', 'preemption',
         'torchrun']


@pytest.fixture(scope='module')
def cpu_acceptance(tmp_path_factory):
    out = tmp_path_factory.mktemp('acceptance')
    run = subprocess.run(
        [sys.executable, TOOL_PATH, '--cpu', '--out', str(out),
         '--time-scale', '4'], capture_output=True, text=True, timeout=1800,
        cwd=REPO)
    return out, run


@pytest.mark.timeout(1800)  # the fixture's run counts here
def test_cpu_mode_runs_every_step_and_passes(cpu_acceptance):
    out, run = cpu_acceptance
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['schema'] == 'xdc-gpu-acceptance/1'
    assert summary['mode'] == 'cpu' and summary['ok'] is True
    steps = {s['name']: s for s in summary['steps']}
    assert list(steps) == STEPS
    assert all(s['ok'] and s['seconds'] > 0 for s in steps.values())
    assert steps['cuda_tests']['details'] == {
        'skipped': 'CUDA tests need a GPU (--cpu)'}
    assert len(steps['environment']['details']['faiss_builds']) == 1
    check = steps['gpu_check']['details']
    assert check['backend'] == 'gloo' and check['device'] == 'cpu'
    assert [r['amp'] for r in check['steps']] == ['bfloat16'] * 2
    assert [r['method'] for r in check['kmeans']] == [
        'TorchKMeans', 'FaissKMeans', 'DistributedKMeans']
    final = steps['demo']['details']['final']
    assert all(0 <= final[k] <= 1 for k in ('video_nmi', 'audio_nmi',
                                            'agreement_nmi'))
    preemption = steps['preemption']['details']
    assert preemption['resumed'] is True
    assert preemption['checkpoint'].startswith('iter_')
    # The resumed run started from it (and removed it once its epoch's
    # checkpoint superseded it).
    resumed = (out / 'resumed.log').read_text()
    assert re.search(r'Resuming from \S*/' + re.escape(
        preemption['checkpoint']) + ':', resumed)
    assert steps['torchrun']['details'] == {'cluster_rows_on': 'cpu'}
    text = (out / 'summary.md').read_text()
    assert text.startswith('# GPU acceptance (cpu), ')
    assert '| preemption | passed |' in text and text.endswith('PASSED\n')
    assert '- demo with --amp, final round: video NMI' in text


def test_a_failed_step_is_recorded_and_the_next_ones_run(tmp_path,
                                                         monkeypatch):
    ran = []

    def broken(ctx):
        ran.append('broken')
        raise TOOL['StepFailed']('simulated failure\nsecond line')

    def fine(ctx):
        ran.append('fine')
        return {'x': 1}

    monkeypatch.setitem(TOOL['main'].__globals__, 'STEPS',
                        [('environment', broken), ('demo', fine)])
    with pytest.raises(SystemExit) as stop:
        TOOL['main'](['--cpu', '--out', str(tmp_path)])
    assert stop.value.code == 1 and ran == ['broken', 'fine']
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert [(s['name'], s['ok']) for s in summary['steps']] == [
        ('environment', False), ('demo', True)]
    assert summary['steps'][0]['error'] == ('StepFailed: simulated '
                                            'failure\nsecond line')
    text = (tmp_path / 'summary.md').read_text()
    assert '| environment | FAILED |' in text
    assert 'StepFailed: simulated failure |' in text
    assert text.endswith('FAILED\n')


def test_final_nmi_is_read_from_the_round_log():
    log = ('x\nXDC round final (epoch 40): video clusters NMI=0.883 ARI=0.1 '
           '| audio clusters NMI=0.897 ARI=0.2 | video-audio agreement '
           'NMI=0.815\n')
    assert TOOL['final_nmi'](log) == dict(video_nmi=0.883, audio_nmi=0.897,
                                          agreement_nmi=0.815)
    with pytest.raises(TOOL['StepFailed'], match='no final'):
        TOOL['final_nmi']('XDC round 1 (epoch 1): ...')


def test_two_faiss_builds_fail_the_environment(monkeypatch):
    versions = {'faiss-cpu': '1.15.1', 'faiss-gpu': '1.15.1'}

    def version(name):
        if name not in versions:
            raise TOOL['importlib'].metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(TOOL['importlib'].metadata, 'version', version)
    ctx = TOOL['Context'](TOOL['parse_args'](['--cpu']))
    with pytest.raises(TOOL['StepFailed'], match='faiss-cpu 1.15.1, '
                       'faiss-gpu 1.15.1.*one is needed'):
        TOOL['step_environment'](ctx)
