"""Fingerprints of trained weights: grid-phase residual statistics, edge-preserving residual
denoisers, and the number of generators among seed twins."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from gantrace.attribution.nclusters import build_estimator
from gantrace.errors import ConfigError
from gantrace.features import PhaseResidualExtractor, build_extractor, noise_residual

DENOISERS = ["gaussian", "wavelet", "nlmeans"]


def _scenes(rng, n, size):
    """Varied smooth grey images (around 128) standing in for CT anatomy."""
    x = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 3, 3))
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    return 128 + rng.uniform(10, 40, (n, 1, 1)) * x


def _generator(rng, n, size, tile, shift=(0, 0), amplitude=2.0, noise=3.0):
    """A 'generator': scenes plus its periodic tile (rolled by `shift`) plus white noise."""
    tile = np.roll(tile, shift, axis=(0, 1))
    yy, xx = np.mgrid[:size, :size]
    images = _scenes(rng, n, size) + amplitude * tile[yy % len(tile), xx % len(tile)]
    images += rng.normal(0, noise, images.shape)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _tiles(k, period=4, seed=0):
    t = np.random.default_rng(seed).normal(size=(k, period, period))
    return (t - t.mean(axis=(1, 2), keepdims=True)) / t.std(axis=(1, 2), keepdims=True)


def _ari(features, truth, k=2):
    return adjusted_rand_score(truth, KMeans(k, n_init=4, random_state=0).fit_predict(features))


@pytest.mark.parametrize("denoise", DENOISERS)
def test_phase_shift_is_separated_and_pure_noise_is_not(denoise):
    """Two generators with the same pattern, amplitude and noise, only the pattern's phase
    differs: the phase feature tells them apart; two draws of one process it does not. The
    residual spectrum, blind to a shift, does not separate them either."""
    rng = np.random.default_rng(1)
    tile, n, size = _tiles(1)[0], 30, 64
    a = _generator(rng, n, size, tile)
    shifted = _generator(rng, n, size, tile, shift=(1, 0))
    same = _generator(rng, n, size, tile)
    truth = np.repeat([0, 1], n)
    phase = build_extractor({"name": "phase_residual", "denoise": denoise})
    assert _ari(phase.transform(np.concatenate([a, shifted])), truth) == 1.0
    assert abs(_ari(phase.transform(np.concatenate([a, same])), truth)) < 0.15
    spectrum = build_extractor({"name": "spectrum", "denoise": denoise})
    assert _ari(spectrum.transform(np.concatenate([a, shifted])), truth) < 0.3


def test_phase_features_shape_invariance_and_errors():
    rng = np.random.default_rng(2)
    images = _generator(rng, 4, 32, _tiles(1)[0])
    ext = build_extractor({"name": "phase_residual", "periods": [2, 8], "stats": "abs"})
    assert isinstance(ext, PhaseResidualExtractor) and ext.n_features == 4 + 64
    feats = ext.transform(images)
    assert feats.shape == (4, 68) and feats.dtype == np.float32 and np.isfinite(feats).all()
    both = build_extractor({"name": "phase_residual", "periods": [4]})
    base = both.transform(images)
    assert base.shape == (4, 32)
    # a brighter copy has the same residual: the same features (ratios within one image)
    dim = np.minimum(images, 200)
    np.testing.assert_allclose(both.transform(dim + np.uint8(20)), both.transform(dim), atol=1e-4)
    # each image's features are its own: reordering the batch reorders the rows
    np.testing.assert_allclose(both.transform(images[::-1]), base[::-1], atol=1e-6)
    flat = both.transform(np.full((2, 32, 32), 90, np.uint8))
    assert np.isfinite(flat).all() and not flat.any()
    with pytest.raises(ConfigError, match="period 16 exceeds the image size 8x8"):
        build_extractor({"name": "phase_residual"}).transform(images[:, :8, :8])
    with pytest.raises(ConfigError, match=r"periods: each value at most once"):
        build_extractor({"name": "phase_residual", "periods": [4, 4]})
    with pytest.raises(ConfigError, match=r"periods"):
        build_extractor({"name": "phase_residual", "periods": [1]})
    with pytest.raises(ConfigError, match=r"denoise"):
        build_extractor({"name": "phase_residual", "denoise": "bm3d"})


def test_edge_preserving_denoisers_keep_the_fingerprint_out_of_the_scene():
    """On scenes with sharp edges, the wavelet and non-local-means residuals correlate with a
    planted fingerprint far better than the Gaussian one, whose residual holds the edges."""
    rng = np.random.default_rng(0)
    size = 64
    yy, xx = np.mgrid[:size, :size]
    fingerprint = rng.normal(size=(size, size))
    images = []
    for _ in range(6):
        cy, cx, r = rng.uniform(16, 48, 3)
        scene = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < (r / 2 + 6) ** 2, 190.0, 60.0)
        images.append(scene + 3 * fingerprint)
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)

    def match(denoise):
        res = noise_residual(images, denoise)
        return np.mean([np.corrcoef(r.ravel(), fingerprint.ravel())[0, 1] for r in res])

    gaussian = match("gaussian")
    assert match("wavelet") > gaussian + 0.3 and match("nlmeans") > gaussian + 0.3
    # `sigma` scales the estimated noise level: a stronger setting removes more
    weak, strong = (noise_residual(images, "nlmeans", s) for s in (0.5, 2.0))
    assert np.abs(strong).mean() > np.abs(weak).mean()
    flat = noise_residual(np.full((1, 32, 32), 50, np.uint8), "wavelet")
    assert np.isfinite(flat).all() and not flat.any()


def _twins(n=30, size=32, seed=0):
    """Four generators: seed twins (one pattern, two phases), another pattern, none."""
    rng = np.random.default_rng(seed)
    tiles = _tiles(2, seed=seed)
    sets = [
        _generator(rng, n, size, tiles[0]),
        _generator(rng, n, size, tiles[0], shift=(1, 1)),
        _generator(rng, n, size, tiles[1]),
        _generator(rng, n, size, np.zeros((4, 4))),
    ]
    return np.concatenate(sets), np.repeat(np.arange(4), n)


@pytest.fixture(scope="module")
def planted_twins():
    images, truth = _twins()
    X = build_extractor({"name": "phase_residual", "periods": [2, 4, 8]}).transform(images)
    return X, truth


@pytest.mark.parametrize("criterion", ["stability", "gap"])
def test_planted_twins_in_the_phase_feature_count_as_two(planted_twins, criterion):
    X, truth = planted_twins
    assert _ari(X, truth, k=4) == 1.0
    est = build_estimator({"name": criterion, "k_max": 7}, random_state=0).fit(X)
    assert est.n_clusters_ == 4, est.scores_
    assert list(est.scores_.k) == list(range(2, 8))
    again = build_estimator({"name": criterion, "k_max": 7}, random_state=0).fit(X)
    assert again.scores_.equals(est.scores_)  # deterministic for a seed


def test_seed_twins_config_validates_and_every_part_builds():
    import yaml
    from conftest import ROOT

    from gantrace.attribution.method import AttributionMethod
    from gantrace.config import validate_config

    cfg = yaml.safe_load((ROOT / "config" / "seed-twins.yaml").read_text())
    cfg["datasets"] = {"att": {"task": "attribution", "generated": "x/*.png"}}
    validate_config(cfg, ROOT / "config" / "schema.yaml")
    for name, spec in cfg["features"].items():
        build_extractor(spec, key=f"features.{name}")
    names = {s["name"] for s in cfg["features"].values()}
    assert {"phase_residual", "spectrum", "dct", "residual"} <= names
    for spec in cfg["attribution"]["methods"].values():
        auto = spec.get("n_clusters") == "auto"
        AttributionMethod(
            None if auto else 4,
            clusterer=spec["clusterer"],
            reducer=spec.get("reducer"),
            n_clusters_estimator=spec.get("estimate_k"),
        )


def test_missing_pywavelets_is_a_config_error_naming_the_fix(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pywt", None)  # `import pywt` raises ImportError
    images = np.full((1, 16, 16), 80, np.uint8)
    for denoise in ("wavelet", "nlmeans"):
        with pytest.raises(ConfigError, match=rf"denoise: {denoise} needs PyWavelets.*gaussian"):
            noise_residual(images, denoise)
    assert not noise_residual(images, "gaussian").any()  # the blur needs no PyWavelets
