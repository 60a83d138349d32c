"""What ``tools/gpu_check.py`` writes: the JSON report's schema name and its
tables in markdown (train step, k-means)."""
from typing import Any, Dict, Optional

from xdc_plugin.tables import markdown_table

SCHEMA = 'xdc-gpu-check/1'


def _cell(value: Optional[float], fmt: str) -> str:
    return 'n/a' if value is None else format(value, fmt)


def format_tables(report: Dict[str, Any]) -> str:
    env = report['environment']
    shape = 'x'.join
    steps = [(r['batch_size'], shape(map(str, r['video_shape'])),
              shape(map(str, r['audio_shape'])), r['amp'],
              f"{r['step_ms']:.1f}", f"{r['clips_per_s']:.1f}",
              f"{r['extract_clips_per_s']:.1f}",
              f"{r['forward_gflops_per_clip']:.2f}", _cell(r['mfu'], '.1%'),
              _cell(r['peak_memory_gib'], '.2f'))
             for r in report['train_step']]
    kmeans = [(r['method'], r['device'],
               f"{r['num_points']:,} x {r['dim']}, k={r['num_clusters']}",
               r.get('iterations_run', r['num_iters'])) + (
                   (f"skipped: {r['skipped']}", '', '', '') if 'skipped' in r
                   else (f"{r['seconds']:.2f}", f"{r['inertia']:.6g}",
                         f"{r['label_agreement']:.4f}",
                         _cell(r['peak_memory_gib'], '.2f')))
              for r in report['kmeans']]
    errors = [f'{name} FAILED: {error}'
              for name, error in report.get('errors', {}).items()]
    return '\n\n'.join(errors + [
        f"{env['device']}, torch {env['torch']} (CUDA {env['cuda']}, driver "
        f"{env.get('driver') or 'none found'}), faiss "
        f"{env['faiss']} ({env['faiss_gpus']} GPUs), dense bf16 peak "
        f"{_cell(env['peak_bf16_tflops'], '.1f')} TFLOP/s "
        f"({env['peak_source']}), backend {report['backend']}; checks "
        'took ' + ', '.join(f'{name} {seconds:.0f} s' for name, seconds in
                            report.get('seconds', {}).items()),
        markdown_table(('batch', 'video', 'audio', 'amp', 'step ms',
                        'clips/s', 'extract clips/s', 'fwd GFLOP/clip',
                        'MFU', 'peak GiB'), steps),
        markdown_table(('k-means', 'device', 'N x d, k', 'iters',
                        'seconds', 'inertia', 'labels = Torch',
                        'peak GiB'), kmeans)])
