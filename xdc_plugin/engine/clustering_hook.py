"""The cross-modal clustering hook: features -> k-means -> pseudo-labels.

One job: at the start of every ``interval``-th training epoch it extracts a
feature per clip from each encoder (eval mode, the extraction pipeline of
its ``extract_dataloader`` config: fixed centre clips), clusters
the modalities the model's variant needs, stores the cluster ids in the
model's pseudo-label buffer (keyed by dataset index) and re-initialises the
heads. After training it clusters once more to report the final quality.
"""
import functools
import logging

import numpy as np
import torch
import torch.nn.functional as F
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from xdc_plugin.clustering import cluster_quality
from xdc_plugin.clustering.round_file import round_path, save_round
from xdc_plugin.compat import atomic_backend_args
from xdc_plugin.engine.extract_loader import build_extract_loader
from xdc_plugin.registry import CLUSTERERS, HOOKS


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


@torch.no_grad()
def extract_features(model, loader):
    """Features of every clip of ``loader.dataset``, gathered on rank 0.

    ``loader`` gives each rank its own shard (``DefaultSampler`` with
    ``shuffle=False, round_up=False``: no padding, so no duplicates); rank 0
    receives the shards and places them by dataset index. Returns
    ``(features, seen)`` on rank 0 and ``(None, None)`` elsewhere:
    ``features`` is a dict ``modality -> (N, D)`` float32 CPU tensor and
    ``seen`` a bool mask of the indices that were extracted (a clip that
    failed to decode is replaced by a neighbour, so its own index can be
    missing).
    """
    model = unwrap(model)
    dataset = loader.dataset
    # Every rank extracts with rank 0's running statistics (BN): each
    # rank's own differ, and only rank 0's are checkpointed, so a resumed
    # run would otherwise extract other features on the other ranks.
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.broadcast(buffer, src=0)
    was_training = model.training
    model.eval()
    indices = [torch.empty(0, dtype=torch.long)]
    chunks = {m: [torch.empty(0, d)] for m, d in model.feat_dims.items()}
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        feats = model.extract_feat(data['video'], data['audio'])
        indices.append(data['index'].long().cpu())
        for modality, feat in feats.items():
            chunks[modality].append(feat.float().cpu())
    model.train(was_training)

    indices = _gather_rows(torch.cat(indices)[:, None])
    rows = {m: _gather_rows(torch.cat(parts)) for m, parts in chunks.items()}
    if not dist.is_main_process():
        return None, None
    indices = indices[:, 0]
    seen = torch.zeros(len(dataset), dtype=torch.bool)
    seen[indices] = True
    features = {}
    for modality, values in rows.items():
        full = torch.zeros(len(dataset), values.shape[1])
        full[indices] = values  # a duplicated index holds identical rows
        features[modality] = full
    return features, seen


@functools.lru_cache(maxsize=None)
def _cpu_group():
    """A gloo group for CPU tensors: features stay off the GPUs even when
    training uses NCCL (None: the default group is already gloo)."""
    if torch.distributed.get_backend() == 'gloo':
        return None
    return torch.distributed.new_group(backend='gloo')


def _gather_rows(rows):
    """Gather on rank 0 the 2-D CPU tensors of every rank (their first
    dimensions may differ); other ranks get None. Only rank 0 ever holds
    the whole dataset's features."""
    if dist.get_world_size() == 1:
        return rows
    group = _cpu_group()
    size = torch.tensor([rows.shape[0]])
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    torch.distributed.all_gather(sizes, size, group=group)
    sizes = [int(s) for s in sizes]
    padded = rows.new_zeros((max(sizes), ) + rows.shape[1:])
    padded[:rows.shape[0]] = rows
    main = dist.is_main_process()
    gathered = [torch.empty_like(padded) for _ in sizes] if main else None
    torch.distributed.gather(padded, gathered, dst=0, group=group)
    if not main:
        return None
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)])


def clustering_inputs(features, sources):
    """The matrix each clustering source is computed on.

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


@HOOKS.register_module()
class CrossModalClusteringHook(Hook):
    """Re-cluster every ``interval`` epochs and refresh the pseudo-labels.

    Args:
        clusterers: clusterer config per clustering source ('video',
            'audio', 'joint'); a single config is used for every source the
            model's variant needs. ``num_clusters`` defaults to the model's.
        extract_dataloader: the feature-extraction loader config (as
            mmselfsup's DeepCluster hook takes): ``batch_size``,
            ``num_workers``, ... and ``dataset``, whose keys (at least
            ``pipeline``: centred clips, centre crop, no flip) replace those
            of the train dataset's config (see ``build_extract_loader``).
        interval: training epochs per clustering round.
        balance_by: the source whose clusters the train sampler balances
            (needs a sampler with ``set_pseudo_labels``), or None.
        save_assignments: write ``clusters/round_<r>.npz`` to the work dir
            (``xdc_plugin.clustering.round_file``; the cluster gallery's
            input).
        evaluate_after_train: cluster once more after the last epoch, to
            report the quality of the trained encoders.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, clusterers, extract_dataloader, interval=1,
                 balance_by=None, save_assignments=True,
                 evaluate_after_train=True):
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        if 'pipeline' not in extract_dataloader.get('dataset', {}):
            raise ValueError('extract_dataloader.dataset.pipeline is '
                             'required: the feature-extraction pipeline')
        self.clusterer_cfgs = clusterers
        self.extract_dataloader = extract_dataloader
        self.interval = interval
        self.balance_by = balance_by
        self.save_assignments = save_assignments
        self.evaluate_after_train = evaluate_after_train
        self.history = []
        self.centroids = {}
        self._extract_loader = None

    # -- setup -------------------------------------------------------------
    def before_train(self, runner):
        self._extract_loader = build_extract_loader(runner,
                                                    self.extract_dataloader)
        model = unwrap(runner.model)
        if self.balance_by and self.balance_by not in model.cluster_sources:
            raise ValueError(f'balance_by={self.balance_by!r} is not among '
                             f'the sources {model.cluster_sources}')

    def _clusterer(self, source, model):
        cfg = self.clusterer_cfgs
        if isinstance(cfg, dict) and source in cfg:
            cfg = cfg[source]
        elif isinstance(cfg, dict) and set(cfg) & {'video', 'audio', 'joint'}:
            raise KeyError(f'no clusterer configured for source {source!r}')
        cfg = dict(cfg)
        cfg.setdefault('num_clusters', model.num_clusters[source])
        return CLUSTERERS.build(cfg)

    # -- schedule ----------------------------------------------------------
    def before_train_epoch(self, runner):
        model = unwrap(runner.model)
        round_start = runner.epoch % self.interval == 0
        has_labels = model.num_labelled_samples == len(
            self._extract_loader.dataset)
        # Resumed in the middle of an epoch whose round already ran.
        round_done = any(r['round'] == runner.epoch // self.interval
                         and r['epoch'] == runner.epoch for r in self.history)
        if (not round_start or round_done) and has_labels:
            self._update_sampler(runner)
            return
        if not round_start:
            runner.logger.warning(
                'No pseudo-labels for this dataset (resumed from a checkpoint '
                'without them?); clustering now.')
        self.run_round(runner, apply=True)

    def after_train(self, runner):
        if self.evaluate_after_train:
            self.run_round(runner, apply=False)
        if self.history and dist.is_main_process():
            runner.logger.info('XDC cluster quality per round:\n' +
                               self.format_history())

    # -- one round ---------------------------------------------------------
    def run_round(self, runner, apply):
        model = unwrap(runner.model)
        round_id = runner.epoch // self.interval if apply else 'final'
        results = self.cluster(model, self._extract_loader)
        ground_truth = self._extract_loader.dataset.get_labels()
        agreement = {}
        if {'video', 'audio'} <= set(results):
            # How much the two modalities' clusters agree: what XDC drives
            # up, and a progress signal on data without any labels.
            agreement['xmodal_nmi'] = cluster_quality(
                results['video'].labels, results['audio'].labels)['nmi']
        for source, result in results.items():
            record = dict(round=round_id, epoch=runner.epoch, source=source,
                          inertia=result.inertia,
                          num_resplit=result.num_resplit,
                          smallest=int(result.counts.min()),
                          largest=int(result.counts.max()), **agreement)
            if (ground_truth >= 0).any():
                record.update(cluster_quality(result.labels, ground_truth))
                for metric in ('nmi', 'ari', 'purity'):
                    runner.message_hub.update_scalar(
                        f'xdc/{source}_{metric}', record[metric])
            self.history.append(record)
            self.centroids[source] = torch.from_numpy(result.centroids)
        runner.logger.info(self.format_round(round_id, runner.epoch))
        if dist.is_main_process():
            self._publish_round(runner, round_id, results, agreement)
        if apply:
            model.set_pseudo_labels(
                {s: torch.from_numpy(r.labels) for s, r in results.items()})
            self._reset_heads(runner, model)
            self._update_sampler(runner)

    def cluster(self, model, loader):
        """Extract (from ``loader``), gather and cluster; identical results
        on every rank.

        Rank 0 runs k-means and broadcasts the labels, so a multi-threaded
        or GPU clusterer cannot make ranks disagree.
        """
        dataset = loader.dataset
        features, seen = extract_features(model, loader)
        results = {source: None for source in model.cluster_sources}
        if dist.is_main_process():
            skipped = int((~seen).sum())
            if skipped:
                print_log(f'{skipped} clips could not be decoded for feature '
                          'extraction; they get no pseudo-label this round.',
                          logger='current', level=logging.WARNING)
            inputs = clustering_inputs(features, model.cluster_sources)
            for source, matrix in inputs.items():
                result = self._clusterer(source, model).fit(
                    matrix[seen].numpy())
                labels = np.full(len(dataset), -1, dtype=np.int64)
                labels[seen.numpy()] = result.labels
                distances = np.full(len(dataset), np.nan, dtype=np.float32)
                distances[seen.numpy()] = result.distances
                result.labels, result.distances = labels, distances
                results[source] = result
        return {source: _broadcast_object(result)
                for source, result in results.items()}

    def _reset_heads(self, runner, model):
        model.reset_heads()
        heads = list(model.head_parameters())
        for param in heads:  # same fresh heads on every rank
            dist.broadcast(param.data, src=0)
        # Momentum or Adam statistics of the old heads would push the new
        # heads in a meaningless direction.
        state = runner.optim_wrapper.optimizer.state
        for param in heads:
            state.pop(param, None)

    def _update_sampler(self, runner):
        sampler = runner.train_dataloader.sampler
        if self.balance_by is None or not hasattr(sampler,
                                                  'set_pseudo_labels'):
            return
        model = unwrap(runner.model)
        row = model.cluster_sources.index(self.balance_by)
        sampler.set_pseudo_labels(model.pseudo_labels[row].cpu().numpy())

    def _publish_round(self, runner, round_id, results, agreement):
        """The round's quality to the visualizer's backends (TensorBoard
        when configured), at the current iteration so that it lines up with
        the losses; the round file to the work dir."""
        metrics = {r['source']: {m: r[m] for m in ('nmi', 'ari', 'purity')
                                 if m in r}
                   for r in self.history
                   if r['round'] == round_id and r['epoch'] == runner.epoch}
        scalars = {f'xdc/{source}_{m}': value
                   for source, values in metrics.items()
                   for m, value in values.items()}
        scalars.update({f'xdc/{k}': v for k, v in agreement.items()})
        if scalars:
            runner.visualizer.add_scalars(scalars, step=runner.iter)
        if self.save_assignments:
            save_round(round_path(runner.work_dir, round_id), round_id,
                       runner.epoch, results, self._extract_loader.dataset,
                       variant=unwrap(runner.model).variant,
                       config=runner.cfg.filename,
                       metrics=metrics, agreement=agreement,
                       backend_args=atomic_backend_args(runner.work_dir))

    # -- checkpoint --------------------------------------------------------
    # The labels are the model's buffer (saved with its state dict); the
    # centroids and the quality history travel with the checkpoint here.
    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['xdc_clustering'] = dict(history=self.history,
                                            centroids=self.centroids)

    def after_load_checkpoint(self, runner, checkpoint):
        saved = checkpoint.get('xdc_clustering', {})
        self.history = list(saved.get('history', []))
        self.centroids = dict(saved.get('centroids', {}))

    # -- reporting ---------------------------------------------------------
    def format_round(self, round_id, epoch):
        parts, agreement = [], None
        for record in self.history:
            if record['round'] != round_id or record['epoch'] != epoch:
                continue
            text = f"{record['source']} clusters"
            if 'nmi' in record:
                text += (f" NMI={record['nmi']:.3f} ARI={record['ari']:.3f}"
                         f" purity={record['purity']:.3f}")
            text += (f" sizes {record['smallest']}-{record['largest']}"
                     f" resplit={record['num_resplit']}")
            parts.append(text)
            if 'xmodal_nmi' in record:
                agreement = ('video-audio agreement NMI='
                             f"{record['xmodal_nmi']:.3f}")
        if agreement:
            parts.append(agreement)
        return f'XDC round {round_id} (epoch {epoch}): ' + ' | '.join(parts)

    def format_history(self):
        metrics = [m for m in ('nmi', 'ari', 'purity', 'xmodal_nmi')
                   if any(m in r for r in self.history)]
        header = ['round', 'epoch', 'source'] + metrics + ['resplit']
        lines = [' | '.join(header)]
        for r in self.history:
            row = [str(r['round']), str(r['epoch']), r['source']]
            row += [f'{r[m]:.3f}' if m in r else '-' for m in metrics]
            row.append(str(r['num_resplit']))
            lines.append(' | '.join(row))
        return '\n'.join(lines)


def _broadcast_object(obj):
    if dist.get_world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
