"""Result records of the evaluation tools: one dict per (protocol,
modality, metric), tables of them and their JSON file.

A record has at least ``protocol``, ``modality``, ``metric``, ``accuracy``
(the metric's mean over splits, 0-1: top-1 accuracy, or recall for
``recall@k``), ``std`` (standard deviation over splits, ``np.std``: 0 for a
single split), ``folds`` (the score of every split) and ``num_samples``
(labelled rows evaluated), plus ``encoder`` and whatever the caller adds
(``num_unlabelled``, ``num_skipped``, ``benchmark``, ``C`` ...).
"""
import json
from typing import Callable, Iterable, List, Sequence, Tuple

import numpy as np
from mmengine import fileio

from xdc_plugin.tables import markdown_table


def make_record(protocol: str, modality: str, metric: str,
                per_split: Sequence[float], **extra) -> dict:
    scores = [float(s) for s in per_split]
    return dict(protocol=protocol, modality=modality, metric=metric,
                accuracy=float(np.mean(scores)), std=float(np.std(scores)),
                folds=scores, **extra)


def format_table(records: Iterable[dict]) -> str:
    """One row per record: protocol, modality, metric, mean +- std (in
    %), number of splits and of samples."""
    return markdown_table(
        ('protocol', 'modality', 'metric', 'mean +- std (%)', 'splits',
         'samples'),
        [(r['protocol'], r['modality'], r['metric'],
          f"{100 * r['accuracy']:.1f} +- {100 * r['std']:.1f}",
          len(r['folds']), r['num_samples']) for r in records])


def format_markdown(records: Iterable[dict], row_key: str,
                    columns: Sequence[Tuple[str, str, str]],
                    extra: Sequence[Tuple[str, Callable[[str], str]]] = ()
                    ) -> str:
    """A markdown table: one row per value of ``row_key`` (in first-seen
    order), one column per ``(protocol, modality, metric)`` holding
    ``mean +- std`` in %, then the ``extra`` columns ``(title, row value ->
    text)``."""
    cells, rows = {}, []
    for r in records:
        if r[row_key] not in rows:
            rows.append(r[row_key])
        cells[(r[row_key], r['protocol'], r['modality'], r['metric'])] = (
            f"{100 * r['accuracy']:.1f} ± {100 * r['std']:.1f}")
    header = [row_key] + [f'{p} {m} {metric}' for p, m, metric in columns]
    header += [title for title, _ in extra]
    return markdown_table(header, [
        [str(row)] + [cells.get((row,) + c, '-') for c in columns] +
        [text(row) for _, text in extra] for row in rows])


def write_json(records: List[dict], path: str) -> None:
    """The records as a JSON list (written atomically through mmengine's
    file backends)."""
    fileio.put_text(json.dumps(records, indent=2) + '\n', path)
