"""What a clustering round reports: quality records (one per clustering
source), the log lines, the scalars and the round file."""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from mmengine import dist
from mmengine.dataset import BaseDataset
from mmengine.runner import Runner

from xdc_plugin.atomic_backend import atomic_backend_args
from xdc_plugin.clustering import ClusterResult, cluster_quality
from xdc_plugin.clustering.collectives import Collectives
from xdc_plugin.clustering.round_file import round_path, save_round
from xdc_plugin.tables import markdown_table

QUALITY = ('nmi', 'ari', 'purity')
PROBES = ('linear_top1', 'knn_top1')


def round_records(round_id: Union[int, str], epoch: int,
                  results: Mapping[str, ClusterResult],
                  ground_truth: Optional[np.ndarray],
                  probe: Optional[Mapping[str, float]] = None,
                  **extra) -> List[Dict[str, Any]]:
    """One history record per source of ``results``: cluster sizes,
    inertia, re-splits, the video/audio agreement (``xmodal_nmi``), NMI,
    ARI and purity against ``ground_truth`` when it has labels, the probe
    scalars of the source's modality (``<source>_linear_top1``, ...) and
    ``extra`` (e.g. the round's ``features`` and ``seconds``)."""
    agreement = {}
    if {'video', 'audio'} <= set(results):
        # How much the two modalities' clusters agree: what XDC drives up,
        # and a progress signal on data without any labels.
        agreement['xmodal_nmi'] = cluster_quality(
            results['video'].labels, results['audio'].labels)['nmi']
    labelled = ground_truth is not None and (ground_truth >= 0).any()
    records = []
    for source, result in results.items():
        record = dict(round=round_id, epoch=epoch, source=source,
                      inertia=result.inertia, num_resplit=result.num_resplit,
                      smallest=int(result.counts.min()),
                      largest=int(result.counts.max()), **agreement, **extra)
        record.update({k: v for k, v in (probe or {}).items()
                       if k.startswith(f'{source}_')})
        if labelled:
            record.update(cluster_quality(result.labels, ground_truth))
        records.append(record)
    return records


def round_scalars(records: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """``{'xdc/<source>_<metric>': value}`` of one round's records."""
    scalars = {}
    for record in records:
        source = record['source']
        for metric in QUALITY:
            if metric in record:
                scalars[f'xdc/{source}_{metric}'] = record[metric]
        for probe in PROBES:
            if f'{source}_{probe}' in record:
                scalars[f'xdc/{source}_{probe}'] = record[f'{source}_{probe}']
        if 'xmodal_nmi' in record:
            scalars['xdc/xmodal_nmi'] = record['xmodal_nmi']
    return scalars


def publish_round(runner: Runner, records: Sequence[Mapping[str, Any]],
                  results: Mapping[str, ClusterResult], dataset: BaseDataset,
                  variant: str, save_assignments: bool,
                  collectives: Collectives) -> None:
    """The round's scalars to the message hub (every rank; the next log
    line shows them) and, on the main process, to the visualizer's backends
    (TensorBoard when configured; at the current iteration, to line up with
    the losses); the round file to the work dir (every rank writes its part
    of the clips, see ``round_file.save_round``)."""
    scalars = round_scalars(records)
    for key, value in scalars.items():
        runner.message_hub.update_scalar(key, value)
    if scalars and dist.is_main_process():
        runner.visualizer.add_scalars(scalars, step=runner.iter)
    if save_assignments:
        first = records[0]
        save_round(round_path(runner.work_dir, first['round']),
                   first['round'], first['epoch'], results, dataset,
                   variant=variant, config=runner.cfg.filename,
                   metrics={r['source']: {m: r[m] for m in QUALITY if m in r}
                            for r in records},
                   agreement={k: first[k] for k in ('xmodal_nmi', )
                              if k in first},
                   backend_args=atomic_backend_args(runner.work_dir),
                   collectives=collectives)


def format_round(records: Sequence[Mapping[str, Any]]) -> str:
    """One log line for one round's records."""
    parts, agreement = [], None
    for record in records:
        text = f"{record['source']} clusters"
        if 'nmi' in record:
            text += (f" NMI={record['nmi']:.3f} ARI={record['ari']:.3f}"
                     f" purity={record['purity']:.3f}")
        for probe in PROBES:
            value = record.get(f"{record['source']}_{probe}")
            if value is not None:
                text += f' {probe}={value:.3f}'
        text += (f" sizes {record['smallest']}-{record['largest']}"
                 f" resplit={record['num_resplit']}")
        parts.append(text)
        if 'xmodal_nmi' in record:
            agreement = f"video-audio agreement NMI={record['xmodal_nmi']:.3f}"
    if agreement:
        parts.append(agreement)
    first = records[0]
    head = f"XDC round {first['round']} (epoch {first['epoch']}"
    if 'features' in first:
        head += f", {first['features']} features, {first['seconds']:.1f} s"
    return head + '): ' + ' | '.join(parts)


def format_history(history: Sequence[Mapping[str, Any]]) -> str:
    """A table of every round's quality, one line per (round, source)."""
    metrics = [m for m in QUALITY + ('xmodal_nmi', )
               if any(m in r for r in history)]
    probes = [p for p in PROBES
              if any(f"{r['source']}_{p}" in r for r in history)]
    header = ['round', 'epoch', 'source'] + metrics + probes + ['resplit']
    rows = []
    for r in history:
        row = [r['round'], r['epoch'], r['source']]
        row += [f'{r[m]:.3f}' if m in r else '-' for m in metrics]
        keys = [f"{r['source']}_{p}" for p in probes]
        row += [f'{r[k]:.3f}' if k in r else '-' for k in keys]
        row.append(r['num_resplit'])
        rows.append(row)
    return markdown_table(header, rows)
