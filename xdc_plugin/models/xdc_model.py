"""The XDC model: two encoders, pseudo-label heads and the pseudo-labels.

Variants (named in Fig. 1 of the paper, Alwassel et al., NeurIPS 2020,
arXiv 1911.12667; the table in "Method" of ``projects/xdc/README.md``), as
the routing table ``ROUTES``: each entry is ``(encoder modality, clustering
source)``, i.e. "the head on this encoder is trained on the clusters of that
source".

========  ==========================================  ====================
variant   targets (encoder <- clusters)               clusterings needed
========  ==========================================  ====================
``xdc``   video <- audio, audio <- video              video, audio
``sdc``   video <- video, audio <- audio              video, audio
``mdc``   video <- video, video <- audio,             video, audio
          audio <- video, audio <- audio
``cdc``   video <- joint, audio <- joint              joint
========  ==========================================  ====================

``joint`` is k-means on ``concat(fv, fa)``, done by the clustering hook; the
model only consumes labels. For ``mdc`` each encoder's loss is the sum of its
two cross-entropies, which is what summing the returned ``loss_*`` terms
gives.

Pseudo-labels are model state: an int32 tensor ``pseudo_labels`` of shape
``(len(cluster_sources), N)`` indexed by dataset index, ``-1`` meaning "no
label". It stays in host memory whatever device the model is on (at 65M
clips it would take 0.5 GB of every GPU): each step looks up its batch's
labels there and sends those to the logits' device. It is saved in
``state_dict()`` under ``pseudo_labels`` and restored on load whatever N
the model currently holds (int64 labels of older checkpoints too), so
checkpoints carry the labels and a resumed run continues on the same
targets.
"""
from collections.abc import Mapping
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from xdc_plugin import MODALITIES, SOURCES
from xdc_plugin.registry import MODELS

LABEL_DTYPE = torch.int32
# One source's pseudo-labels, ``(N,)`` integers (-1: unlabelled).
Labels = Union[torch.Tensor, np.ndarray]


def _build(cfg: Union[dict, nn.Module]) -> nn.Module:
    """A module, or one built from its config (in the ``xdc`` scope)."""
    return cfg if isinstance(cfg, nn.Module) else MODELS.build(cfg)


def _clusters_per_source(num_clusters: Union[int, Mapping],
                         sources: Sequence[str],
                         variant: str) -> Dict[str, int]:
    """``{source: k}`` of ``sources`` from ``model.num_clusters`` (an int
    for every source or a dict keyed by source), checked."""
    if isinstance(num_clusters, int) and not isinstance(num_clusters, bool):
        num_clusters = {s: num_clusters for s in sources}
    elif isinstance(num_clusters, Mapping):
        missing = [s for s in sources if s not in num_clusters]
        if missing:
            raise ValueError(f'num_clusters has no entry for {missing} '
                             f'(variant {variant!r} needs {list(sources)})')
    else:
        raise TypeError(
            'config key model.num_clusters expects an int >= 2 or a dict '
            f'of them keyed by source, got {type(num_clusters).__name__} '
            f'{num_clusters!r}')
    for source in sources:
        k = num_clusters[source]
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(
                f'config key model.num_clusters.{source} expects an int '
                f'>= 2, got {type(k).__name__} {k!r}')
        if k < 2:
            raise ValueError(f'config key model.num_clusters.{source} '
                             f'must be >= 2, got {k}')
    return {s: num_clusters[s] for s in sources}


def _feat_dim(encoder: nn.Module, modality: str) -> int:
    if not isinstance(getattr(encoder, 'feat_dim', None), int):
        raise TypeError(f'the {modality} encoder ({type(encoder).__name__}) '
                        'must expose an int `feat_dim`')
    return encoder.feat_dim


def _build_head(cfg: Mapping, in_dim: int, num_classes: int) -> nn.Module:
    """The head of config ``cfg`` from ``in_dim`` features to
    ``num_classes`` logits (both set here, from the encoder and k)."""
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get('type'), str):
        raise TypeError('config key model.head expects a dict with a type, '
                        f"e.g. dict(type='LinearHead', dropout=0.1), got "
                        f'{cfg!r}')
    given = sorted({'in_dim', 'num_classes'} & set(cfg))
    if given:
        raise ValueError(f'model.head sets {given}: the model gives each '
                         "head its encoder's feat_dim and its source's k")
    head = MODELS.build(dict(cfg, in_dim=in_dim, num_classes=num_classes))
    if not callable(getattr(head, 'reset_parameters', None)):
        raise TypeError(f'the head {cfg["type"]} has no reset_parameters(): '
                        'heads are re-initialised after every clustering '
                        'round')
    return head


@MODELS.register_module()
class XDCModel(BaseModel):
    """Audio-visual deep clustering model (XDC and its baselines).

    Args:
        video_encoder: config (or module) of the video encoder, e.g.
            ``dict(type='R2Plus1D18', width=0.25)``. It must expose
            ``feat_dim`` and map ``(B, 3, T, H, W)`` to ``(B, feat_dim)``.
        audio_encoder: config (or module) of the audio encoder, e.g.
            ``dict(type='AudioResNet18')``; same contract on
            ``(B, 1, F, T')``.
        variant: ``'xdc'``, ``'sdc'``, ``'mdc'`` or ``'cdc'``.
        num_clusters: k, an int for every clustering or a dict keyed by
            source (``'video'``, ``'audio'``, ``'joint'``); it sizes the
            heads trained on that source.
        head: config of every pseudo-label head (one per route), built with
            ``in_dim`` (its encoder's ``feat_dim``) and ``num_classes``
            (its source's k); it maps ``(B, in_dim)`` to logits and has
            ``reset_parameters()``. ``LinearHead`` by default; e.g.
            ``dict(type='LinearHead', dropout=0.1)``.
        data_preprocessor: config (or module); ``AVDataPreprocessor`` by
            default.
        init_cfg: mmengine initialisation config.
    """

    ROUTES = {
        'xdc': (('video', 'audio'), ('audio', 'video')),
        'sdc': (('video', 'video'), ('audio', 'audio')),
        'mdc': (('video', 'video'), ('video', 'audio'),
                ('audio', 'video'), ('audio', 'audio')),
        'cdc': (('video', 'joint'), ('audio', 'joint')),
    }

    def __init__(self, video_encoder: Union[dict, nn.Module],
                 audio_encoder: Union[dict, nn.Module], variant: str = 'xdc',
                 num_clusters: Union[int, Mapping] = 256,
                 head: Mapping = dict(type='LinearHead'),
                 data_preprocessor: Union[dict, nn.Module] = dict(
                     type='AVDataPreprocessor'),
                 init_cfg: Optional[dict] = None):
        if variant not in self.ROUTES:
            raise ValueError(f'variant must be one of {sorted(self.ROUTES)}, '
                             f'got {variant!r}')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = _build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.variant = variant
        self.targets = list(self.ROUTES[variant])
        needed = {source for _, source in self.targets}
        self.cluster_sources = [s for s in SOURCES if s in needed]
        self.num_clusters = _clusters_per_source(
            num_clusters, self.cluster_sources, variant)
        self.video_encoder = _build(video_encoder)
        self.audio_encoder = _build(audio_encoder)
        self.feat_dims = {m: _feat_dim(self.encoder(m), m)
                          for m in MODALITIES}
        self.heads = nn.ModuleDict(
            (self.head_name(m, s),
             _build_head(head, self.feat_dims[m], self.num_clusters[s]))
            for m, s in self.targets)
        # A plain attribute, not a buffer: ``.to(device)`` leaves it in host
        # memory and DistributedDataParallel never broadcasts it (every rank
        # sets the same labels itself); the state dict methods below save
        # and load it.
        self.pseudo_labels = torch.empty(len(self.cluster_sources), 0,
                                         dtype=LABEL_DTYPE)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def head_name(modality: str, source: str) -> str:
        return f'{modality}_from_{source}'

    def encoder(self, modality: str) -> nn.Module:
        if modality == 'video':
            return self.video_encoder
        if modality == 'audio':
            return self.audio_encoder
        raise KeyError(modality)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of every head (re-initialised at each re-clustering;
        the hook clears their optimizer state)."""
        return self.heads.parameters()

    def reset_heads(self) -> None:
        """Re-initialise every head (after new pseudo-labels)."""
        for head in self.heads.values():
            head.reset_parameters()

    # ------------------------------------------------------ pseudo-labels
    @property
    def num_labelled_samples(self) -> int:
        """N, the dataset size the pseudo-labels cover (0: none set)."""
        return self.pseudo_labels.shape[1]

    def set_pseudo_labels(self, labels: Mapping[str, Labels]) -> None:
        """Replace the pseudo-labels.

        Args:
            labels: dict source -> integer tensor or ndarray ``(N,)``, one
                entry for each of ``cluster_sources`` and nothing else;
                values in ``[0, num_clusters[source])`` or -1 (unlabelled).
                N is the dataset size and may differ from the previous one.
                (``PseudoClassBalancedSampler.set_pseudo_labels`` takes the
                same dict.)
        """
        given = set(labels)
        if given != set(self.cluster_sources):
            raise ValueError(f'variant {self.variant!r} needs pseudo-labels '
                             f'for exactly {self.cluster_sources}, got '
                             f'{sorted(given)}')
        rows = []
        for source in self.cluster_sources:
            row = torch.as_tensor(labels[source])
            if row.dim() != 1:
                raise ValueError(f'pseudo-labels of {source!r} must be 1-D, '
                                 f'got shape {tuple(row.shape)}')
            if row.is_floating_point() or row.is_complex():
                raise TypeError(f'pseudo-labels of {source!r} must be '
                                f'integers, got {row.dtype}')
            k = self.num_clusters[source]
            if row.numel() and (row.min() < -1 or row.max() >= k):
                raise ValueError(
                    f'pseudo-labels of {source!r} must be in [-1, {k}), got '
                    f'[{int(row.min())}, {int(row.max())}]')
            rows.append(row.cpu().to(LABEL_DTYPE))
        if len({row.numel() for row in rows}) > 1:
            raise ValueError('pseudo-labels of all sources must have the same '
                             'length, got ' + str(
                                 {s: r.numel() for s, r in
                                  zip(self.cluster_sources, rows)}))
        self.pseudo_labels = torch.stack(rows)

    def get_pseudo_labels(self) -> Dict[str, torch.Tensor]:
        """The pseudo-labels as :meth:`set_pseudo_labels` takes them:
        ``{source: int32 (N,)}`` for each of ``cluster_sources`` (views of
        the buffer, in host memory)."""
        return dict(zip(self.cluster_sources, self.pseudo_labels))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + 'pseudo_labels'] = self.pseudo_labels

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Any N; int64 labels (checkpoints before int32) are converted. A
        # different number of sources (another variant) is an error.
        key = prefix + 'pseudo_labels'
        saved = state_dict.pop(key, None)
        if saved is None:
            missing_keys.append(key)
        elif (saved.dim() != 2 or saved.shape[0] != len(self.cluster_sources)
              or saved.is_floating_point()):
            error_msgs.append(
                f'pseudo_labels: the checkpoint holds {saved.dtype} labels of '
                f'shape {tuple(saved.shape)}; this {self.variant} model needs '
                f'{len(self.cluster_sources)} rows of integers')
        else:
            self.pseudo_labels = saved.to('cpu', LABEL_DTYPE, copy=True)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _targets_for(self, index):
        """Pseudo-labels ``(num_sources, B)`` int64 of the samples ``index``
        (looked up in host memory)."""
        if self.num_labelled_samples == 0:
            raise RuntimeError(
                'XDCModel has no pseudo-labels: call set_pseudo_labels() '
                '(the clustering hook does) before training with '
                "mode='loss'")
        index = index.cpu().long()
        if index.numel() and (index.min() < 0 or
                              index.max() >= self.num_labelled_samples):
            raise RuntimeError(
                f'dataset index out of range of the pseudo-labels: got '
                f'[{int(index.min())}, {int(index.max())}] but labels cover '
                f'N={self.num_labelled_samples} samples; the labels are '
                'stale or belong to another dataset')
        return self.pseudo_labels[:, index].long()

    # ------------------------------------------------------------ forward
    def extract_feat(self, video: Optional[torch.Tensor] = None,
                     audio: Optional[torch.Tensor] = None
                     ) -> Dict[str, torch.Tensor]:
        """Pooled encoder features ``dict(video=(B, Dv), audio=(B, Da))``;
        a modality passed as None is skipped. Callers choose train/eval
        mode and grad context (the clustering hook: eval, no_grad)."""
        feats = {}
        if video is not None:
            feats['video'] = self.video_encoder(video)
        if audio is not None:
            feats['audio'] = self.audio_encoder(audio)
        return feats

    def head_logits(self, feats: Mapping[str, torch.Tensor]
                    ) -> Dict[str, torch.Tensor]:
        """Per-head logits ``{'<modality>_from_<source>': (B, k)}``."""
        return {self.head_name(m, s): self.heads[self.head_name(m, s)](
            feats[m]) for m, s in self.targets}

    def forward(self, video: torch.Tensor, audio: torch.Tensor,
                index: Optional[torch.Tensor] = None,
                label: Optional[torch.Tensor] = None, mode: str = 'tensor',
                **kwargs) -> Union[Dict[str, torch.Tensor], List[dict]]:
        """mmengine entry point.

        Args:
            video, audio: preprocessed batches.
            index: dataset indices ``(B,)``, the keys into the
                pseudo-labels (needed for ``mode='loss'``).
            label: ground-truth class, unused in training (passed through
                by ``'predict'`` for evaluation).
            mode: ``'tensor'`` -> ``dict(video=fv, audio=fa)``;
                ``'loss'`` -> ``loss_<m>_from_<s>`` cross-entropies plus
                ``acc_<m>_from_<s>`` (detached, logged only);
                ``'predict'`` -> one dict per sample holding each head's
                logits (``(k,)``), its ``index`` and ``label`` if given: the
                list form mmengine's ``Evaluator`` iterates over.
            **kwargs: other batch keys, ignored.
        """
        if mode == 'tensor':
            return self.extract_feat(video, audio)
        if mode == 'loss':
            return self.loss(video, audio, index)
        if mode == 'predict':
            return self.predict(video, audio, index, label)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got "
                         f'{mode!r}')

    def loss(self, video: torch.Tensor, audio: torch.Tensor,
             index: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        if index is None:
            raise RuntimeError("mode='loss' needs the dataset `index` of "
                               'each sample to look up its pseudo-labels')
        # Looked up before the forward: with a device index, its copy to
        # the host waits for the batch's copies only.
        targets = self._targets_for(index).to(video.device,
                                              non_blocking=True)
        logits = self.head_logits(self.extract_feat(video, audio))
        out = {}
        for modality, source in self.targets:
            name = self.head_name(modality, source)
            logit = logits[name]
            target = targets[self.cluster_sources.index(source)]
            valid = target >= 0
            num_valid = valid.sum()
            # Mean over labelled samples; a fully unlabelled batch gives 0
            # (not NaN) and still a graph through the head and the encoder.
            loss = F.cross_entropy(logit, target, ignore_index=-1,
                                   reduction='sum')
            out[f'loss_{name}'] = loss / num_valid.clamp(min=1)
            with torch.no_grad():
                correct = ((logit.argmax(1) == target) & valid).sum()
                out[f'acc_{name}'] = (correct.float() /
                                      num_valid.clamp(min=1).float())
        return out

    def predict(self, video: torch.Tensor, audio: torch.Tensor,
                index: Optional[torch.Tensor] = None,
                label: Optional[torch.Tensor] = None) -> List[dict]:
        logits = self.head_logits(self.extract_feat(video, audio))
        batch = next(iter(logits.values())).shape[0]
        samples = []
        for i in range(batch):
            sample = {name: value[i] for name, value in logits.items()}
            if index is not None:
                sample['index'] = index[i]
            if label is not None:
                sample['label'] = label[i]
            samples.append(sample)
        return samples
