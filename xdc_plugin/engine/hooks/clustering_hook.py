"""The cross-modal clustering hook: features -> k-means -> pseudo-labels.

One job: at the start of every ``interval``-th training epoch it gets a
feature per clip from each encoder, clusters the modalities the model's
variant needs, stores the cluster ids in the model's pseudo-label buffer
(keyed by dataset index) and re-initialises the heads. After training it
clusters once more to report the final quality. The parts live in their
own modules:

* features: ``feature_extraction`` (eval mode, the ``extract_dataloader``
  pipeline: fixed centre clips, under training's autocast) or
  ``feature_bank`` (the training pass of the epoch before the round); each
  rank keeps its own rows on its device (``feature_shard``);
* clustering: ``round_clustering`` (sharded k-means where the rows are,
  labels all-gathered);
* reporting: ``round_report`` (quality, log, scalars, round file) and
  ``round_probe_sample`` (linear/kNN probe of the encoders).

A signal (``PreemptionCheckpointHook``'s stop request) aborts the features,
k-means and probe of a round within seconds, on every rank; nothing of the
round is kept and the round runs again on resume.
"""
import contextlib
import time
from typing import Any, Mapping, Optional, Union

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.runner import Runner

from xdc_plugin.clustering.collectives import default_collectives
from xdc_plugin.engine.hooks.mid_epoch_resume_hook import BATCHES_DONE
from xdc_plugin.engine.hooks.preemption_hook import PreemptionCheckpointHook
from xdc_plugin.engine.round.dataset_agreement import check_ranks_agree
from xdc_plugin.engine.round.extract_loader import build_extract_loader
from xdc_plugin.engine.round.feature_bank import FeatureBank
from xdc_plugin.engine.round.feature_extraction import (extract_shard,
                                                        subset_loader, unwrap)
from xdc_plugin.engine.round.feature_shard import FeatureShard, claim_rows
from xdc_plugin.engine.round.round_clustering import (check_cluster_counts,
                                                      cluster_shard)
from xdc_plugin.engine.round.round_probe_sample import probe_shard
from xdc_plugin.engine.round.round_report import (format_history, format_round,
                                                  publish_round, round_records)
from xdc_plugin.engine.runner.precision import autocast_dtype
from xdc_plugin.engine.runner.stop_request import StopRequested
from xdc_plugin.registry import HOOKS


FEATURE_DTYPES = {'float32': torch.float32, 'float16': torch.float16}


@HOOKS.register_module()
class CrossModalClusteringHook(Hook):
    """Re-cluster every ``interval`` epochs and refresh the pseudo-labels.

    Args:
        clusterers: clusterer config per clustering source ('video',
            'audio', 'joint'); a single config is used for every source the
            model's variant needs. ``num_clusters`` defaults to the model's.
            With several ranks, a single-process clusterer (``FaissKMeans``,
            ``TorchKMeans``) runs as ``DistributedKMeans`` with the same
            arguments: no rank gathers the dataset's features.
        extract_dataloader: the feature-extraction loader config (as
            mmselfsup's DeepCluster hook takes): ``batch_size``,
            ``num_workers``, ... and ``dataset``, whose keys replace those
            of the train dataset's config; without a ``pipeline`` there,
            the train pipeline centred and unaugmented (centred clips,
            centre crops, no flip; see ``extract_dataset_cfg``).
        interval: training epochs per clustering round.
        save_assignments: write ``clusters/round_<r>.npz`` to the work dir
            (with one part file per rank, each written by its rank;
            ``xdc_plugin.clustering.round_file``; the cluster gallery's
            input).
        evaluate_after_train: cluster once more after the last epoch, on
            extracted features, to report the quality of the trained
            encoders.
        feature_bank: cluster the features of the training pass of the
            epoch before each round (``feature_bank.FeatureBank``) instead
            of decoding the dataset again. Round 0 and the final round
            extract; clips no rank trained on in that epoch are extracted
            (their count is logged); a run resumed in the middle of that
            epoch extracts every clip (the bank is never checkpointed).
        probe: when the dataset has labels, also report each encoder's
            k-fold linear-probe and kNN top-1 accuracy on the round's
            features (scalars ``xdc/<modality>_linear_top1`` and
            ``xdc/<modality>_knn_top1``): None (off), True, or keyword
            arguments of ``probe_round`` (``folds``, ``protocols``,
            ``max_samples``, ``cs``, ``seed``).
        feature_dtype: ``'float32'`` or ``'float16'``: how the rows of a
            round are stored on the encoders' device (float16 halves their
            memory; ``DistributedKMeans`` reads them chunk by chunk in
            float32, and its own ``feature_dtype`` sets how it stores the
            preprocessed rows).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, clusterers: Mapping[str, Any],
                 extract_dataloader: Mapping[str, Any], interval: int = 1,
                 save_assignments: bool = True,
                 evaluate_after_train: bool = True,
                 feature_bank: bool = False,
                 probe: Union[None, bool, Mapping[str, Any]] = None,
                 feature_dtype: str = 'float32') -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f'feature_dtype must be one of '
                             f'{tuple(FEATURE_DTYPES)}, got {feature_dtype!r}')
        if not (probe is None or probe is True or isinstance(probe, dict)):
            raise TypeError('probe must be None, True or a dict of '
                            f'probe_round arguments, got {probe!r}')
        self.clusterer_cfgs = clusterers
        self.extract_dataloader = extract_dataloader
        self.interval = interval
        self.save_assignments = save_assignments
        self.evaluate_after_train = evaluate_after_train
        self.feature_bank = bool(feature_bank)
        self.probe = {} if probe is True else probe
        self.feature_dtype = FEATURE_DTYPES[feature_dtype]
        self.history = []
        self._extract_loader = None
        self._ground_truth = None
        self._bank = None
        self._resumed_mid_epoch = False
        self._stop = None
        self._preemption = None

    # -- setup -------------------------------------------------------------
    def before_train(self, runner: Runner) -> None:
        # Here, not in the dataset's build: every rank reaches this point
        # together, while a dataset is also built alone (tools, one rank);
        # and indices start to matter here (the pseudo-label buffer).
        check_ranks_agree(runner.train_dataloader.dataset)
        self._extract_loader = build_extract_loader(runner,
                                                    self.extract_dataloader)
        # Read once: a pass over every clip's info (seconds per million
        # clips), and the labels never change during the run.
        self._ground_truth = self._extract_loader.dataset.get_labels()
        model = unwrap(runner.model)
        balance_by = getattr(runner.train_dataloader.sampler, 'balance_by',
                             None)
        if balance_by and balance_by not in model.cluster_sources:
            raise ValueError(
                f'train_dataloader.sampler.balance_by={balance_by!r} is not '
                f'among the sources {model.cluster_sources} of the model')
        if self.feature_bank:
            self._bank = FeatureBank(model, self.feature_dtype)
        self._preemption = next((h for h in runner.hooks if isinstance(
            h, PreemptionCheckpointHook)), None)
        self._stop = self._preemption and self._preemption.stop

    # -- schedule ----------------------------------------------------------
    def before_train_epoch(self, runner: Runner) -> None:
        self._schedule_round(runner)
        if self._bank is not None:
            self._schedule_bank(runner)

    def _schedule_round(self, runner):
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

    def _schedule_bank(self, runner):
        """Fill the bank in an epoch that a round follows."""
        next_epoch = runner.epoch + 1
        resumed, self._resumed_mid_epoch = self._resumed_mid_epoch, False
        if next_epoch % self.interval or next_epoch >= runner.max_epochs:
            self._bank.discard()
        elif resumed:
            self._bank.discard()
            runner.logger.info(
                f'Resumed in the middle of epoch {runner.epoch + 1}: the '
                'feature bank misses its first batches, so the next round '
                'extracts features.')
        else:
            self._bank.open(runner.epoch)

    def before_train_iter(self, runner: Runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self._bank is not None:
            self._bank.expect(data_batch['index'])

    def after_train_iter(self, runner: Runner, batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if self._bank is not None:
            self._bank.commit()

    def after_train_epoch(self, runner: Runner) -> None:
        if self._bank is not None:
            self._bank.close()

    def after_train(self, runner: Runner) -> None:
        if self.evaluate_after_train:
            self.run_round(runner, apply=False)
        if self.history and dist.is_main_process():
            runner.logger.info('XDC cluster quality per round:\n' +
                               format_history(self.history))

    # -- one round ---------------------------------------------------------
    def run_round(self, runner: Runner, apply: bool) -> None:
        """Features, clusters, report; with ``apply``, the new pseudo-labels
        (a numbered round), else only the report (``'final'``)."""
        start = time.perf_counter()
        model = unwrap(runner.model)
        dataset = self._extract_loader.dataset
        check_cluster_counts(self.clusterer_cfgs, {
            s: model.num_clusters[s] for s in model.cluster_sources}, dataset)
        round_id = runner.epoch // self.interval if apply else 'final'
        ground_truth = self._ground_truth
        try:
            with self._interruptible():
                collectives = self._checked(default_collectives())
                shard, origin = self._round_features(runner, model,
                                                     collectives)
                results = cluster_shard(
                    shard, model.cluster_sources, self.clusterer_cfgs,
                    model.num_clusters, len(dataset), collectives,
                    with_distances=self.save_assignments)
                probe = None
                if self.probe is not None:
                    probe = probe_shard(shard, ground_truth, collectives,
                                        **self.probe)
        except StopRequested as stop:
            what = (f'during clustering round {round_id} (epoch '
                    f'{runner.epoch})' if apply else
                    'during the final clustering round')
            self._preemption.stop_run(
                runner, stop.signum, runner.iter,
                f'{what}, {time.perf_counter() - start:.1f} s in (aborted: '
                'it runs again on --resume)')
        device = next(iter(shard.features.values())).device
        records = round_records(round_id, runner.epoch, results,
                                ground_truth, probe, features=origin,
                                device=str(device),
                                seconds=time.perf_counter() - start)
        self.history.extend(records)
        runner.logger.info(format_round(records))
        publish_round(runner, records, results, dataset, model.variant,
                      self.save_assignments, collectives)
        if apply:
            model.set_pseudo_labels(
                {s: r.labels for s, r in results.items()})
            self._reset_heads(runner, model)
            self._update_sampler(runner)

    def _round_features(self, runner, model, collectives):
        """(this rank's ``FeatureShard``, where it came from): the bank of
        the epoch just trained when there is one, else extraction."""
        num_total = len(self._extract_loader.dataset)
        amp_dtype = autocast_dtype(runner.optim_wrapper)

        def extract(loader):
            return extract_shard(model, loader, amp_dtype, self.feature_dtype)

        bank = self._bank
        if bank is not None and bank.epoch == runner.epoch - 1:
            shard, missing = claim_rows(bank.shard(), num_total, collectives)
            bank.discard()
            origin = 'bank'
            if len(missing):
                runner.logger.info(
                    f'{len(missing)} of {num_total} clips were not trained '
                    'on in the bank epoch (undecodable, or not drawn by the '
                    'sampler): extracting their features.')
                loader = subset_loader(self._extract_loader, missing,
                                       collectives.rank,
                                       collectives.world_size)
                shard = FeatureShard.cat([shard,
                                          extract(self._each(loader))])
                shard, missing = claim_rows(shard, num_total, collectives)
                origin = 'bank+extracted'
        else:
            shard, missing = claim_rows(
                extract(self._each(self._extract_loader)), num_total,
                collectives)
            origin = 'extracted'
        if len(missing):
            runner.logger.warning(
                f'{len(missing)} clips could not be decoded for feature '
                'extraction; they get no pseudo-label this round.')
        return shard, origin

    # -- stop requests: no-ops without a PreemptionCheckpointHook ----------
    def _interruptible(self):
        return self._stop.interruptible() if self._stop else \
            contextlib.nullcontext()

    def _checked(self, collectives):
        return self._stop.checked(collectives) if self._stop else collectives

    def _each(self, loader):
        return self._stop.each(loader) if self._stop else loader

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
        """A sampler that balances pseudo-classes gets the new labels."""
        sampler = runner.train_dataloader.sampler
        if hasattr(sampler, 'set_pseudo_labels'):
            sampler.set_pseudo_labels(
                unwrap(runner.model).get_pseudo_labels())

    # -- checkpoint --------------------------------------------------------
    # The labels are model state (saved with its state dict); the
    # quality history travels with the checkpoint here. The feature bank
    # does not (N x D floats): a run resumed mid-epoch extracts instead.
    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint['xdc_clustering'] = dict(history=self.history)

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        saved = checkpoint.get('xdc_clustering', {})
        self.history = list(saved.get('history', []))
        self._resumed_mid_epoch = checkpoint.get('meta', {}).get(
            BATCHES_DONE, 0) > 0
