"""Feature preprocessing before k-means: PCA, optional whitening, L2 norm.

DeepCluster and XDC reduce the features with PCA, whiten them and
L2-normalise them before clustering. We implement PCA in torch rather than
with ``faiss.PCAMatrix`` so that the same code runs on the features' device
(the GPU when the clusterer is given CUDA tensors) and uses every point (faiss
subsamples to ``max_points_per_d * d`` points):

* the mean and the covariance are accumulated in float64, in row chunks, so
  100k x 512 features never need a float64 copy;
* the components are the eigenvectors of the covariance
  (``torch.linalg.eigh``), sorted by decreasing eigenvalue, each with its
  sign fixed so that its largest-magnitude coordinate is positive (the
  result does not depend on the eigen-solver's sign choice);
* whitening scales component ``i`` by ``(lambda_i + eps * lambda_max)^-0.5``
  (faiss's ``eigen_power=-0.5`` plus a floor, relative to the largest
  eigenvalue so that it does not depend on the scale of the features).

Inputs are float (N, D) numpy arrays or torch tensors; outputs are float32
and of the same kind (numpy in, numpy out; a tensor stays on its device).
"""
import logging

import numpy as np
import torch
from mmengine.logging import print_log

from xdc_plugin.clustering.collectives import LOCAL

_CHUNK_ROWS = 16384


def as_float_tensor(x, keep_float16=False):
    """``x`` as a float32 (N, D) tensor (numpy without a copy when possible),
    detached, on its own device. ``keep_float16``: a float16 tensor stays
    as it is (rows stored in float16 are read chunk by chunk in float32,
    never copied whole)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    elif isinstance(x, torch.Tensor):
        x = x.detach()
        if not (keep_float16 and x.dtype == torch.float16):
            x = x.to(torch.float32)
    else:
        raise TypeError(f'expected a numpy array or a torch tensor, got '
                        f'{type(x).__name__}')
    if x.dim() != 2:
        raise ValueError(f'expected an (N, D) array, got shape '
                         f'{tuple(x.shape)}')
    return x


def _like_input(y, x):
    return y.cpu().numpy() if isinstance(x, np.ndarray) else y


def l2_normalize(x, tiny=1e-12):
    """Rows of a float tensor divided by their L2 norm (zero rows stay 0)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(tiny)


class FeaturePreprocessor:
    """PCA to ``pca_dim`` (optionally whitened), then L2 normalisation.

    Args:
        pca_dim: output dimension of the PCA; ``None`` for no PCA. Clamped,
            with a logged warning, to ``min(D, N - 1)`` (the rank of the
            centred data) when larger.
        whiten: divide each PCA component by the square root of its
            eigenvalue (needs ``pca_dim``).
        l2_normalize: L2-normalise every output row.
        eps: whitening floor, relative to the largest eigenvalue.

    Attributes set by ``fit`` (when ``pca_dim`` is set): ``mean_`` (D,),
    ``components_`` (D', D), ``eigenvalues_`` (D',), all float32 tensors on
    the device of the fitted features, and ``out_dim``.
    """

    def __init__(self, pca_dim=None, whiten=False, l2_normalize=True,
                 eps=1e-6):
        if pca_dim is not None and int(pca_dim) < 1:
            raise ValueError(f'pca_dim must be >= 1 or None, got {pca_dim}')
        if whiten and pca_dim is None:
            raise ValueError('whiten=True needs a pca_dim')
        if eps < 0:
            raise ValueError(f'eps must be >= 0, got {eps}')
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.whiten = bool(whiten)
        self.l2_normalize = bool(l2_normalize)
        self.eps = float(eps)
        self.mean_ = None
        self.components_ = None
        self.eigenvalues_ = None
        self.out_dim = None
        self._in_dim = None
        self._scale = None

    @property
    def is_fitted(self):
        return self._in_dim is not None

    def fit(self, x, collectives=LOCAL):
        """Learn the PCA (if any) from ``x`` (N, D); returns ``self``. With
        ``collectives`` over several ranks, ``x`` is this rank's share of
        the rows and the PCA is that of all of them (every rank gets the
        same, from all-reduced moments). float16 rows are read in chunks,
        not copied."""
        x = as_float_tensor(x, keep_float16=True)
        n, d = x.shape
        self._in_dim = d
        if self.pca_dim is None:
            self.out_dim = d
            return self
        total = int(collectives.all_reduce_sum(
            torch.tensor(n, device=x.device)))
        max_dim = min(d, total - 1)
        if max_dim < 1:
            raise ValueError(f'PCA needs at least 2 points, got {total}')
        out_dim = self.pca_dim
        if out_dim > max_dim:
            print_log(f'FeaturePreprocessor: pca_dim={out_dim} exceeds the '
                      f'rank bound min(D={d}, N-1={total - 1}); using '
                      f'{max_dim}.', logger='current', level=logging.WARNING)
            out_dim = max_dim

        mean = torch.zeros(d, dtype=torch.float64, device=x.device)
        for start in range(0, n, _CHUNK_ROWS):
            mean += x[start:start + _CHUNK_ROWS].double().sum(0)
        mean = collectives.all_reduce_sum(mean) / total
        cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        for start in range(0, n, _CHUNK_ROWS):
            chunk = x[start:start + _CHUNK_ROWS].double() - mean
            cov += chunk.T @ chunk
        cov = collectives.all_reduce_sum(cov) / (total - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        eigenvalues = eigenvalues.flip(0)[:out_dim].clamp_min(0)
        components = eigenvectors.flip(1)[:, :out_dim].T  # (out_dim, d)
        pivot = components.abs().argmax(dim=1, keepdim=True)
        signs = torch.sign(components.gather(1, pivot))
        components = components * signs

        self.mean_ = mean.float()
        self.components_ = components.float().contiguous()
        self.eigenvalues_ = eigenvalues.float()
        if self.whiten:
            floor = self.eps * eigenvalues[0]
            self._scale = (eigenvalues + floor).clamp_min(
                torch.finfo(torch.float64).tiny).rsqrt().float()
        self.out_dim = out_dim
        return self

    def transform(self, x):
        """Apply the fitted preprocessing to ``x`` (N, D)."""
        if not self.is_fitted:
            raise RuntimeError('FeaturePreprocessor.transform called before '
                               'fit')
        xt = as_float_tensor(x)
        if xt.shape[1] != self._in_dim:
            raise ValueError(f'fitted on D={self._in_dim}, got '
                             f'D={xt.shape[1]}')
        y = xt
        if self.components_ is not None:
            device = xt.device
            components = self.components_.to(device)
            y = (xt - self.mean_.to(device)) @ components.T
            if self._scale is not None:
                y = y * self._scale.to(device)
        if self.l2_normalize:
            y = l2_normalize(y)
        if y is xt:
            y = y.clone()  # never hand back the caller's own memory
        return _like_input(y, x)

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    # The fitted state as plain numpy values, so that the space the
    # centroids live in can be saved beside them and rebuilt later.
    STATE_ARRAYS = ('mean', 'components', 'eigenvalues', 'whiten_scale')

    def state_dict(self):
        """Arguments and fitted arrays: ``pca_dim``, ``whiten``,
        ``l2_normalize``, ``eps``, ``in_dim``, ``out_dim`` and float32 numpy
        ``mean`` (D,), ``components`` (D', D), ``eigenvalues`` (D',),
        ``whiten_scale`` (D',) (None when not applicable)."""
        if not self.is_fitted:
            raise RuntimeError('FeaturePreprocessor.state_dict called before '
                               'fit')
        tensors = (self.mean_, self.components_, self.eigenvalues_,
                   self._scale)
        state = dict(pca_dim=self.pca_dim, whiten=self.whiten,
                     l2_normalize=self.l2_normalize, eps=self.eps,
                     in_dim=self._in_dim, out_dim=self.out_dim)
        for name, value in zip(self.STATE_ARRAYS, tensors):
            state[name] = None if value is None else value.cpu().numpy()
        return state

    @classmethod
    def from_state_dict(cls, state):
        """A fitted preprocessor rebuilt from ``state_dict()``'s output."""
        fitted = cls(state['pca_dim'], state['whiten'],
                     state['l2_normalize'], state['eps'])
        fitted._in_dim = int(state['in_dim'])
        fitted.out_dim = int(state['out_dim'])
        arrays = [None if state[name] is None else
                  torch.as_tensor(np.asarray(state[name], np.float32))
                  for name in cls.STATE_ARRAYS]
        (fitted.mean_, fitted.components_, fitted.eigenvalues_,
         fitted._scale) = arrays
        return fitted

    def __repr__(self):
        return (f'{type(self).__name__}(pca_dim={self.pca_dim}, '
                f'whiten={self.whiten}, l2_normalize={self.l2_normalize}, '
                f'eps={self.eps})')
