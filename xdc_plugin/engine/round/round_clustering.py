"""The clustering of a round, on the rows each rank holds.

Every rank passes its ``FeatureShard`` (disjoint across ranks); a clusterer
with ``fit_sharded`` (``DistributedKMeans``) clusters the shards where they
are, and the labels reach every rank through ``gather_labels`` (int32
index/label pairs, 8 bytes per clip: the model's pseudo-label buffer needs
every index). In a single process, a single-process clusterer
(``FaissKMeans``, ``TorchKMeans``) fits the rows in dataset-index order.

The rows are on the encoders' device, so ``use_gpu='auto'`` clusters there;
on the CPU the section uses all of the rank's cores
(``clustering.threads.rank_threads``).
"""
import dataclasses
import logging
import math
from typing import Any, Dict, Mapping, Sequence, Sized

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log

from xdc_plugin import SOURCES
from xdc_plugin.clustering.collectives import Collectives
from xdc_plugin.clustering.distributed import gather_labels, gather_values
from xdc_plugin.clustering.kmeans import BaseKMeans, ClusterResult
from xdc_plugin.clustering.threads import rank_threads
from xdc_plugin.engine.round.feature_shard import FeatureShard
from xdc_plugin.registry import CLUSTERERS


def clustering_inputs(features: Mapping[str, torch.Tensor],
                      sources: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The matrix each clustering source is computed on (row-wise, so it
    applies to a shard as to the whole dataset).

    'joint' (CDC) clusters the concatenation of both modalities; each is L2
    normalised first so that neither dominates by scale (our choice; the
    paper does not say).
    """
    inputs = {}
    for source in sources:
        if source == 'joint':
            inputs[source] = torch.cat(
                [F.normalize(features['video'], dim=1),
                 F.normalize(features['audio'], dim=1)], dim=1)
        else:
            inputs[source] = features[source]
    return inputs


class TooFewClipsError(ValueError):
    """More clusters are asked for than the dataset has clips."""


def _source_cfg(clusterer_cfgs, source, num_clusters):
    """The clusterer config of ``source`` (its own, or the one config of
    every source), ``num_clusters`` (the model's) unless it sets one."""
    cfg = clusterer_cfgs
    if isinstance(cfg, dict) and source in cfg:
        cfg = cfg[source]
    elif isinstance(cfg, dict) and set(cfg) & set(SOURCES):
        raise KeyError(f'no clusterer configured for source {source!r}')
    cfg = dict(cfg)
    cfg.setdefault('num_clusters', num_clusters)
    return cfg


def check_cluster_counts(clusterer_cfgs: Mapping[str, Any],
                         num_clusters: Mapping[str, int],
                         dataset: Sized) -> None:
    """``TooFewClipsError`` when a source (``num_clusters``: source -> the
    model's k) would cluster the clips of ``dataset`` into more clusters
    than it has clips: found before any feature is extracted."""
    skipped = len(getattr(dataset, 'skipped', ()))
    for source, default in num_clusters.items():
        k = _source_cfg(clusterer_cfgs, source, default)['num_clusters']
        if k > len(dataset):
            raise TooFewClipsError(
                f'k={k} clusters for {source!r} is more than the '
                f'{len(dataset)} clips of the dataset' +
                (f' ({skipped} more files were skipped at its build)'
                 if skipped else '') +
                ': lower model.num_clusters or give more data')


def build_clusterer(clusterer_cfgs: Mapping[str, Any], source: str,
                    num_clusters: int, world_size: int) -> BaseKMeans:
    """The clusterer of ``source`` (its own config, or the one config of
    every source; ``num_clusters`` defaults to the model's). With several
    ranks, a single-process clusterer becomes ``DistributedKMeans`` with
    the same arguments (logged): no rank may gather the dataset."""
    cfg = _source_cfg(clusterer_cfgs, source, num_clusters)
    clusterer = CLUSTERERS.build(cfg)
    if world_size > 1 and not hasattr(clusterer, 'fit_sharded'):
        print_log(f'{type(clusterer).__name__} clusters in one process; with '
                  f'{world_size} ranks the {source} clusters come from '
                  'DistributedKMeans with the same arguments (each rank '
                  'keeps its rows). Configure DistributedKMeans to silence '
                  'this.', logger='current', level=logging.WARNING)
        clusterer = CLUSTERERS.build(dict(cfg, type='DistributedKMeans'))
    return clusterer


def cluster_shard(shard: FeatureShard, sources: Sequence[str],
                  clusterer_cfgs: Mapping[str, Any],
                  num_clusters: Mapping[str, int], num_total: int,
                  collectives: Collectives,
                  with_distances: bool = True) -> Dict[str, ClusterResult]:
    """Cluster every source on the rows of all ranks; call on every rank.

    Args:
        shard: this rank's ``FeatureShard`` (no index held by two ranks).
        sources: the clustering sources of the model's variant.
        num_clusters: source -> K (the model's).
        num_total: dataset size.
        with_distances: also return each clip's distance to its centre
            (for the round file).

    Returns:
        ``{source: ClusterResult}`` identical on every rank, with ``labels``
        int32 ``(num_total,)`` (-1: held by no rank) and ``distances``
        float32 ``(num_total,)`` (NaN: held by no rank) or None.
    """
    with rank_threads():
        return _cluster_sources(shard, sources, clusterer_cfgs, num_clusters,
                                num_total, collectives, with_distances)


def _cluster_sources(shard, sources, clusterer_cfgs, num_clusters, num_total,
                     collectives, with_distances):
    world = collectives.world_size
    inputs = clustering_inputs(shard.features, sources)
    results = {}
    for source in sources:
        clusterer = build_clusterer(clusterer_cfgs, source,
                                    num_clusters[source], world)
        if hasattr(clusterer, 'fit_sharded'):
            indices = shard.indices
            result = clusterer.fit_sharded(inputs[source], indices,
                                           num_total, collectives=collectives)
        else:  # one process: the rows in dataset-index order
            order = torch.argsort(shard.indices)
            indices = shard.indices[order]
            result = clusterer.fit(inputs[source][order])
        distances = None
        if with_distances:
            distances = _gathered_distances(result.distances, indices,
                                            num_total, collectives)
        labels = gather_labels(result.labels, indices, num_total,
                               collectives).numpy()
        results[source] = dataclasses.replace(result, labels=labels,
                                              distances=distances)
    return results


def _gathered_distances(local, indices, num_total, collectives):
    """Every clip's distance to its centre, float32 (N,), NaN where no rank
    holds the clip; for the round file."""
    return gather_values(np.asarray(local, np.float32), indices, num_total,
                         math.nan, collectives).numpy()
