"""Agreement between a clustering and ground-truth classes."""
import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _as_int_array(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f'{name} must be 1-D, got shape {x.shape}')
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not np.array_equal(x, np.round(x)):
            raise ValueError(f'{name} must hold integer labels')
    return x.astype(np.int64)


def cluster_quality(pred, target):
    """NMI, ARI and purity of cluster ids ``pred`` against classes
    ``target`` (1-D, same length; numpy arrays, tensors or lists).

    Entries whose target is -1 (unlabelled) are ignored. Purity is the sum
    over predicted clusters of their majority-class count, divided by the
    number of entries kept. NMI uses sklearn's default (arithmetic) mean.

    Returns:
        dict(nmi=float, ari=float, purity=float)
    """
    pred = _as_int_array(pred, 'pred')
    target = _as_int_array(target, 'target')
    if len(pred) != len(target):
        raise ValueError(f'pred and target differ in length: {len(pred)} vs '
                         f'{len(target)}')
    keep = target != -1
    pred, target = pred[keep], target[keep]
    if len(pred) == 0:
        raise ValueError('no labelled entries (every target is -1)')
    _, pred_idx = np.unique(pred, return_inverse=True)
    _, target_idx = np.unique(target, return_inverse=True)
    table = np.zeros((pred_idx.max() + 1, target_idx.max() + 1), np.int64)
    np.add.at(table, (pred_idx, target_idx), 1)
    purity = table.max(axis=1).sum() / len(pred)
    return dict(
        nmi=float(normalized_mutual_info_score(target, pred)),
        ari=float(adjusted_rand_score(target, pred)),
        purity=float(purity))
