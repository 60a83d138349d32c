"""What a gallery page shows of a round: which clusters, in which order, and
which clips of each (the nearest to the centre)."""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

ORDERINGS = {
    'purity': 'by purity against the dataset labels, highest first '
              '(ties: larger cluster first)',
    'tightness': 'by tightness: mean distance of its clips to the centre, '
                 'smallest first (the dataset has no labels)',
}
HISTOGRAM_BARS = 6  # classes shown per cluster; the rest are summed


@dataclass
class ClipPick:
    index: int        # dataset index
    path: str
    distance: float   # to the cluster centre
    label: str        # class name, or 'unlabelled'
    media_key: Optional[str] = None  # set once its media job is known


@dataclass
class ClusterCard:
    cluster_id: int
    size: int
    tightness: float
    clips: List[ClipPick]
    purity: Optional[float] = None
    majority: Optional[str] = None
    histogram: Optional[list] = None  # [(class name, count, fraction)]


def class_name(round_, label):
    if label < 0:
        return 'unlabelled'
    if round_.classes and label < len(round_.classes):
        return str(round_.classes[label])
    return str(label)


def _histogram(round_, counts):
    order = np.argsort(-counts, kind='stable')
    order = order[counts[order] > 0]
    total = counts.sum()
    bars = [(class_name(round_, int(c)), int(counts[c]), counts[c] / total)
            for c in order[:HISTOGRAM_BARS]]
    rest = int(counts[order[HISTOGRAM_BARS:]].sum())
    if rest:
        bars.append(('other classes', rest, rest / total))
    return bars


def cluster_order(round_, source):
    """``(ordering, cluster ids)``: non-empty clusters by purity when the
    round has labels, else by tightness (see ``ORDERINGS``)."""
    clusters = round_.sources[source]
    tightness = clusters.tightness()
    ids = [k for k in range(clusters.num_clusters) if clusters.counts[k]]
    if round_.has_labels:
        purity = np.nan_to_num(clusters.purity, nan=-1.0)
        ids.sort(key=lambda k: (-purity[k], -clusters.counts[k], k))
        return 'purity', ids
    ids.sort(key=lambda k: (tightness[k], k))
    return 'tightness', ids


def cluster_cards(round_, source, top_clusters, clips_per_cluster):
    """``(ordering, [ClusterCard])`` of the first ``top_clusters`` clusters
    in order, each with its ``clips_per_cluster`` clips nearest the centre.
    """
    clusters = round_.sources[source]
    ordering, ids = cluster_order(round_, source)
    tightness = clusters.tightness()
    gt = round_.gt_labels
    cards = []
    for k in ids[:top_clusters]:
        members = np.flatnonzero(clusters.labels == k)
        nearest = members[np.argsort(clusters.distances[members],
                                     kind='stable')][:clips_per_cluster]
        card = ClusterCard(
            cluster_id=k, size=int(clusters.counts[k]),
            tightness=float(tightness[k]),
            clips=[ClipPick(int(i), round_.paths[i],
                            float(clusters.distances[i]),
                            class_name(round_, int(gt[i]))
                            if gt is not None else 'unlabelled')
                   for i in nearest])
        if ordering == 'purity':
            card.purity = float(np.nan_to_num(clusters.purity[k]))
            card.majority = class_name(round_, int(clusters.majority[k]))
            card.histogram = _histogram(round_, clusters.label_counts[k])
        cards.append(card)
    return ordering, cards
