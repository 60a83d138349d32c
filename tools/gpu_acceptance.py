"""Acceptance check of a GPU node for XDC: one command, one summary.

    pip install -e ".[gpu,test]"    # first: faiss's GPU build (not .[cpu])
    python tools/gpu_acceptance.py --out work_dirs/acceptance
    python tools/gpu_acceptance.py --cpu --out /tmp/acceptance  # CI: tiny

Steps, each in its own process with a time limit (a failed step is recorded
and the next ones still run):

1. ``environment``: CUDA visible (GPU, torch's CUDA, the driver), one build
   of faiss installed and, on the GPU, faiss sees it;
2. ``cuda_tests``: the tests that need CUDA (they skip elsewhere); none may
   fail or skip;
3. ``gpu_check``: ``tools/gpu_check.py`` at the paper's sizes: one NCCL rank,
   the ``--amp`` (bf16) step, MFU, peak memory, k-means of 1M x 512 rows at
   k = 8192 with torch and faiss-gpu;
4. ``demo``: the demo recipe with ``--amp`` on the device; its final NMI;
5. ``preemption``: a run signalled with USR2 saves ``iter_<n>.pth`` and
   exits with 128 + USR2; ``--resume-required`` resumes from it and ends;
6. ``torchrun``: a one-process ``torchrun ... --launcher pytorch`` run whose
   clustering rows are on the GPU (k-means where the encoders run).

``--cpu`` runs the same steps on the CPU (gloo) at tiny sizes, CUDA tests
excepted (recorded as skipped): the check of the check, run in CI.
Writes ``summary.json`` and ``summary.md`` in ``--out``; exits 1 when a step
failed. On one GPU the whole check is sized for at most 10 minutes.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
DEMO_CFG = osp.join(REPO, 'configs', 'xdc_demo.yaml')
SCHEMA = 'xdc-gpu-acceptance/1'
# The tests that skip without CUDA.
CUDA_TESTS = [
    'tests/test_gpu_check.py::test_tiny_run_on_the_gpu',
    'tests/test_clustering_kmeans.py::test_torch_kmeans_on_cuda_matches_cpu',
]
FAISS_BUILDS = ('faiss-cpu', 'faiss-gpu', 'faiss-gpu-cu12', 'faiss-gpu-cu11')
# Each step's time limit, in seconds: 10 minutes in all (--time-scale
# multiplies them, e.g. for the CPU mode on a slow machine).
# The demo's includes making its 160 clips.
LIMITS = dict(environment=20, cuda_tests=80, gpu_check=140, demo=200,
              preemption=80, torchrun=80)
USR2_EXIT = 128 + signal.SIGUSR2
# mmengine's log line of epoch 1, iteration 1 (numbers padded to width).
FIRST_ITERATION = re.compile(r'Epoch\(train\) *\[ *1\]\[ *1/')


class StepFailed(RuntimeError):
    """A step's check did not hold."""


def _data_root(root):
    """The demo data, shared by the steps: beside their folders."""
    return osp.join(osp.dirname(root), 'data')


def tiny_run_args(root, epochs=2):
    """A tiny demo run (9 generated clips of 3 classes, narrow encoders)
    under ``root``."""
    return [
        '--cfg', DEMO_CFG, '--work-dir', osp.join(root, 'work'),
        f'train_dataloader.dataset.data_root={_data_root(root)}',
        'train_dataloader.dataset.generate.clips_per_class=3',
        'train_dataloader.dataset.generate.num_classes=3',
        '+train_dataloader.dataset.generate.progress=false',
        'train_dataloader.batch_size=3', 'train_dataloader.num_workers=0',
        'model.num_clusters=3', 'model.video_encoder.width=0.125',
        'model.audio_encoder.width=0.125', f'train_cfg.max_epochs={epochs}',
        f'param_scheduler.0.T_max={epochs}',
        'default_hooks.clustering.interval=1',
        'default_hooks.clustering.extract_dataloader.num_workers=0',
        'default_hooks.clustering.clusterers.num_redo=1',
        'default_hooks.logger.interval=1']


def short_run_args(root, epochs=2):
    """The demo data at the demo's sizes, ``epochs`` epochs, a round each."""
    return ['--cfg', DEMO_CFG, '--work-dir', osp.join(root, 'work'),
            f'train_dataloader.dataset.data_root={_data_root(root)}',
            f'train_cfg.max_epochs={epochs}',
            f'param_scheduler.0.T_max={epochs}',
            'default_hooks.clustering.interval=1',
            'default_hooks.logger.interval=1']


def run(command, log_path, timeout, env=None):
    """Run ``command`` with its output in ``log_path``; returns (exit
    status, the output)."""
    with open(log_path, 'w') as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout, cwd=REPO,
                              env=env).returncode
    with open(log_path) as log:
        return code, log.read()


def checked(code, output, what):
    if code != 0:
        raise StepFailed(f'{what} exited with {code}; its output ends:\n'
                         + output[-2000:])
    return output


def final_nmi(output):
    """NMI of the final round's video and audio clusters and their
    agreement, from the run's log."""
    line = next((row for row in output.splitlines()
                 if 'XDC round final' in row), None)
    if line is None:
        raise StepFailed('no final clustering round in the log')
    found = dict(re.findall(r'(video|audio) clusters NMI=([\d.]+)', line))
    agreement = re.search(r'agreement NMI=([\d.]+)', line)
    return dict(video_nmi=float(found['video']),
                audio_nmi=float(found['audio']),
                agreement_nmi=float(agreement.group(1)) if agreement
                else None)


def round_history(work_dir):
    """The clustering records of the run's last checkpoint (ours: it is
    unpickled fully)."""
    import torch
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        path = f.read().strip()
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    return checkpoint['xdc_clustering']['history']


# -- the steps ---------------------------------------------------------------
def step_environment(ctx):
    import torch
    from xdc_plugin.engine.runner.device import cuda_versions, driver_version
    builds = []
    for name in FAISS_BUILDS:
        try:
            builds.append(f'{name} {importlib.metadata.version(name)}')
        except importlib.metadata.PackageNotFoundError:
            pass
    found = dict(torch=torch.__version__, cuda=torch.version.cuda,
                 driver=driver_version(), faiss_builds=builds,
                 cuda_visible=torch.cuda.is_available())
    if len(builds) != 1:
        raise StepFailed(f'installed faiss builds: '
                         f'{", ".join(builds) or "none"}; one is needed (pip '
                         'install -e ".[gpu]" on a GPU node, after pip '
                         'uninstall faiss-cpu)')
    import faiss
    found['faiss_gpus'] = (faiss.get_num_gpus() if hasattr(
        faiss, 'get_num_gpus') else 0)
    if ctx.cpu:
        return found
    if not torch.cuda.is_available():
        raise StepFailed(f'no CUDA device is visible: {cuda_versions()}')
    found.update(gpu=torch.cuda.get_device_name(),
                 gpu_count=torch.cuda.device_count(),
                 bf16=torch.cuda.is_bf16_supported(including_emulation=False))
    if found['faiss_gpus'] == 0:
        raise StepFailed(f'{builds[0]} sees no GPU: pip uninstall faiss-cpu; '
                         'pip install -e ".[gpu]"')
    return found


def step_cuda_tests(ctx):
    if ctx.cpu:
        return dict(skipped='CUDA tests need a GPU (--cpu)')
    report = osp.join(ctx.out, 'cuda_tests.xml')
    code, output = run([sys.executable, '-m', 'pytest', '-q',
                        '-p', 'no:cacheprovider', f'--junitxml={report}',
                        *CUDA_TESTS], osp.join(ctx.out, 'cuda_tests.log'),
                       ctx.limit('cuda_tests'))
    cases = ElementTree.parse(report).getroot().iter('testcase')
    results = {f"{c.get('classname')}::{c.get('name')}":
               ('failed' if c.find('failure') is not None or c.find('error')
                is not None else 'skipped' if c.find('skipped') is not None
                else 'passed') for c in cases}
    if code != 0 or set(results.values()) != {'passed'} or \
            len(results) != len(CUDA_TESTS):
        raise StepFailed(f'CUDA tests: {results}; end of the log:\n'
                         + output[-2000:])
    return dict(tests=results)


def step_gpu_check(ctx):
    out = osp.join(ctx.out, 'gpu_check.json')
    sizes = ['--cpu', '--tiny', '--amp', 'bf16'] if ctx.cpu else []
    checked(*run([sys.executable, osp.join(TOOLS, 'gpu_check.py'),
                  '--out', out, *sizes], osp.join(ctx.out, 'gpu_check.log'),
                 ctx.limit('gpu_check')), 'tools/gpu_check.py')
    with open(out) as f:
        report = json.load(f)
    return dict(
        backend=report['backend'], device=report['environment']['device'],
        steps=[{k: r[k] for k in ('audio_shape', 'amp', 'clips_per_s',
                                  'extract_clips_per_s', 'mfu',
                                  'peak_memory_gib')}
               for r in report['train_step']],
        kmeans=[{k: r.get(k) for k in ('method', 'num_points', 'dim',
                                       'num_clusters', 'seconds',
                                       'iterations_run', 'skipped')}
                for r in report['kmeans']])


def step_demo(ctx):
    root = osp.join(ctx.out, 'demo')
    args = (tiny_run_args(root) if ctx.cpu else
            ['--cfg', DEMO_CFG, '--work-dir', osp.join(root, 'work'),
             f'train_dataloader.dataset.data_root={_data_root(root)}'])
    output = checked(*run(
        [sys.executable, osp.join(TOOLS, 'run_net.py'), '--amp',
         '--device', ctx.device, *args], osp.join(ctx.out, 'demo.log'),
        ctx.limit('demo')), 'the demo run')
    return dict(final=final_nmi(output))


def step_preemption(ctx):
    root = osp.join(ctx.out, 'preemption')
    args = (tiny_run_args(root) if ctx.cpu else short_run_args(root)) + [
        '--device', ctx.device, '--amp']
    command = [sys.executable, osp.join(TOOLS, 'run_net.py'), *args]
    log_path = osp.join(ctx.out, 'preemption.log')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    deadline = time.monotonic() + ctx.limit('preemption')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                cwd=REPO, env=env)
        watchdog = threading.Timer(ctx.limit('preemption'), proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:  # signal after the first iteration
                log.write(line)
                if FIRST_ITERATION.search(line):
                    proc.send_signal(signal.SIGUSR2)
                    break
            log.write(proc.stdout.read())
            code = proc.wait()
        finally:
            watchdog.cancel()
    with open(log_path) as log:
        output = log.read()
    if time.monotonic() >= deadline:
        raise StepFailed('the signalled run did not stop within '
                         f"{ctx.limit('preemption'):.0f} s")
    if code != USR2_EXIT:
        raise StepFailed(f'the signalled run exited with {code}, not '
                         f'{USR2_EXIT}; its output ends:\n{output[-2000:]}')
    saved = re.search(r'saved (iter_\d+\.pth)', output)
    if not saved:
        raise StepFailed('the signalled run saved no iter_<n>.pth')
    resumed = checked(*run(command + ['--resume-required'],
                           osp.join(ctx.out, 'resumed.log'),
                           max(1, deadline - time.monotonic())),
                      'the --resume-required run')
    if f'{saved.group(1)}' not in resumed or 'Resuming from' not in resumed:
        raise StepFailed(f'the resumed run did not resume from '
                         f'{saved.group(1)}')
    return dict(checkpoint=saved.group(1), resumed=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def step_torchrun(ctx):
    root = osp.join(ctx.out, 'torchrun')
    args = tiny_run_args(root) if ctx.cpu else short_run_args(root)
    checked(*run([sys.executable, '-m', 'torch.distributed.run',
                  '--nproc-per-node', '1', '--master-port', str(free_port()),
                  osp.join(TOOLS, 'run_net.py'), '--launcher', 'pytorch',
                  '--device', ctx.device, '--amp', *args],
                 osp.join(ctx.out, 'torchrun.log'), ctx.limit('torchrun')),
            'the torchrun run')
    devices = sorted({r['device'] for r in round_history(
        osp.join(root, 'work'))})
    expected = 'cpu' if ctx.cpu else 'cuda:0'
    if devices != [expected]:
        raise StepFailed(f'the rounds clustered rows on {devices}, not '
                         f'{expected}')
    return dict(cluster_rows_on=devices[0])


STEPS = [('environment', step_environment), ('cuda_tests', step_cuda_tests),
         ('gpu_check', step_gpu_check), ('demo', step_demo),
         ('preemption', step_preemption), ('torchrun', step_torchrun)]


# -- summary ----------------------------------------------------------------
def _fmt(value, spec):
    return 'n/a' if value is None else format(value, spec)


def markdown(summary):
    """The summary as markdown: the steps, then the figures."""
    lines = [f"# GPU acceptance ({summary['mode']}), {summary['date']}", '',
             '| step | result | seconds | details |', '|---|---|---:|---|']
    for step in summary['steps']:
        result = ('FAILED' if not step['ok'] else 'skipped' if 'skipped'
                  in step.get('details', {}) else 'passed')
        detail = step.get('error', '').splitlines()[0] if not step['ok'] \
            else step.get('details', {}).get('skipped', '')
        lines.append(f"| {step['name']} | {result} | {step['seconds']:.0f} "
                     f'| {detail} |')
    details = {s['name']: s.get('details', {}) for s in summary['steps']}
    env = details.get('environment', {})
    lines += ['', f"GPU: {env.get('gpu', 'none')}; driver "
              f"{env.get('driver') or 'none found'}; torch {env.get('torch')}"
              f" (CUDA {env.get('cuda')}); faiss: "
              f"{', '.join(env.get('faiss_builds', [])) or 'none'} "
              f"({env.get('faiss_gpus', 0)} GPUs)"]
    check = details.get('gpu_check', {})
    for row in check.get('steps', []):
        lines.append(f"- step ({row['amp'] or 'fp32'}, audio "
                     f"{'x'.join(map(str, row['audio_shape']))}): "
                     f"{row['clips_per_s']:.1f} clips/s, MFU "
                     f"{_fmt(row['mfu'], '.1%')}, peak "
                     f"{_fmt(row['peak_memory_gib'], '.2f')} GiB, extraction "
                     f"{row['extract_clips_per_s']:.1f} clips/s")
    for row in check.get('kmeans', []):
        lines.append(f"- k-means {row['method']} ({row['num_points']:,} x "
                     f"{row['dim']}, k={row['num_clusters']}): " +
                     (f"skipped: {row['skipped']}" if row.get('skipped') else
                      f"{row['seconds']:.2f} s, {row['iterations_run']} "
                      'iterations'))
    final = details.get('demo', {}).get('final')
    if final:
        lines.append(f"- demo with --amp, final round: video NMI "
                     f"{final['video_nmi']:.3f}, audio NMI "
                     f"{final['audio_nmi']:.3f}, agreement "
                     f"{_fmt(final['agreement_nmi'], '.3f')}")
    lines += ['', 'PASSED' if summary['ok'] else 'FAILED']
    return '\n'.join(lines) + '\n'


class Context:
    """What the steps share: the mode, the output folder, the limits."""

    def __init__(self, args):
        self.cpu = args.cpu
        self.out = osp.abspath(args.out)
        self.device = 'cpu' if args.cpu else 'cuda'
        self.scale = args.time_scale

    def limit(self, step):
        return LIMITS[step] * self.scale


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--out', default='work_dirs/gpu_acceptance')
    parser.add_argument('--cpu', action='store_true',
                        help='the same steps on the CPU (gloo), tiny sizes')
    parser.add_argument('--steps', nargs='+', choices=[n for n, _ in STEPS],
                        default=[n for n, _ in STEPS])
    parser.add_argument('--time-scale', type=float, default=1.0,
                        help='multiplies every step\'s time limit (a slow '
                        'or loaded machine)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ctx = Context(args)
    os.makedirs(ctx.out, exist_ok=True)
    summary = dict(schema=SCHEMA, mode='cpu' if ctx.cpu else 'gpu',
                   date=datetime.date.today().isoformat(), steps=[])
    for name, step in STEPS:
        if name not in args.steps:
            continue
        print(f'[{name}] ...', flush=True)
        started = time.monotonic()
        record = dict(name=name)
        try:
            record.update(ok=True, details=step(ctx))
        except (StepFailed, subprocess.TimeoutExpired, OSError,
                KeyError, ValueError) as exc:
            record.update(ok=False, error=f'{type(exc).__name__}: {exc}')
        record['seconds'] = time.monotonic() - started
        summary['steps'].append(record)
        print(f"[{name}] {'ok' if record['ok'] else 'FAILED'} in "
              f"{record['seconds']:.0f} s", flush=True)
    summary['ok'] = all(s['ok'] for s in summary['steps'])
    with open(osp.join(ctx.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    text = markdown(summary)
    with open(osp.join(ctx.out, 'summary.md'), 'w') as f:
        f.write(text)
    print(text)
    if not summary['ok']:
        raise SystemExit(1)
    return summary


if __name__ == '__main__':
    main()
