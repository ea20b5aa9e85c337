"""Feature extractors, region masking and streaming shard extraction."""

import io as _io
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gantrace import io
from gantrace.data import shards
from gantrace.data.loader import ShardDataset
from gantrace.data.shards import chunk_cache_bytes
from gantrace.errors import ConfigError, ImageError, WeightsError
from gantrace.features import (
    FEATURES,
    REGIONS,
    apply_region,
    build_extractor,
    extract_shard,
    noise_residual,
)

TINY_DINO = {
    "name": "dinov2",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 8,
    "image_size": 32,
    "input_size": 32,
}
SMALL_SPECS = {
    "pixels": {"name": "pixels", "size": 8},
    "lbp": {"name": "lbp"},
    "spectrum": {"name": "spectrum", "n_bins": 16},
    "dct": {"name": "dct"},
    "residual": {"name": "residual", "crop": 32},
    "phase_residual": {"name": "phase_residual"},
    "torchvision": {"name": "torchvision", "arch": "resnet18", "input_size": 64},
    "dinov2": TINY_DINO,
    "efficientnet_lite0": {"name": "efficientnet_lite0", "weights": "none", "input_size": 64},
}


def _images(n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8)


# -- registry and specs --------------------------------------------------------------------------


def test_registry_every_name_builds_and_transforms():
    assert set(SMALL_SPECS) <= set(FEATURES)  # the others: test_extractors_catalogue.py
    images = _images(3, 64)
    for name, spec in SMALL_SPECS.items():
        ext = build_extractor(spec)
        assert ext.name == name and isinstance(ext, FEATURES[name])
        assert ext.batch_size >= 1 and isinstance(ext.uses_torch, bool)
        feats = ext.transform(images)
        assert feats.dtype == np.float32 and feats.shape[0] == 3 and feats.shape[1] > 0
        assert np.isfinite(feats).all()
        prov = ext.provenance()
        assert prov["extractor"] == name and "numpy" in prov["versions"]
        json.dumps(prov)  # goes to HDF5 attrs as JSON


def test_unknown_extractor_is_config_error():
    with pytest.raises(ConfigError, match="nosuchnet") as err:
        build_extractor({"name": "nosuchnet"})
    assert "pixels" in str(err.value) and "torchvision" in str(err.value)
    with pytest.raises(ConfigError, match="extractor"):
        build_extractor({"size": 3})


def test_misspelt_key_is_config_error():
    with pytest.raises(ConfigError, match="sise") as err:
        build_extractor({"name": "pixels", "sise": 16})
    assert "'size'" in str(err.value)
    with pytest.raises(ConfigError, match="densenet12'"):
        build_extractor({"name": "torchvision", "arch": "densenet12"})
    with pytest.raises(ConfigError, match="input_size"):
        build_extractor({"name": "torchvision", "input_size": 0})
    with pytest.raises(ConfigError, match="denoise"):
        build_extractor({"name": "spectrum", "denoise": "wiener"})


# -- weight-free extractors -----------------------------------------------------------------------


def test_pixels_downsample_by_hand():
    const = np.full((1, 256, 256), 51, np.uint8)
    out = build_extractor({"name": "pixels"}).transform(const)
    assert out.shape == (1, 32 * 32)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)

    grad = np.tile(np.arange(256, dtype=np.uint8), (256, 1))[None]  # pixel value = column
    out = build_extractor({"name": "pixels", "size": 32}).transform(grad).reshape(32, 32)
    expected = (8 * np.arange(32) + 3.5) / 255  # mean of columns 8k .. 8k+7
    np.testing.assert_allclose(out, np.tile(expected, (32, 1)), atol=1e-6)

    # sizes that do not divide the image use area pooling too
    out = build_extractor({"name": "pixels", "size": 24}).transform(const)
    assert out.shape == (1, 24 * 24)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)


def test_lbp_histograms():
    flat = np.full((1, 64, 64), 90, np.uint8)
    textured = _images(1, 64, seed=3)
    ext = build_extractor({"name": "lbp"})
    hf, ht = ext.transform(flat)[0], ext.transform(textured)[0]
    assert hf.shape == (10,)
    assert hf.sum() == pytest.approx(1.0) and ht.sum() == pytest.approx(1.0)
    assert hf[8] > 0.9  # flat: every neighbour >= centre -> code P (all but the border)
    assert np.abs(hf - ht).sum() > 0.5

    multi = build_extractor({"name": "lbp", "scales": [[8, 1], [16, 2]]})
    h = multi.transform(textured)[0]
    assert h.shape == (10 + 18,)
    assert h[:10].sum() == pytest.approx(1.0) and h[10:].sum() == pytest.approx(1.0)


def test_spectrum_residual_of_constant_is_zero():
    const = np.full((2, 64, 64), 123, np.uint8)
    for denoise in ("gaussian", "median"):
        assert np.abs(noise_residual(const, denoise=denoise)).max() < 1e-6


def test_spectrum_detects_planted_checkerboard():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :128]
    clean = 100 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 2, (128, 128))
    board = 6.0 * ((yy + xx) % 2 * 2 - 1)  # period-2 checkerboard
    clean8 = np.clip(clean, 0, 255).astype(np.uint8)[None]
    planted = np.clip(clean + board, 0, 255).astype(np.uint8)[None]
    for denoise in ("gaussian", "median"):
        ext = build_extractor({"name": "spectrum", "n_bins": 32, "denoise": denoise})
        fc, fp = ext.transform(clean8)[0], ext.transform(planted)[0]
        assert fc.shape == (32,) and fc.dtype == np.float32
        rise = fp - fc
        assert rise[-1] > 5.0  # the corner frequency (0.5, 0.5) lights up ...
        assert rise[-1] > np.abs(rise[:-3]).max() + 3.0  # ... far more than any other ring
        if denoise == "gaussian":  # a linear residual leaves the other frequencies alone
            assert np.abs(rise[:-1]).max() < 0.05

    grid = build_extractor({"name": "spectrum", "n_bins": 16, "grid": 4})
    g = grid.transform(np.concatenate([clean8, planted]))
    assert g.shape == (2, 16 + 16)
    # the checkerboard (fy = -0.5, fx = 0.5) sits in grid row 0, column 3
    rise = g[1, 16:] - g[0, 16:]
    assert rise.argmax() == 3 and rise[3] > 3.0


# -- deep extractors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "dim"), [("densenet121", 1024), ("resnet18", 512)])
def test_torchvision_random_init_deterministic(arch, dim):
    images = _images(3, 80)
    spec = {"name": "torchvision", "arch": arch, "input_size": 64, "seed": 7}
    a = build_extractor(spec).transform(images)
    b = build_extractor(spec).transform(images)
    assert a.shape == (3, dim) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])
    if arch == "resnet18":  # (cheaper than densenet121 for the remaining checks)
        c = build_extractor({**spec, "seed": 8}).transform(images)
        assert not np.allclose(a, c)
        small = build_extractor({**spec, "batch_size": 2}).transform(images)
        np.testing.assert_allclose(a, small, rtol=1e-4, atol=1e-5)  # batching changes nothing


def test_torchvision_head_removal_other_families():
    images = _images(2, 64)
    for arch, dim in [("mobilenet_v2", 1280), ("vgg11", 512), ("efficientnet_b0", 1280)]:
        spec = {"name": "torchvision", "arch": arch, "input_size": 64}
        assert build_extractor(spec).transform(images).shape == (2, dim)


def test_dinov2_tiny_random_init():
    images = _images(3, 48)
    a = build_extractor(TINY_DINO).transform(images)
    b = build_extractor(TINY_DINO).transform(images)
    assert a.shape == (3, 2 * 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])


def test_local_state_dict_is_loaded(tmp_path):
    images = _images(2, 64)
    spec = {"name": "torchvision", "arch": "resnet18", "input_size": 64, "seed": 1}
    source = build_extractor(spec)
    path = tmp_path / "resnet18.pth"
    head = {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save({"state_dict": {**source.model.state_dict(), **head}}, path)
    loaded = build_extractor({**spec, "seed": 2, "weights": str(path)})
    np.testing.assert_allclose(loaded.transform(images), source.transform(images), rtol=1e-5)
    assert loaded.provenance()["weights"] == f"file:{path}"

    from safetensors.torch import save_file

    st = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(st))
    loaded = build_extractor({**spec, "seed": 3, "weights": str(st)})
    np.testing.assert_allclose(loaded.transform(images), source.transform(images), rtol=1e-5)

    wrong = tmp_path / "wrong.pth"
    torch.save({"conv9.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="wrong.pth"):
        build_extractor({**spec, "weights": str(wrong)}).transform(images)


def test_pretrained_weights_offline_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="fetch_weights") as err:
        build_extractor({"name": "torchvision", "arch": "densenet121", "weights": "imagenet"})
    msg = str(err.value)
    assert "densenet121" in msg and str(tmp_path / "torch") in msg and "densenet121-" in msg
    with pytest.raises(WeightsError, match="fetch_weights") as err:
        build_extractor({"name": "dinov2", "weights": "imagenet"})
    assert "facebook/dinov2-small" in str(err.value)
    with pytest.raises(WeightsError, match="facebook/dinov2-base"):
        build_extractor({"name": "dinov2", "weights": "facebook/dinov2-base"})
    assert time.perf_counter() - t0 < 10


def test_cached_pretrained_weights_are_used(tmp_path, monkeypatch):
    """With the checkpoint in the torch / Hugging Face cache, "imagenet" loads it offline."""
    from gantrace.torch_env import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision
    from transformers import Dinov2Config, Dinov2Model

    images = _images(2, 64)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    full = torchvision.models.resnet18()  # stands in for the downloaded ImageNet checkpoint
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(full.state_dict(), ckpt)
    spec = {"name": "torchvision", "arch": "resnet18", "input_size": 64}
    ext = build_extractor({**spec, "weights": "imagenet"})
    assert ext.provenance()["weights"] == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    local = build_extractor({**spec, "weights": str(ckpt), "seed": 5})  # full dict, head ignored
    np.testing.assert_allclose(ext.transform(images), local.transform(images), rtol=1e-5)

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    cfg = {k: TINY_DINO[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")}
    torch.manual_seed(0)
    tiny = Dinov2Model(Dinov2Config(**cfg, patch_size=8, image_size=32))
    repo = tmp_path / "hf" / "hub" / "models--facebook--dinov2-small"
    tiny.save_pretrained(repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    spec = {"name": "dinov2", "input_size": 32}
    hub = build_extractor({**spec, "weights": "imagenet"}).transform(images)
    local = build_extractor({**spec, "weights": str(repo / "snapshots" / "0123abc")})
    assert hub.shape == (2, 64)
    np.testing.assert_allclose(hub, local.transform(images), rtol=1e-5, atol=1e-6)


def test_missing_local_weights_named(tmp_path):
    missing = tmp_path / "nowhere" / "model.pth"
    with pytest.raises(WeightsError, match="nowhere/model.pth"):
        build_extractor({"name": "torchvision", "arch": "resnet18", "weights": str(missing)})
    with pytest.raises(WeightsError, match="nowhere/dino"):
        build_extractor({"name": "dinov2", "weights": str(tmp_path / "nowhere" / "dino")})


# -- regions --------------------------------------------------------------------------------------


def test_apply_region_semantics():
    images = np.arange(1, 2 * 4 * 4 + 1, dtype=np.uint8).reshape(2, 4, 4)
    masks = np.zeros((2, 4, 4), bool)
    masks[:, 1:3, 1:3] = True
    assert REGIONS == ("full", "lung", "outer")
    np.testing.assert_array_equal(apply_region(images, masks, "full"), images)
    np.testing.assert_array_equal(apply_region(images, None, "full"), images)
    lung = apply_region(images, masks, "lung")
    outer = apply_region(images, masks, "outer")
    assert lung.dtype == np.uint8 and outer.dtype == np.uint8
    np.testing.assert_array_equal(lung[masks], images[masks])
    assert (lung[~masks] == 0).all()
    np.testing.assert_array_equal(outer[~masks], images[~masks])
    assert (outer[masks] == 0).all()
    np.testing.assert_array_equal(lung + outer, images)
    assert images.min() > 0  # the input was not modified
    with pytest.raises(ConfigError, match="lung"):
        apply_region(images, None, "lung")
    with pytest.raises(ConfigError, match="outer"):
        apply_region(images, None, "outer")
    with pytest.raises(ConfigError, match="region"):
        apply_region(images, masks, "lungs")


# -- streaming shard extraction -------------------------------------------------------------------


@pytest.fixture
def shard(tmp_path):
    n, size = 10, 64
    images = _images(n, size, seed=5)
    masks = np.zeros((n, size, size), bool)
    masks[:, 16:48, 8:40] = True
    ids = [f"img_{(7 * i) % n:03d}" for i in range(n)]  # deliberately not sorted
    shards.write_images(tmp_path / "shard.h5", ids, images)
    shards.write_masks(tmp_path / "masks.h5", ids, masks)
    return tmp_path, ids, images, masks


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "spectrum", "n_bins": 16, "batch_size": 4},
        {"name": "torchvision", "arch": "resnet18", "input_size": 32, "batch_size": 4},
    ],
    ids=["spectrum", "resnet18"],
)
def test_extract_shard_writes_features(shard, spec):
    tmp, ids, images, masks = shard
    expected = build_extractor(spec).transform(apply_region(images, masks, "lung"))
    results = []
    for workers in (0, 1):
        out = tmp / f"feat_{workers}.h5"
        log = _io.StringIO()
        stats = extract_shard(
            tmp / "shard.h5",
            tmp / "masks.h5",
            "lung",
            spec,
            out,
            device="cpu",
            num_workers=workers,
            log=log,
        )
        assert stats["n_images"] == len(ids) and stats["images_per_s"] > 0
        assert "images/s" in log.getvalue()
        got_ids, feats, attrs = io.read_features(out)
        assert got_ids == ids
        assert attrs["extractor"] == spec["name"] and attrs["region"] == "lung"
        assert attrs["device"] == "cpu" and json.loads(attrs["spec"])["batch_size"] == 4
        assert "weights" in attrs and "versions" in attrs
        results.append(feats)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], expected, rtol=1e-4, atol=1e-5)


def test_extract_shard_regions_and_errors(shard):
    tmp, ids, images, masks = shard
    spec = {"name": "pixels", "size": 8, "batch_size": 3}
    feats = {}
    for region in ("full", "outer"):
        masks_h5 = None if region == "full" else tmp / "masks.h5"
        extract_shard(tmp / "shard.h5", masks_h5, region, spec, tmp / f"{region}.h5")
        feats[region] = io.read_features(tmp / f"{region}.h5")[1]
    ext = build_extractor(spec)
    np.testing.assert_allclose(feats["full"], ext.transform(images), atol=1e-6)
    np.testing.assert_allclose(
        feats["outer"], ext.transform(apply_region(images, masks, "outer")), atol=1e-6
    )
    with pytest.raises(ConfigError, match="lung"):
        extract_shard(tmp / "shard.h5", None, "lung", spec, tmp / "x.h5")
    with pytest.raises(ConfigError, match="nosuch"):
        extract_shard(tmp / "shard.h5", None, "full", {"name": "nosuch"}, tmp / "x.h5")
    shards.write_masks(tmp / "other.h5", ids[::-1], masks)
    with pytest.raises(ImageError, match="other.h5"):
        extract_shard(tmp / "shard.h5", tmp / "other.h5", "lung", spec, tmp / "x.h5")
    assert not (tmp / "x.h5").exists()


def _spy_reads(monkeypatch):
    """Record (rows, served zero-copy from the mapped shard, bytes) per batch read of images."""
    reads = []
    read = ShardDataset._read

    def spy(self, dataset, index, reuse=False, mapped=None):
        rows = read(self, dataset, index, reuse, mapped)
        if dataset.name == "/images":
            shared = mapped is not None and np.shares_memory(rows, mapped.rows)
            reads.append((slice(int(index[0]), int(index[-1]) + 1), shared, rows.nbytes))
        return rows

    monkeypatch.setattr(ShardDataset, "_read", spy)
    return reads


def test_extract_shard_streams_in_batches(shard, monkeypatch):
    """The shard is read one batch-sized run at a time, never whole: weight-free features are
    computed on views of the mapped rows; a torch batch leaves the worker, so it is a copy."""
    tmp, _, images, _ = shard
    reads = _spy_reads(monkeypatch)
    for name in ("pixels", "torchvision"):
        reads.clear()
        spec = {**SMALL_SPECS[name], "batch_size": 4}
        extract_shard(tmp / "shard.h5", None, "full", spec, tmp / f"{name}.h5")
        runs = [(0, 4), (4, 8), (8, 10)]
        want = [(slice(a, b), name == "pixels", (b - a) * images[0].nbytes) for a, b in runs]
        assert reads == want


def test_contiguous_chunked_and_older_gzip_shards_give_the_same_features(shard, monkeypatch):
    """Image shards are stored uncompressed and contiguous (recorded in their attributes) and
    read through a memory map; uncompressed chunked and gzip shards of older versions still
    read (copied, the gzip one through its chunk cache) to the same features, masks too."""
    tmp, ids, images, masks = shard
    io.write_array_h5(tmp / "old.h5", "images", ids, images, compression="gzip")
    with h5py.File(tmp / "chunked.h5", "w") as h5:  # the layout of 0.x image shards
        h5.create_dataset("images", data=images, chunks=(4, *images.shape[1:]))
        h5.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    reads = _spy_reads(monkeypatch)
    spec = {"name": "pixels", "size": 8, "batch_size": 3}
    feats, caches, mapped = {}, {}, {}
    for name in ("shard", "chunked", "old"):
        with h5py.File(tmp / f"{name}.h5", "r") as h5:
            assert h5["images"].compression == (None if name != "old" else "gzip")
            assert (h5["images"].chunks is None) == (name == "shard")
            caches[name] = chunk_cache_bytes(h5["images"], 3)
        reads.clear()
        extract_shard(tmp / f"{name}.h5", tmp / "masks.h5", "lung", spec, tmp / f"{name}_f.h5")
        feats[name] = io.read_features(tmp / f"{name}_f.h5")[1]
        mapped[name] = {r[1] for r in reads}
    assert io.read_array_h5(tmp / "shard.h5", "images")[2]["compression"] == "none"
    assert caches == {"shard": 0, "chunked": 0, "old": caches["old"]} and caches["old"] > 0
    assert mapped == {"shard": {True}, "chunked": {False}, "old": {False}}
    np.testing.assert_array_equal(feats["shard"], feats["old"])
    np.testing.assert_array_equal(feats["shard"], feats["chunked"])
    want = build_extractor(spec).transform(images, masks, "lung")
    np.testing.assert_array_equal(feats["shard"], want)


def test_mapped_rows_are_read_only_views(shard):
    """`map_rows` maps only what it can serve without a copy; its rows cannot be written, and
    released rows read the same again."""
    tmp, _, images, _ = shard
    with h5py.File(tmp / "shard.h5", "r") as h5:
        mapped = shards.map_rows(h5["images"])
    np.testing.assert_array_equal(mapped.rows, images)  # still valid after the file is closed
    with pytest.raises(ValueError, match="read-only"):
        mapped.rows[0, 0, 0] = 1
    mapped.release(0, len(images))
    np.testing.assert_array_equal(mapped.rows, images)
    with h5py.File(tmp / "masks.h5", "r") as h5:
        assert shards.map_rows(h5["masks"]) is None  # gzip
    shards.write_images(tmp / "empty.h5", [], np.zeros((0, 8, 8), np.uint8))
    with h5py.File(tmp / "empty.h5", "r") as h5:
        assert shards.map_rows(h5["images"]) is None


def _file_rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_mapped_shard_is_not_held_in_memory(tmp_path, monkeypatch):
    """Streaming a mapped 64 MB shard keeps about one batch of it resident, not the whole."""
    images = np.random.default_rng(0).integers(0, 256, (1024, 256, 256), dtype=np.uint8)
    shards.write_images(tmp_path / "big.h5", [f"i{i:04d}" for i in range(len(images))], images)
    spec = {"name": "pixels", "size": 8, "batch_size": 32}
    shards.write_images(tmp_path / "warm.h5", ["a"], images[:1])
    extract_shard(tmp_path / "warm.h5", None, "full", spec, tmp_path / "w.h5")  # loads code
    del images
    resident = []
    extract = FEATURES["pixels"].extract

    def spy(self, batch):
        resident.append(_file_rss_kb())
        return extract(self, batch)

    monkeypatch.setattr(FEATURES["pixels"], "extract", spy)
    before = _file_rss_kb()
    extract_shard(tmp_path / "big.h5", None, "full", spec, tmp_path / "f.h5")
    grown_mb = (max(resident) - before) / 1024
    assert len(resident) == 32 and grown_mb < 16, f"resident set grew by {grown_mb:.0f} MB"


def test_extract_shard_empty(tmp_path):
    shards.write_images(tmp_path / "empty.h5", [], np.zeros((0, 32, 32), np.uint8))
    stats = extract_shard(
        tmp_path / "empty.h5", None, "full", {"name": "pixels", "size": 4}, tmp_path / "f.h5"
    )
    ids, feats, _ = io.read_features(tmp_path / "f.h5")
    assert stats["n_images"] == 0 and ids == [] and feats.shape == (0, 16)
