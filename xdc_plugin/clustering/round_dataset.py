"""What a round file records of the extraction dataset: file paths and the
dataset root, labels and class names, the window each clip was cut at (read
from the dataset's own pipeline), and per-cluster label statistics."""
import json
import os.path as osp
from dataclasses import dataclass

import numpy as np

from xdc_plugin.data.transforms import AudioLogMel, DecodeAVClip, SampleClip


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


def _transform(dataset, kind):
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', ())
    return next((t for t in transforms if isinstance(t, kind)), None)


def clip_windows(dataset):
    """The extraction window of every clip, by running the dataset's own
    ``SampleClip`` on each sample's info; None when the pipeline has no
    single deterministic clip (random or several clips per file)."""
    sampler = _transform(dataset, SampleClip)
    decoder = _transform(dataset, DecodeAVClip)
    logmel = _transform(dataset, AudioLogMel)
    if (sampler is None or decoder is None or sampler.mode == 'random'
            or sampler.num_clips != 1):
        return None
    cut = [sampler.transform(dict(dataset.get_data_info(i)))
           for i in range(len(dataset))]
    clip_cfg = dict(num_frames=sampler.num_frames,
                    audio_duration=decoder.audio_duration,
                    sample_rate=decoder.sample_rate)
    if logmel is not None:
        clip_cfg.update(n_mels=logmel.n_mels, hop_ms=logmel.hop_ms,
                        win_ms=logmel.win_ms)
    return ClipWindows(
        start_sec=np.array([c['clip_starts'][0] for c in cut], np.float64),
        frame_rate=np.array([c['frame_rate'] for c in cut], np.float64),
        clip_cfg=clip_cfg)


def dataset_root(dataset):
    """The folder the dataset reads its files under: its ``data_root``,
    else its manifest's folder (where the manifest's relative paths start);
    None when it has neither. The cluster gallery reads clips only there."""
    root = getattr(dataset, 'data_root', None)
    ann_file = getattr(dataset, 'ann_file', None)
    if not root and ann_file:
        root = osp.dirname(osp.abspath(ann_file))
    return osp.abspath(root) if root else None


def dataset_arrays(dataset):
    """Arrays and meta entries describing ``dataset`` (an ``AVClipDataset``;
    any entry may be absent for a dataset that lacks paths, labels or
    windows)."""
    arrays, meta = {}, {}
    if hasattr(dataset, 'get_data_info'):
        # UTF-8 JSON bytes: 1 byte per character (a numpy str array takes
        # 4), any character allowed.
        paths = [osp.abspath(dataset.get_data_info(i)['path'])
                 for i in range(len(dataset))]
        arrays['paths_json'] = np.frombuffer(
            json.dumps(paths).encode('utf-8'), np.uint8)
        meta['data_root'] = dataset_root(dataset)
    if hasattr(dataset, 'get_labels'):
        arrays['gt_labels'] = np.asarray(dataset.get_labels(), np.int64)
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    meta['classes'] = list(classes) if classes else None
    windows = clip_windows(dataset)
    if windows is not None:
        arrays['clip_start_sec'] = windows.start_sec
        arrays['clip_frame_rate'] = windows.frame_rate
        meta['clip_cfg'] = windows.clip_cfg
    return arrays, meta


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
