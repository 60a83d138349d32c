"""Check a GPU machine for XDC at paper scale, print tables, write JSON.

Three checks on one rank (world size 1; ``torch.distributed`` from the
environment when a launcher set it, else a local store on a free port):

1. the XDC training step of the recipe's model (``--cfg``) wrapped in
   mmengine's ``MMDistributedDataParallel`` over NCCL, with the optimizer
   wrapper ``tools/run_net.py --amp`` builds (``engine.runner.precision``: bf16
   autocast, no loss scaler; ``--amp fp16`` or ``none`` otherwise), at the
   paper's input sizes (8x112x112 clips; 40x100 log-mel as in the paper,
   40x201 as our 10 ms-hop pipeline gives): throughput after warm-up, MFU,
   peak memory, and the eval-mode forward that extracts the clustering
   features (``feature_extraction.extract_batch``, the clustering hook's
   own, under the same autocast). The batch is made once on the GPU, so
   this measures the model, not data loading
   (``bench/bench_data_pipeline.py`` does that);
2. k-means of ``--kmeans-points`` x ``--kmeans-dim`` into ``--kmeans-clusters``
   (1M x 512, k=8192): ``TorchKMeans`` on the GPU and ``FaissKMeans`` when
   the installed faiss sees a GPU (on this rank's device), every method
   from the same initial centroids for ``--kmeans-iters`` iterations (on
   the CPU with the rank's cores, as a round runs it);
3. ``DistributedKMeans`` on the same rows through the process group, so its
   CUDA tensors go through NCCL and its CPU ones through the gloo group.

MFU: ``xdc_plugin.models.flops`` (forward FLOPs x 3 over the GPU's dense
bf16 peak, known by device name or given as ``--peak-tflops``).

A check that fails is recorded in the report's ``errors`` (with the
traceback printed) and the others still run; the JSON is rewritten after
each check, and the exit status is 1 when any check failed. On an H200 the
default run takes a few minutes.

    python tools/gpu_check.py --out gpu_check.json  # everything, paper sizes
    python tools/gpu_check.py --batch-size 64 --out work_dirs/gpu.json
    python tools/gpu_check.py --cpu --tiny          # smoke run, no GPU
"""
import argparse
import contextlib
import json
import os
import time
import traceback

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import xdc_plugin  # noqa: F401  (registers the modules)
from xdc_plugin.clustering import (DistributedKMeans, FaissKMeans,
                                   TorchKMeans)
from xdc_plugin.clustering.collectives import ProcessGroupCollectives
from xdc_plugin.clustering.threads import rank_threads
from xdc_plugin.engine.launch.gpu_report import SCHEMA, format_tables
from xdc_plugin.engine.round.feature_extraction import extract_batch
from xdc_plugin.engine.runner.config import (CONFIG_ERRORS, load_config,
                                             shipped_config)
from xdc_plugin.engine.runner.device import cuda_versions, driver_version
from xdc_plugin.engine.runner.precision import (AMP_CHOICES, autocast_dtype,
                                                check_amp,
                                                optim_wrapper_config)
from xdc_plugin.models.flops import (forward_flops, model_flops_utilisation,
                                     peak_bf16_tflops)
from xdc_plugin.registry import MODELS

DEFAULT_CONFIG = shipped_config('xdc_kinetics.yaml')
GIB = 2**30
# --tiny: the same code path at sizes a CPU runs in seconds.
TINY = dict(batch_size=2, frames=2, crop=32, audio_frames=[20, 24],
            warmup=1, iters=2, kmeans_points=600, kmeans_dim=8,
            kmeans_clusters=6, kmeans_iters=4)
TINY_OVERRIDES = ['model.video_encoder.width=0.125',
                  'model.audio_encoder.width=0.125']


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cfg', default=DEFAULT_CONFIG,
                        help='config whose `model` and `optim_wrapper` run')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--frames', type=int, default=8)
    parser.add_argument('--crop', type=int, default=112)
    parser.add_argument('--mels', type=int, default=40)
    parser.add_argument('--audio-frames', type=int, nargs='+',
                        default=[100, 201], help='one step row per value')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--peak-tflops', type=float,
                        help="the GPU's dense bf16 peak (default: by name)")
    parser.add_argument('--kmeans-points', type=int, default=1_000_000)
    parser.add_argument('--kmeans-dim', type=int, default=512)
    parser.add_argument('--kmeans-clusters', type=int, default=8192)
    parser.add_argument('--kmeans-iters', type=int, default=10)
    parser.add_argument('--out', default='gpu_check.json')
    parser.add_argument('--amp', choices=AMP_CHOICES + ('none', ),
                        help="tools/run_net.py's --amp to time (default: bf16 "
                        'on the GPU, none with --cpu)')
    parser.add_argument('--cpu', action='store_true',
                        help='smoke run on the CPU (gloo); with --tiny, the '
                        'numbers mean nothing')
    parser.add_argument('--tiny', action='store_true',
                        help='tiny sizes and width-0.125 encoders (they '
                        'replace the size options and come before the '
                        'overrides)')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                        help='config overrides, e.g. '
                        'model.video_encoder.width=0.25')
    return parser


@contextlib.contextmanager
def single_rank_group(backend):
    """The default process group: the launcher's (``RANK`` etc. set) or one
    of world size 1 over a local store on a port the OS picks. It must
    have one rank; a group made here is destroyed on exit."""
    made = not torch_dist.is_initialized()
    if made and 'MASTER_ADDR' in os.environ:
        torch_dist.init_process_group(backend)
    elif made:
        store = torch_dist.TCPStore('127.0.0.1', 0, 1, is_master=True)
        torch_dist.init_process_group(backend, store=store, rank=0,
                                      world_size=1)
    try:
        world = torch_dist.get_world_size()
        if world != 1:
            raise SystemExit('gpu_check measures one rank: run it with '
                             f'world size 1, not {world}')
        yield
    finally:
        if made:
            torch_dist.destroy_process_group()


def seconds_per_call(fn, device, warmup, iters):
    """Mean wall time of ``fn()`` after ``warmup`` calls (the device
    synchronised around the timed calls)."""
    sync = (torch.cuda.synchronize if device.type == 'cuda' else
            (lambda: None))
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def _reset_peak(device):
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device):
    if device.type != 'cuda':
        return None
    return torch.cuda.max_memory_allocated(device) / GIB


def check_train_step(cfg, args, device, amp, tflops=None):
    """One row per ``--audio-frames``: step time, clips/s, MFU, memory."""
    model = MODELS.build(cfg.model)
    b = args.batch_size
    video_shape = (3, args.frames, args.crop, args.crop)
    model.set_pseudo_labels({s: torch.randint(k, (b, )) for s, k in
                             model.num_clusters.items()})
    flops = {f: forward_flops(model, video_shape, (1, args.mels, f))['total']
             for f in args.audio_frames}
    model.to(device)
    ddp = MMDistributedDataParallel(
        module=model, device_ids=[device.index] if device.type == 'cuda'
        else None)
    optim_wrapper = build_optim_wrapper(
        ddp, optim_wrapper_config(cfg.optim_wrapper, amp))
    amp_dtype = autocast_dtype(optim_wrapper)
    rows = []
    for frames in args.audio_frames:
        batch = dict(
            video=torch.randint(0, 256, (b, *video_shape), dtype=torch.uint8,
                                device=device),
            audio=torch.randn(b, 1, args.mels, frames, device=device),
            index=torch.arange(b, device=device))
        _reset_peak(device)
        ddp.train()
        step = seconds_per_call(lambda: ddp.train_step(batch, optim_wrapper),
                                device, args.warmup, args.iters)
        peak = _peak_gib(device)
        ddp.eval()

        def extract():  # the clustering hook's pass: eval mode, no grad
            with torch.no_grad():
                extract_batch(model, batch, amp_dtype)

        extract_time = seconds_per_call(extract, device, args.warmup,
                                        args.iters)
        rows.append(dict(
            batch_size=b, video_shape=list(video_shape),
            audio_shape=[1, args.mels, frames],
            amp=None if amp_dtype is None else str(amp_dtype)[len('torch.'):],
            step_ms=1e3 * step, clips_per_s=b / step,
            extract_clips_per_s=b / extract_time,
            forward_gflops_per_clip=flops[frames] / 1e9,
            mfu=model_flops_utilisation(flops[frames], b / step, tflops),
            peak_memory_gib=peak))
    return rows


def mixture(num_points, dim, num_centres, device, seed=0):
    """L2-normalised Gaussian mixture rows (as features after the default
    preprocessing), made on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(num_centres, dim, generator=gen, device=device)
    labels = torch.randint(num_centres, (num_points, ), generator=gen,
                           device=device)
    x = centres[labels].add_(torch.randn(num_points, dim, generator=gen,
                                         device=device), alpha=0.5)
    return torch.nn.functional.normalize(x, dim=1)


def _faiss_gpus():
    import faiss
    return faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0


def check_kmeans(args, device):
    """TorchKMeans, FaissKMeans and DistributedKMeans from one start, with
    the CPU threads a round gives them."""
    with rank_threads():
        return _kmeans_rows(args, device)


def _kmeans_rows(args, device):
    n, d, k = args.kmeans_points, args.kmeans_dim, args.kmeans_clusters
    x = mixture(n, d, k, device)
    start = x[torch.randperm(n, generator=torch.Generator().manual_seed(0))[
        :k].to(device)].clone()
    on_gpu = device.type == 'cuda'
    common = dict(num_clusters=k, num_iters=args.kmeans_iters,
                  preprocess=None, use_gpu=on_gpu)
    fits = {
        TorchKMeans: lambda km: km.fit(x, init_centroids=start),
        FaissKMeans: lambda km: km.fit(x.cpu(), init_centroids=start.cpu()),
        DistributedKMeans: lambda km: km.fit_sharded(
            x, torch.arange(n), n, init_centroids=start,
            collectives=ProcessGroupCollectives())}
    rows, reference = [], None
    for cls, fit in fits.items():
        method, clusterer = cls.__name__, cls(**common)
        row = dict(method=method, device=str(device), num_points=n, dim=d,
                   num_clusters=k, num_iters=args.kmeans_iters)
        if method == 'FaissKMeans' and on_gpu and _faiss_gpus() == 0:
            rows.append(dict(row, skipped='the installed faiss sees no GPU '
                             '(a faiss-cpu build)'))
            continue
        _reset_peak(device)
        outcome = []
        seconds = seconds_per_call(lambda: outcome.append(fit(clusterer)),
                                   device, warmup=0, iters=1)
        labels = torch.from_numpy(outcome[0].labels)
        reference = labels if reference is None else reference
        rows.append(dict(
            row, seconds=seconds, inertia=outcome[0].inertia,
            iterations_run=clusterer.iterations_run_,
            peak_memory_gib=_peak_gib(device),
            label_agreement=float((labels == reference).double().mean())))
    return rows


def _device_name(device):
    return (torch.cuda.get_device_name(device) if device.type == 'cuda'
            else 'cpu')


def environment(device, given_tflops):
    import faiss
    name = _device_name(device)
    tflops = given_tflops or peak_bf16_tflops(name)
    source = ('--peak-tflops' if given_tflops else 'datasheet table' if
              tflops else 'unknown GPU: pass --peak-tflops')
    return dict(device=name, torch=torch.__version__,
                cuda=torch.version.cuda, driver=driver_version(),
                faiss=faiss.__version__,
                faiss_gpus=_faiss_gpus(), peak_bf16_tflops=tflops,
                peak_source=source)


def tiny_overrides(config):
    """``TINY_OVERRIDES`` of the encoders that have a width (a host
    backbone runs at the size its config sets)."""
    model = load_config(config).model
    return [o for o in TINY_OVERRIDES if 'width' in model[o.split('.')[1]]]


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    if args.amp is None:
        args.amp = 'none' if args.cpu else 'bf16'
    if args.tiny:
        vars(args).update(TINY)
        args.overrides = tiny_overrides(args.cfg) + args.overrides
    return args


def run_checks(checks, report, out):
    """Run each ``(name, check)``; its rows, or its error, go into
    ``report`` and the JSON is rewritten after each."""
    report.update(errors={}, seconds={})
    for name, check in checks:
        start = time.perf_counter()
        try:
            report[name] = check()
        except Exception as exc:  # noqa: BLE001 (kept: the others still run)
            traceback.print_exc()
            report[name] = []
            report['errors'][name] = f'{type(exc).__name__}: {exc}'
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        report['seconds'][name] = time.perf_counter() - start
        with open(out, 'w') as f:
            json.dump(report, f, indent=2)


def main(argv=None):
    args = parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit(
            f'gpu_check: no CUDA device is visible ({cuda_versions()}). '
            'Run it on a machine with a GPU, or pass --cpu for a smoke run '
            'at tiny sizes.')
    try:
        cfg = load_config(args.cfg, args.overrides)
    except CONFIG_ERRORS as exc:
        raise SystemExit(f'gpu_check: {exc}') from exc
    init_default_scope(cfg.get('default_scope', 'xdc'))
    amp = None if args.amp == 'none' else args.amp
    if args.cpu:
        device, backend = torch.device('cpu'), 'gloo'
    else:
        device = torch.device('cuda', torch.cuda.current_device())
        backend = 'nccl'
        torch.backends.cudnn.benchmark = True
    try:
        check_amp(amp, device.type)
    except ValueError as exc:
        raise SystemExit(f'gpu_check: {exc}') from exc
    with single_rank_group(backend):
        env = environment(device, args.peak_tflops)
        report = dict(schema=SCHEMA, environment=env, backend=backend,
                      arguments=vars(args))
        run_checks([
            ('train_step', lambda: check_train_step(
                cfg, args, device, amp, tflops=env['peak_bf16_tflops'])),
            ('kmeans', lambda: check_kmeans(args, device))], report,
            args.out)
    print(format_tables(report))
    print(f'\nwrote {args.out}')
    if report['errors']:
        raise SystemExit(f"gpu_check: failed checks: {report['errors']}")
    return report


if __name__ == '__main__':
    main()
