"""Weight-free generator fingerprints: dct and residual extractors, the fingerprint clusterer."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from gantrace.attribution.marra import FingerprintClusterer
from gantrace.attribution.method import CLUSTERERS, AttributionMethod
from gantrace.errors import ConfigError
from gantrace.features import DCTExtractor, ResidualExtractor, build_extractor


def _smooth(rng, n, size, sigma=3.0):
    """Varied smooth grey images (float, around 128) standing in for CT anatomy."""
    x = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, sigma, sigma))
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    return 128 + rng.uniform(10, 40, (n, 1, 1)) * x


def _uint8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _checkerboard_set(n_per=8, size=64, amplitude=2.0, seed=0):
    """Smooth images, the second half with a 2-pixel checkerboard (upsampling artefact)."""
    rng = np.random.default_rng(seed)
    images = _smooth(rng, 2 * n_per, size)
    yy, xx = np.mgrid[:size, :size]
    images[n_per:] += amplitude * np.where((yy + xx) % 2, 1.0, -1.0)
    return _uint8(images), np.repeat([0, 1], n_per)


def _generators(n_per=20, size=32, amplitude=2.0, seed=0):
    """Three 'generators': fixed random residual patterns added weakly to varied images."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(3, size, size))
    images = _smooth(rng, 3 * n_per, size) + amplitude * np.repeat(patterns, n_per, axis=0)
    return _uint8(images), np.repeat(np.arange(3), n_per)


@pytest.mark.parametrize("source", ["residual", "image"])
def test_dct_separates_checkerboard_images(source):
    images, truth = _checkerboard_set()
    ext = build_extractor({"name": "dct", "source": source})
    assert isinstance(ext, DCTExtractor)
    feats = ext.transform(images)
    assert feats.shape == (len(images), 8 * 8 * 2) and feats.dtype == np.float32
    highest = feats[:, 63]  # mean log |coef| at (7, 7), the highest frequency
    assert highest[truth == 1].min() > highest[truth == 0].max() + 2
    labels = KMeans(2, n_init=4, random_state=0).fit_predict(feats)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_dct_shapes_stats_and_global_bins():
    rng = np.random.default_rng(1)
    for size in (64, 256):
        images = rng.integers(0, 256, (2, size, size), dtype=np.uint8)
        ext = build_extractor({"name": "dct", "block": 4, "global_bins": 3})
        feats = ext.transform(images)
        assert feats.shape == (2, 4 * 4 * 2 + 9) and np.isfinite(feats).all()
        assert np.abs(feats[0] - feats[1]).max() > 1e-3
    mean_only = build_extractor({"name": "dct", "stats": ["mean"]}).transform(images)
    assert np.allclose(mean_only, build_extractor({"name": "dct"}).transform(images)[:, :64])


def test_dct_leaves_out_masked_tiles():
    rng = np.random.default_rng(2)
    image = rng.integers(1, 256, (1, 64, 64), dtype=np.uint8)
    masks = np.zeros_like(image, dtype=bool)
    masks[:, :, :32] = True  # the "lung": the left half, whole tiles
    ext = build_extractor({"name": "dct", "source": "image"})
    lung = ext.transform(image, masks, region="lung")
    # identical to the left half alone: the zeroed tiles did not enter the statistics
    np.testing.assert_allclose(lung, ext.transform(image[:, :, :32]), rtol=1e-5, atol=1e-5)
    outer = ext.transform(image, masks, region="outer")
    np.testing.assert_allclose(outer, ext.transform(image[:, :, 32:]), rtol=1e-5, atol=1e-5)
    assert np.abs(lung - ext.transform(image)).max() > 1e-3
    # no tile left: every tile is used, finite features
    empty = ext.transform(image, np.zeros_like(masks), region="lung")
    assert np.isfinite(empty).all()


def test_dct_config_errors():
    images = np.zeros((1, 64, 64), dtype=np.uint8)
    with pytest.raises(ConfigError, match="'block' 7"):
        build_extractor({"name": "dct", "block": 7}).transform(images)
    with pytest.raises(ConfigError, match="block"):
        build_extractor({"name": "dct", "block": 1})
    with pytest.raises(ConfigError, match="stats"):
        build_extractor({"name": "dct", "stats": ["mean", "max"]})
    with pytest.raises(ConfigError, match="source"):
        build_extractor({"name": "dct", "source": "residuals"})
    with pytest.raises(ConfigError, match="global_bins"):
        build_extractor({"name": "dct", "global_bins": 65}).transform(images)


def test_residual_rows_are_standardised():
    images, truth = _generators(n_per=4, size=48)
    ext = build_extractor({"name": "residual", "crop": 32})
    assert isinstance(ext, ResidualExtractor)
    rows = ext.transform(images)
    assert rows.shape == (12, 32 * 32) and rows.dtype == np.float32
    np.testing.assert_allclose(rows.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    # images of one generator correlate more than images of different generators
    corr = rows @ rows.T
    same = (truth[:, None] == truth[None, :]) & ~np.eye(len(truth), dtype=bool)
    assert corr[same].mean() > 0.3
    assert abs(corr[truth[:, None] != truth[None, :]].mean()) < 0.05
    wider = build_extractor({"name": "residual", "crop": 32, "sigma": 2.0}).transform(images)
    assert np.abs(wider - rows).max() > 0.01
    # crop larger than the image: the whole image
    assert build_extractor({"name": "residual", "crop": 64}).transform(images).shape[1] == (48 * 48)
    flat = build_extractor({"name": "residual"}).transform(np.full((2, 40, 40), 77, np.uint8))
    assert flat.shape == (2, 40 * 40) and np.isfinite(flat).all() and not flat.any()
    with pytest.raises(ConfigError, match="sigma"):
        build_extractor({"name": "residual", "sigma": 0})


def test_fingerprint_clusterer_recovers_generators():
    images, truth = _generators()
    rows = build_extractor({"name": "residual", "crop": 32}).transform(images)
    method = AttributionMethod(n_clusters=3, clusterer={"name": "fingerprint"}, random_state=3)
    labels = method.fit_predict(rows)
    assert adjusted_rand_score(truth, labels) >= 0.9
    pixels = images.reshape(len(images), -1).astype(np.float64)
    baseline = KMeans(3, n_init=4, random_state=0).fit_predict(pixels)
    assert adjusted_rand_score(truth, baseline) < 0.5
    fp = method.clusterer_.fingerprints_
    assert fp.shape == (3, 32 * 32)
    np.testing.assert_allclose(np.linalg.norm(fp, axis=1), 1, atol=1e-9)
    # deterministic for a seed
    again = AttributionMethod(n_clusters=3, clusterer={"name": "fingerprint"}, random_state=3)
    np.testing.assert_array_equal(again.fit_predict(rows), labels)


def test_fingerprint_clusterer_direct_and_errors():
    images, truth = _generators(n_per=10, seed=5)
    rows = build_extractor({"name": "residual", "crop": 32}).transform(images)
    model = FingerprintClusterer(n_clusters=3, n_init=2, random_state=0)
    labels = model.fit_predict(rows)
    assert set(labels) == {0, 1, 2} and adjusted_rand_score(truth, labels) >= 0.9
    assert 0 < model.score_ <= 1
    assert isinstance(CLUSTERERS.create({"name": "fingerprint"}), FingerprintClusterer)
    with pytest.raises(ConfigError, match="n_init"):
        CLUSTERERS.create({"name": "fingerprint", "n_init": 0})
    with pytest.raises(ConfigError, match="n_clusters"):
        FingerprintClusterer(n_clusters=40).fit_predict(rows)
