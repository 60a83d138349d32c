"""What a round file records of the extraction dataset: file paths and the
dataset root, labels and class names, the window each clip was cut at (as
the dataset itself says: ``cuts_fixed_clips``, ``clip_window`` and
``clip_spec`` of an ``AVClipDataset``; this module knows nothing of files
and decoding), for any contiguous range of clips (each rank writes its
own), and per-cluster label statistics."""
import json
import os.path as osp
from dataclasses import dataclass

import numpy as np


@dataclass
class ClipWindows:
    """Where each clip was cut for feature extraction: the video clip is
    ``num_frames`` frames at ``frame_rate[i]`` fps from ``start_sec[i]``;
    the audio is the ``audio_duration`` s window that
    ``xdc_plugin.data.decode.decode_clip`` centres on that clip.
    ``clip_cfg`` is the dataset's clip configuration (log-mel settings)."""
    start_sec: np.ndarray
    frame_rate: np.ndarray
    clip_cfg: dict


def _records_windows(dataset):
    """Whether ``dataset`` cuts one deterministic clip per file, whose
    window a round records."""
    return bool(getattr(dataset, 'cuts_fixed_clips', False))


def dataset_root(dataset):
    """The folder the dataset reads its files under: its ``data_root``,
    else its manifest's folder (where the manifest's relative paths start);
    None when it has neither. The cluster gallery reads clips only there."""
    root = getattr(dataset, 'data_root', None)
    ann_file = getattr(dataset, 'ann_file', None)
    if not root and ann_file:
        root = osp.dirname(osp.abspath(ann_file))
    return osp.abspath(root) if root else None


def dataset_meta(dataset):
    """What a round records of ``dataset`` as a whole: ``classes`` (None
    without class names), ``data_root`` (for a dataset of files) and, when
    the pipeline cuts one deterministic clip per file, ``clip_cfg``."""
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    meta = dict(classes=list(classes) if classes else None)
    if hasattr(dataset, 'get_data_info'):
        meta['data_root'] = dataset_root(dataset)
    if _records_windows(dataset):
        meta['clip_cfg'] = dataset.clip_spec.window_record()
    return meta


def clip_arrays(dataset, start, stop):
    """What a round records of the clips ``[start, stop)`` of ``dataset``
    (an ``AVClipDataset``; nothing for a dataset without
    ``get_data_info``), reading each clip's data info once:

    * ``paths_json``: UTF-8 JSON of the absolute file paths (1 byte per
      character where a numpy str array takes 4; any character allowed);
    * ``gt_labels``: int32 labels, -1 where unlabelled or where the data
      info has no ``label`` (evaluation only);
    * ``clip_start_sec``, ``clip_frame_rate``: the window of each clip, by
      the dataset's ``clip_window`` of the clip's info, when the dataset
      cuts one deterministic clip per file (see ``ClipWindows``).

    The same arrays for any range (empty ones for an empty range), so that
    the ranges of all ranks join.
    """
    if not hasattr(dataset, 'get_data_info'):
        return {}
    window = _records_windows(dataset)
    paths, labels, starts, rates = [], [], [], []
    for i in range(start, stop):
        info = dataset.get_data_info(i)
        paths.append(osp.abspath(info['path']))
        labels.append(info.get('label', -1))
        if window:
            start_sec, frame_rate = dataset.clip_window(info)
            starts.append(start_sec)
            rates.append(frame_rate)
    arrays = dict(
        paths_json=np.frombuffer(json.dumps(paths).encode('utf-8'),
                                 np.uint8),
        gt_labels=np.asarray(labels, np.int32))
    if window:
        arrays.update(clip_start_sec=np.asarray(starts, np.float64),
                      clip_frame_rate=np.asarray(rates, np.float64))
    return arrays


def cluster_label_stats(labels, gt_labels, num_clusters):
    """Per-cluster label counts (K, C), purity (K,) and majority (K,)."""
    keep = (labels >= 0) & (gt_labels >= 0)
    num_classes = int(gt_labels.max()) + 1
    table = np.zeros((num_clusters, num_classes), np.int64)
    np.add.at(table, (labels[keep], gt_labels[keep]), 1)
    labelled = table.sum(1)
    with np.errstate(invalid='ignore', divide='ignore'):
        purity = table.max(1) / labelled
    majority = np.where(labelled > 0, table.argmax(1), -1)
    return table, purity, majority
