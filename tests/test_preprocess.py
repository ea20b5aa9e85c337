"""Preprocessing steps (gantrace.preprocess) and their use by every feature extractor."""

import json

import numpy as np
import pytest

from gantrace import io
from gantrace.data import shards
from gantrace.errors import ConfigError
from gantrace.features import apply_region, build_extractor, extract_shard
from gantrace.imaging import otsu_threshold
from gantrace.preprocess import PREPROCESSORS, build_preprocessor


def _ct_like(n=2, size=64, seed=0):
    """Low-contrast images: a smooth blob on a dim background plus noise (grey 60..140)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = 40 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        out.append(80 + blob + rng.normal(0, 6, (size, size)))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_registry_names():
    assert set(PREPROCESSORS) == {"none", "opening", "binarise", "histeq", "laplacian", "contrast"}
    images = _ct_like()
    for name in PREPROCESSORS:
        out = build_preprocessor(name).transform(images)
        assert out.dtype == np.uint8 and out.shape == images.shape
        np.testing.assert_array_equal(out, build_preprocessor(name).transform(images))
    np.testing.assert_array_equal(build_preprocessor("none").transform(images), images)
    np.testing.assert_array_equal(build_preprocessor(None).transform(images), images)


def test_histeq_flattens_the_histogram():
    images = _ct_like()
    out = build_preprocessor("histeq").transform(images)
    for before, after in zip(images, out, strict=True):
        assert np.ptp(before) < 140 and after.min() == 0 and after.max() == 255
        # the empirical CDF of the output is close to the identity line
        cdf = np.cumsum(np.bincount(after.ravel(), minlength=256)) / after.size
        assert np.abs(cdf - np.arange(1, 257) / 256).max() < 0.05
        before_cdf = np.cumsum(np.bincount(before.ravel(), minlength=256)) / before.size
        assert np.abs(before_cdf - np.arange(1, 257) / 256).max() > 0.3
        # monotone: the grey-level order is kept
        order = np.argsort(before.ravel(), kind="stable")
        assert (np.diff(after.ravel()[order].astype(int)) >= 0).all()
    const = np.full((1, 16, 16), 77, np.uint8)
    np.testing.assert_array_equal(build_preprocessor("histeq").transform(const), const)


def test_binarise_otsu_and_fixed():
    rng = np.random.default_rng(1)
    image = np.where(rng.random((64, 64)) < 0.3, 200, 50).astype(np.uint8)
    image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    t = otsu_threshold(image)
    assert 70 <= t <= 180  # between the two modes
    out = build_preprocessor("binarise").transform(image)[0]
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(out == 255, image > 125)  # the modes never reach 125
    fixed = build_preprocessor({"name": "binarise", "threshold": 210}).transform(image)[0]
    assert set(np.unique(fixed)) <= {0, 255}
    np.testing.assert_array_equal(fixed == 255, image > 210)


def test_opening_removes_small_bright_speck_keeps_blob():
    image = np.full((1, 40, 40), 20, np.uint8)
    image[0, 5, 5] = 250  # 1x1 speck
    image[0, 20:32, 20:32] = 200  # 12x12 blob
    for shape in ("square", "disk"):
        out = build_preprocessor({"name": "opening", "size": 5, "shape": shape}).transform(image)
        assert out[0, 5, 5] == 20
        np.testing.assert_array_equal(out[0, 22:30, 22:30], 200)
        assert out[0, 20, 20] == (200 if shape == "square" else 20)  # a disk rounds corners
        assert (out <= image).all()  # opening is anti-extensive


def test_laplacian_zero_on_flat_large_at_edge():
    const = np.full((1, 32, 32), 128, np.uint8)
    lap = build_preprocessor("laplacian").transform(const)
    assert lap.max() == 0
    step = np.zeros((1, 32, 32), np.uint8)
    step[:, :, 16:] = 200
    out = build_preprocessor("laplacian").transform(step)[0]
    assert out[:, 15:17].min() == 50  # |0 - 200| / 4 on both sides of the edge
    assert out[:, :14].max() == 0 and out[:, 18:].max() == 0
    stretched = build_preprocessor({"name": "laplacian", "rescale": "max"}).transform(step)[0]
    assert stretched.max() == 255
    log = build_preprocessor({"name": "laplacian", "sigma": 1.5, "rescale": "max"})
    assert log.transform(step)[0][:, 14:18].mean() > log.transform(step)[0][:, :8].mean() + 50


def test_contrast_stretch_and_gamma():
    images = _ct_like()
    out = build_preprocessor("contrast").transform(images)
    for before, after in zip(images, out, strict=True):
        assert after.min() == 0 and after.max() == 255
        assert (after == 0).mean() == pytest.approx(0.01, abs=0.01)  # 1st percentile
        assert after.std() > 2 * before.std()
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))[None]
    dark = {"name": "contrast", "low": None, "high": None, "gamma": 2.0}
    g = build_preprocessor(dark).transform(ramp)[0, 0]
    assert g[0] == 0 and g[255] == 255 and g[128] == round(255 * (128 / 255) ** 2)


def test_steps_apply_in_order():
    images = _ct_like()
    a = build_preprocessor(["histeq", "binarise"]).transform(images)
    b = build_preprocessor("binarise").transform(build_preprocessor("histeq").transform(images))
    np.testing.assert_array_equal(a, b)
    spec = build_preprocessor(["none", {"name": "opening", "size": 3}, "histeq"]).spec()
    assert spec == [{"name": "opening", "size": 3, "shape": "square"}, {"name": "histeq"}]
    assert build_preprocessor(spec).spec() == spec  # canonical form round-trips


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("histeqq", "did you mean 'histeq'"),
        ({"name": "opening", "size": 0}, "size"),
        ({"name": "binarise", "threshold": 300}, "threshold"),
        ({"name": "contrast", "low": 90, "high": 10}, "low"),
        ({"name": "laplacian", "sigmaa": 1}, "sigmaa"),
        ([{"size": 3}], "name"),
    ],
)
def test_bad_specs_name_the_config_key(spec, match):
    with pytest.raises(ConfigError, match=match) as err:
        build_extractor({"name": "pixels", "preprocess": spec}, key="features.px")
    assert "features.px.preprocess" in str(err.value)


def test_extractor_applies_preprocess_and_records_it():
    images = _ct_like(3)
    plain = build_extractor({"name": "pixels", "size": 8})
    eq = build_extractor({"name": "pixels", "size": 8, "preprocess": "histeq"})
    assert not np.allclose(plain.transform(images), eq.transform(images))
    expected = plain.transform(build_preprocessor("histeq").transform(images))
    np.testing.assert_array_equal(eq.transform(images), expected)  # applied exactly once
    assert eq.provenance()["preprocess"] == [{"name": "histeq"}]
    assert plain.provenance()["preprocess"] == []
    torch_ext = {"name": "torchvision", "arch": "resnet18", "input_size": 32}
    a = build_extractor(torch_ext).transform(images)
    b = build_extractor({**torch_ext, "preprocess": "histeq"}).transform(images)
    assert a.shape == b.shape and not np.allclose(a, b)


@pytest.mark.parametrize(
    "extractor",
    [
        {"name": "pixels", "size": 8},
        {"name": "vit_mae", "size": "tiny", "input_size": 32},
    ],
    ids=["pixels", "vit_mae"],
)
def test_shard_runner_preprocesses_before_region_once(tmp_path, extractor):
    images = _ct_like(5, 32, seed=2)
    masks = np.zeros(images.shape, bool)
    masks[:, 8:24, 4:20] = True
    ids = [f"im{i}" for i in range(5)]
    shards.write_images(tmp_path / "im.h5", ids, images)
    shards.write_masks(tmp_path / "m.h5", ids, masks)
    spec = {**extractor, "preprocess": ["histeq", {"name": "opening", "size": 3}], "batch_size": 2}
    workers = 1 if extractor["name"] == "pixels" else 0  # preprocessing in a worker too
    extract_shard(
        tmp_path / "im.h5", tmp_path / "m.h5", "lung", spec, tmp_path / "f.h5", num_workers=workers
    )
    _, feats, attrs = io.read_features(tmp_path / "f.h5")
    ext = build_extractor(spec)
    np.testing.assert_allclose(feats, ext.transform(images, masks, "lung"), rtol=1e-5, atol=1e-6)
    by_hand = build_preprocessor(spec["preprocess"]).transform(images)
    expected = build_extractor(extractor).transform(apply_region(by_hand, masks, "lung"))
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    recorded = json.loads(attrs["preprocess"])
    assert [step["name"] for step in recorded] == ["histeq", "opening"]
    assert json.loads(attrs["spec"])["preprocess"] == recorded
