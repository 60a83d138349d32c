"""FeaturePreprocessor: PCA, whitening, L2 normalisation, small N."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import xdc_plugin  # noqa: F401
from xdc_plugin.clustering import FeaturePreprocessor
from xdc_plugin.clustering import preprocess as preprocess_module


def anisotropic(n=4000, d=16, seed=0):
    """Gaussian data with standard deviations 10, 9.4, ..., 1 along a random
    rotation, plus an offset (so the mean matters)."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(10, 1, d)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = (rng.normal(size=(n, d)) * scales) @ rotation.T + 3.0
    return x.astype(np.float32)


def test_pca_matches_sklearn():
    x = anisotropic()
    pre = FeaturePreprocessor(pca_dim=6, l2_normalize=False)
    y = pre.fit_transform(x)
    ref = PCA(n_components=6, svd_solver='full').fit(x.astype(np.float64))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape == (4000, 6)
    np.testing.assert_allclose(pre.eigenvalues_.numpy(),
                               ref.explained_variance_, rtol=1e-4)
    # Same subspace, each component up to sign.
    cos = np.abs((pre.components_.numpy() * ref.components_).sum(1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
    # Projected variances are the eigenvalues, in decreasing order.
    var = y.astype(np.float64).var(0, ddof=1)
    np.testing.assert_allclose(var, ref.explained_variance_, rtol=1e-3)
    assert np.all(np.diff(var) < 0)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-3)


def test_whitening_gives_unit_identity_covariance():
    x = anisotropic()
    y = FeaturePreprocessor(pca_dim=8, whiten=True,
                            l2_normalize=False).fit_transform(x)
    cov = np.cov(y.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=1e-3)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-3)


@pytest.mark.parametrize('pca_dim,whiten', [(None, False), (8, False),
                                            (8, True)])
def test_l2_normalised_rows(pca_dim, whiten):
    x = anisotropic(n=500)
    y = FeaturePreprocessor(pca_dim=pca_dim, whiten=whiten).fit_transform(x)
    assert y.shape == (500, pca_dim or 16)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)


def test_components_sign_is_fixed():
    x = anisotropic(n=800)
    pre = FeaturePreprocessor(pca_dim=5, l2_normalize=False).fit(x)
    comp = pre.components_.numpy()
    largest = comp[np.arange(5), np.abs(comp).argmax(1)]
    assert np.all(largest > 0)
    # Negating the data flips the mean but keeps the components.
    other = FeaturePreprocessor(pca_dim=5, l2_normalize=False).fit(-x)
    np.testing.assert_allclose(other.components_.numpy(), comp, atol=1e-5)


def test_transform_applies_the_fit_to_new_data():
    x = anisotropic(n=1000)
    pre = FeaturePreprocessor(pca_dim=4, whiten=True, l2_normalize=False)
    pre.fit(x[:800])
    y = pre.transform(x[800:])
    expected = ((x[800:] - pre.mean_.numpy()) @ pre.components_.numpy().T /
                np.sqrt(pre.eigenvalues_.numpy() +
                        1e-6 * pre.eigenvalues_.numpy()[0]))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('pca_dim,whiten', [(None, False), (5, False),
                                             (5, True)])
def test_state_dict_rebuilds_the_same_transform(pca_dim, whiten):
    x = anisotropic(n=500)
    pre = FeaturePreprocessor(pca_dim=pca_dim, whiten=whiten).fit(x[:400])
    state = pre.state_dict()
    assert state['in_dim'] == 16 and state['out_dim'] == (pca_dim or 16)
    assert (state['whiten_scale'] is not None) == whiten
    assert all(isinstance(state[k], np.ndarray) or state[k] is None
               for k in ('mean', 'components', 'eigenvalues'))
    rebuilt = FeaturePreprocessor.from_state_dict(state)
    np.testing.assert_array_equal(rebuilt.transform(x[400:]),
                                  pre.transform(x[400:]))
    with pytest.raises(RuntimeError, match='before fit'):
        FeaturePreprocessor().state_dict()


def test_torch_in_torch_out_and_input_untouched():
    x = anisotropic(n=300)
    t = torch.from_numpy(x.copy())
    y = FeaturePreprocessor(pca_dim=None, l2_normalize=True).fit_transform(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert torch.equal(t, torch.from_numpy(x))  # input not normalised
    y_np = FeaturePreprocessor(pca_dim=None).fit_transform(x)
    np.testing.assert_allclose(y.numpy(), y_np)
    assert not np.shares_memory(y_np, x)
    # No-op preprocessing still returns a copy.
    z = FeaturePreprocessor(l2_normalize=False).fit_transform(x)
    np.testing.assert_array_equal(z, x)
    assert not np.shares_memory(z, x)


def test_pca_dim_clamped_to_rank_with_warning(monkeypatch):
    messages = []
    monkeypatch.setattr(preprocess_module, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    x = anisotropic(n=5)
    pre = FeaturePreprocessor(pca_dim=8, whiten=True, l2_normalize=False)
    y = pre.fit_transform(x)
    assert pre.out_dim == 4 and y.shape == (5, 4)
    assert len(messages) == 1 and 'pca_dim=8' in messages[0]
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.var(0, ddof=1), 1.0, atol=1e-3)
    # No warning when pca_dim fits.
    FeaturePreprocessor(pca_dim=4).fit(x)
    assert len(messages) == 1


def test_errors():
    with pytest.raises(ValueError, match='at least 2 points'):
        FeaturePreprocessor(pca_dim=2).fit(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match='whiten'):
        FeaturePreprocessor(whiten=True)
    with pytest.raises(ValueError, match='pca_dim'):
        FeaturePreprocessor(pca_dim=0)
    with pytest.raises(RuntimeError, match='before fit'):
        FeaturePreprocessor().transform(np.ones((3, 4), np.float32))
    pre = FeaturePreprocessor(pca_dim=2).fit(anisotropic(n=50))
    with pytest.raises(ValueError, match='D=16'):
        pre.transform(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r'\(N, D\)'):
        pre.transform(np.ones(16, np.float32))
