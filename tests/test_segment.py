"""Lung segmentation: classical pseudo-masks, Dice, the U-Net wrapper and its data plumbing."""

import io

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from gantrace.data.loader import ShardDataset
from gantrace.data.shards import read_masks, write_images
from gantrace.errors import ConfigError, GantraceError
from gantrace.evaluation.metrics import dice
from gantrace.imaging import otsu_threshold
from gantrace.segmentation.pseudo import pseudo_masks
from gantrace.segmentation.unet import LungUNet, training_pairs

# Small enough to fit in seconds on two CPU cores, big enough to learn the phantoms.
TINY = dict(
    encoder_depth=2,
    decoder_channels=(16, 8),
    input_size=64,
    epochs=6,
    batch_size=8,
    lr=5e-3,
    seed=3,
    device="cpu",
)


def phantoms(n, size=128, seed=0):
    """Axial-slice stand-ins: grey elliptical body on black air, two dark lungs, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.zeros((n, size, size), np.uint8)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        cy, cx = 0.5 + rng.uniform(-0.04, 0.04, 2)
        by, bx = rng.uniform(0.30, 0.38), rng.uniform(0.40, 0.46)
        body = ((yy - cy) / by) ** 2 + ((xx - cx) / bx) ** 2 <= 1
        wall = ((yy - cy) / (by - 0.04)) ** 2 + ((xx - cx) / (bx - 0.04)) ** 2 <= 1
        lungs = np.zeros_like(body)
        for side in (-1, 1):
            ry, rx = rng.uniform(0.17, 0.24), rng.uniform(0.10, 0.15)
            oy, ox = cy + rng.uniform(-0.03, 0.03), cx + side * rng.uniform(0.17, 0.22)
            lungs |= ((yy - oy) / ry) ** 2 + ((xx - ox) / rx) ** 2 <= 1
        lungs &= wall
        img = np.where(body, rng.uniform(110, 150), 0.0)
        img = np.where(lungs, rng.uniform(15, 40), img)
        img += rng.normal(0, 8, img.shape) * body
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
        masks[i] = lungs
    return images, masks


@pytest.fixture(scope="module")
def data():
    return phantoms(48, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    images, masks = data
    log = io.StringIO()
    model = LungUNet(**TINY).fit(images, masks, log=log)
    return model, log.getvalue()


# -- classical masks ---------------------------------------------------------------------------


def test_pseudo_masks_recover_synthetic_lungs():
    images, masks = phantoms(8, size=256, seed=5)
    pred = pseudo_masks(images)
    assert pred.dtype == bool and pred.shape == images.shape
    scores = dice(pred, masks)
    assert scores.min() > 0.9, scores


def test_pseudo_masks_ignore_air_outside_body_and_blank_slices():
    images, masks = phantoms(2, size=128, seed=6)
    images[1] = 0  # nothing but air: no body, no lungs
    pred = pseudo_masks(images)
    assert not pred[1].any()
    assert dice(pred[:1], masks[:1])[0] > 0.9
    # the dark air around the body is never called lung
    assert not (pred[0] & (images[0] < 5) & ~masks[0]).any()


def test_batched_otsu_matches_skimage():
    from skimage.filters import threshold_otsu

    images, _ = phantoms(5, size=64, seed=8)
    np.testing.assert_array_equal(
        otsu_threshold(images, chunk=2), [threshold_otsu(i) for i in images]
    )
    body = images > 60
    np.testing.assert_array_equal(
        otsu_threshold(images, within=body, chunk=3),
        [threshold_otsu(i[b]) for i, b in zip(images, body, strict=True)],
    )


def test_dice_on_hand_made_masks():
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2] = True  # 8 pixels
    b[0, 1:3] = True  # 8 pixels, 4 shared -> 2*4/16
    a[1, 0, 0] = True  # prediction where truth is empty -> 0
    scores = dice(a, b)
    np.testing.assert_allclose(scores, [0.5, 0.0, 1.0])
    assert dice(b[:1], b[:1])[0] == 1.0
    with pytest.raises(ValueError):
        dice(a, b[:2])


# -- U-Net -------------------------------------------------------------------------------------


def test_fit_learns_lungs(fitted, data):
    model, log = fitted
    m = model.metrics_
    assert m["n_train"] + m["n_val"] == 48 and m["n_val"] == round(48 * 0.2)
    assert m["val_dice"] > 0.8, m
    assert len(m["loss_history"]) == TINY["epochs"]
    assert m["loss_history"][-1] < m["loss_history"][0]
    assert log.count("segment epoch") == TINY["epochs"] and "val_dice" in log and "img/s" in log
    # the all-background baseline the network has to beat
    images, masks = data
    assert dice(np.zeros_like(masks), masks).mean() == 0.0


def test_predict_shape_dtype_and_new_images(fitted):
    model, _ = fitted
    images, masks = phantoms(6, size=96, seed=9)  # another size than trained on
    pred = model.predict(images, batch_size=4)
    assert pred.dtype == bool and pred.shape == images.shape
    assert dice(pred, masks).mean() > 0.75


def test_fit_is_deterministic_on_cpu(data):
    images, masks = data[0][:16], data[1][:16]
    cfg = dict(TINY, epochs=1)  # two optimiser steps: enough to expose any nondeterminism
    a = LungUNet(**cfg).fit(images, masks)
    b = LungUNet(**cfg).fit(images, masks)
    sa, sb = a.model_.state_dict(), b.model_.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metrics_["loss_history"] == b.metrics_["loss_history"]
    np.testing.assert_array_equal(a.predict(images), b.predict(images))
    c = LungUNet(**dict(cfg, seed=4)).fit(images, masks)
    assert not all(torch.equal(sa[k], c.model_.state_dict()[k]) for k in sa)


def test_save_load_roundtrip(fitted, data, tmp_path):
    model, _ = fitted
    path = tmp_path / "models" / "lung_unet.safetensors"
    model.save(path)
    assert path.is_file() and path.with_name(path.name + ".json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    loaded = LungUNet.load(path, device="cpu")
    assert loaded.get_params() == dict(model.get_params(), device="cpu")
    assert loaded.metrics_ == model.metrics_
    images = data[0][:10]
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    # pruned encoder: resnet18's idle layer3/layer4 are not stored
    assert path.stat().st_size < 5_000_000


def test_load_missing_or_corrupt_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(GantraceError, match="nope.safetensors"):
        LungUNet.load(missing)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(GantraceError, match="bad.safetensors"):
        LungUNet.load(bad)


def test_bad_params_and_unfitted_use():
    with pytest.raises(ConfigError, match="segmentation.input_size"):
        LungUNet(input_size=100)  # not a multiple of 2**3
    with pytest.raises(ConfigError, match="segmentation.decoder_channels"):
        LungUNet(encoder_depth=2, decoder_channels=(64, 32, 16))
    with pytest.raises(GantraceError, match="not fitted"):
        LungUNet().predict(np.zeros((1, 64, 64), np.uint8))


def test_predict_shard_writes_masks_aligned_with_ids(fitted, tmp_path, monkeypatch):
    model, _ = fitted
    images, _ = phantoms(11, size=128, seed=12)
    images[4] = 0  # a blank slice: its mask must stay empty
    ids = [f"img_{k:03d}" for k in (7, 3, 10, 0, 5, 9, 1, 8, 2, 6, 4)]
    shard = tmp_path / "images_000.h5"
    write_images(shard, ids, images)
    reads = []
    read = ShardDataset._read

    def spy(self, dataset, index, reuse=False, mapped=None):
        reads.append((int(index[0]), int(index[-1]) + 1))
        return read(self, dataset, index, reuse, mapped)

    monkeypatch.setattr(ShardDataset, "_read", spy)
    monkeypatch.setattr(model, "batch_size", 4)  # several batches, streamed one at a time
    out = tmp_path / "masks" / "masks_000.h5"
    log = io.StringIO()
    stats = model.predict_shard(shard, out, attrs={"shard": 0}, log=log)
    assert reads == [(0, 4), (4, 8), (8, 11)]
    got_ids, got = read_masks(out)
    assert got_ids == ids
    np.testing.assert_array_equal(got, model.predict(images))
    # a DataLoader worker process reads the batches: the same masks
    model.predict_shard(shard, tmp_path / "workers.h5", num_workers=1)
    np.testing.assert_array_equal(read_masks(tmp_path / "workers.h5")[1], got)
    assert not got[4].any() and got[0].any()
    assert stats["n_images"] == 11 and stats["n_empty"] >= 1
    assert 0 < stats["mean_lung_fraction"] < 0.5
    with h5py.File(out, "r") as h5:
        assert h5.attrs["shard"] == 0 and h5.attrs["segmenter"] == "LungUNet"
    assert "images_000.h5" in log.getvalue()
    with pytest.raises(GantraceError, match="missing.h5"):
        model.predict_shard(tmp_path / "missing.h5", tmp_path / "x.h5")


# -- training data -----------------------------------------------------------------------------


def _two_shards(tmp_path):
    images, masks = phantoms(6, size=64, seed=21)
    ids = [f"case{k}" for k in range(6)]
    write_images(tmp_path / "a.h5", ids[:4], images[:4])
    write_images(tmp_path / "b.h5", ids[4:], images[4:])
    return [tmp_path / "a.h5", tmp_path / "b.h5"], ids, images, masks


def test_training_pairs_from_mask_folder(tmp_path):
    shards, ids, images, masks = _two_shards(tmp_path)
    folder = tmp_path / "masks"
    folder.mkdir()
    for k, image_id in enumerate(ids):
        if image_id == "case2":
            continue  # no mask for this one: skipped
        Image.fromarray(masks[k].astype(np.uint8) * 255).save(folder / f"{image_id}.png")
    log = io.StringIO()
    got_ids, got_images, got_masks = training_pairs(shards, "folder", folder, log=log)
    keep = [0, 1, 3, 4, 5]
    assert got_ids == [ids[k] for k in keep]
    np.testing.assert_array_equal(got_images, images[keep])
    assert got_masks.dtype == bool
    np.testing.assert_array_equal(got_masks, masks[keep])
    assert "1 of 6" in log.getvalue()


def test_training_pairs_folder_errors(tmp_path):
    shards, *_ = _two_shards(tmp_path)
    empty = tmp_path / "no_masks_here"
    empty.mkdir()
    with pytest.raises(GantraceError, match="no_masks_here"):
        training_pairs(shards, "folder", empty)
    with pytest.raises(ConfigError, match="segmentation.mask_dir"):
        training_pairs(shards, "folder", None)
    with pytest.raises(ConfigError, match="segmentation.mask_source"):
        training_pairs(shards, "magic")


def test_training_pairs_from_threshold(tmp_path):
    shards, ids, images, masks = _two_shards(tmp_path)
    got_ids, got_images, got_masks = training_pairs(shards, "threshold")
    assert got_ids == ids
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_masks, pseudo_masks(images))
    assert dice(got_masks, masks).mean() > 0.9
