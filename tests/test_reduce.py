import numpy as np
import pytest

from gantrace.errors import ConfigError
from gantrace.reduce import REDUCERS, IdentityReducer, PCAReducer, build_reducer


def _data(n=300, d=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)) @ rng.standard_normal((5, d)) * 3
    X += 0.1 * rng.standard_normal((n, d))
    X[:, 3] = 7.0  # constant column: must be dropped, not divided by zero
    return X.astype(np.float32)


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95, 0.99])
def test_pca_keeps_asked_variance_fraction(fraction):
    reducer = PCAReducer(n_components=fraction).fit(_data())
    assert reducer.pca_.explained_variance_ratio_.sum() >= fraction
    assert reducer.pca_.n_components_ < 19
    assert not reducer.keep_[3] and reducer.keep_.sum() == 19


def test_pca_int_components_shape_and_transform():
    X = _data()
    out = PCAReducer(n_components=4).fit_transform(X)
    assert out.shape == (300, 4) and np.isfinite(out).all()
    new = _data(n=7, seed=1)
    assert PCAReducer(n_components=4).fit(X).transform(new).shape == (7, 4)
    # components are ordered by variance
    assert np.all(np.diff(out.var(axis=0)) <= 1e-9)


def test_pca_deterministic():
    X = _data()
    a = PCAReducer(n_components=3, random_state=1).fit_transform(X)
    b = PCAReducer(n_components=3, random_state=1).fit_transform(X)
    np.testing.assert_array_equal(a, b)


def test_pca_too_many_components_and_bad_values():
    with pytest.raises(ConfigError, match="n_components"):
        PCAReducer(n_components=50).fit(_data())
    for bad in (0, 1.0, 1.5, -0.2, True, "x"):
        with pytest.raises(ConfigError, match="n_components"):
            PCAReducer(n_components=bad)


def test_build_reducer():
    assert isinstance(build_reducer(None), IdentityReducer)
    assert isinstance(build_reducer({"name": "none"}), IdentityReducer)
    r = build_reducer({"name": "pca", "n_components": 8}, random_state=3)
    assert isinstance(r, PCAReducer) and r.n_components == 8 and r.random_state == 3
    assert set(REDUCERS) == {"autoencoder", "none", "pca", "tsne"}
    with pytest.raises(ConfigError, match=r"reducer\.name.*autoencoder, none, pca, tsne"):
        build_reducer({"name": "umap"})
    with pytest.raises(ConfigError, match=r"reducer\.n_comp.*valid: n_components, whiten"):
        build_reducer({"name": "pca", "n_comp": 3}, random_state=0)
    with pytest.raises(ConfigError, match=r"reducer\.random_state"):
        build_reducer({"name": "pca", "random_state": 3}, random_state=0)
    with pytest.raises(ConfigError, match="name"):
        build_reducer({"n_components": 3})


def test_identity_passes_through_and_rejects_nan():
    X = _data(n=5)
    np.testing.assert_array_equal(IdentityReducer().fit_transform(X), X)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        IdentityReducer().fit_transform(X)


def _manifold(n=120, d=12, seed=0):
    """Rows on a 2-D plane inside d dimensions, plus a little noise."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)) @ rng.standard_normal((2, d)) + 0.01 * rng.standard_normal(
        (n, d)
    )


def test_autoencoder_learns_and_saves(tmp_path):
    from safetensors.numpy import load_file

    X = _manifold()
    spec = {
        "name": "autoencoder",
        "code_size": 2,
        "hidden": 32,
        "epochs": 30,
        "lr": 3e-3,
        "batch_size": 32,
    }
    reducer = build_reducer(spec, random_state=1).fit(X)
    code = reducer.transform(X)
    assert code.shape == (120, 2)
    # Standardised columns have variance 1; a trained 2-D code reconstructs a plane far better.
    err = reducer.model_.reconstruction_error(X).mean()
    assert err < 0.1, err
    assert reducer.model_.loss_history_[-1] < reducer.model_.loss_history_[0] / 5
    again = build_reducer(spec, random_state=1).fit_transform(X)
    np.testing.assert_array_equal(code, again)  # seeded
    assert not np.allclose(build_reducer(spec, random_state=2).fit_transform(X), code)
    assert REDUCERS["autoencoder"].trains
    reducer.save(tmp_path / "ae.safetensors")
    tensors = load_file(tmp_path / "ae.safetensors")
    assert tensors["encoder.0.weight"].shape == (32, 12) and "mean" in tensors


def test_autoencoder_bad_params():
    with pytest.raises(ConfigError, match="autoencoder.epochs"):
        build_reducer({"name": "autoencoder", "epochs": 0})
    with pytest.raises(ConfigError, match="autoencoder.device"):
        build_reducer({"name": "autoencoder", "device": "gpu"})


def test_tsne_separates_blobs_and_has_no_transform():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 20)
    X = rng.normal(scale=8, size=(3, 10))[truth] + rng.standard_normal((60, 10))
    reducer = build_reducer({"name": "tsne", "perplexity": 10}, random_state=0)
    emb = reducer.fit_transform(X)
    assert emb.shape == (60, 2)
    labels = KMeans(3, n_init=3, random_state=0).fit_predict(emb)
    assert adjusted_rand_score(truth, labels) == 1.0
    with pytest.raises(ConfigError, match="unseen rows"):
        reducer.transform(X)
