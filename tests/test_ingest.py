"""Ingest: stable shards, enumeration, one test per kind of bad file, the manifest gate."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gantrace.data.ingest import (
    BadImage,
    build_manifest,
    decode_image,
    image_table,
    ingest_shard,
)
from gantrace.data.shards import shard_of
from gantrace.errors import ConfigError, ImageError


def grey(path, size=256, value=None, seed=0):
    rng = np.random.default_rng(seed)
    arr = (
        rng.integers(0, 256, (size, size), dtype=np.uint8)
        if value is None
        else np.full((size, size), value, np.uint8)
    )
    Image.fromarray(arr, "L").save(path)
    return arr


def test_shards_are_stable_and_spread():
    ids = [f"img_{i:04d}" for i in range(400)]
    first = [shard_of(i, 4) for i in ids]
    assert first == [shard_of(i, 4) for i in ids]
    counts = np.bincount(first, minlength=4)
    assert counts.min() > 60  # roughly balanced
    # adding images does not move existing ones
    assert [shard_of(i, 4) for i in ids[:10]] == first[:10]


def test_decode_good_png_roundtrips(tmp_path):
    arr = grey(tmp_path / "a.png")
    out, info = decode_image(tmp_path / "a.png", 256)
    assert np.array_equal(out, arr) and info["mode"] == "L" and len(info["sha256"]) == 64


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, not a png"), "not an image"),
        (lambda p: Image.fromarray(np.zeros((256, 256), np.uint8)).save(p, "JPEG"), "JPEG data"),
        (lambda p: Image.fromarray(np.zeros((256, 256, 3), np.uint8), "RGB").save(p), "RGB"),
        (lambda p: Image.fromarray(np.zeros((256, 256, 4), np.uint8), "RGBA").save(p), "RGBA"),
        (lambda p: Image.fromarray(np.zeros((256, 256), np.uint8)).convert("P").save(p), "P image"),
        (lambda p: Image.fromarray(np.zeros((256, 256), np.uint16)).save(p), "16"),
        (lambda p: Image.fromarray(np.zeros((128, 128), np.uint8)).save(p), "size 128x128"),
    ],
)
def test_each_bad_file_has_a_reason(tmp_path, make, reason):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(BadImage, match=reason):
        decode_image(path, 256)


def test_truncated_png(tmp_path):
    grey(tmp_path / "t.png")
    raw = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadImage, match="truncated"):
        decode_image(tmp_path / "t.png", 256)


def test_pixel_limit_refuses_bombs(tmp_path):
    grey(tmp_path / "big.png", size=512, value=0)
    with pytest.raises(BadImage, match="max_pixels"):
        decode_image(tmp_path / "big.png", 256, max_pixels=256 * 256)


def test_conversions_only_when_allowed(tmp_path):
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[..., :] = 77
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    out, info = decode_image(tmp_path / "c.png", 256, conversions=["grey"])
    assert out.dtype == np.uint8 and out.max() == 77 and info["conversion"] == "RGB->L"
    arr16 = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(arr16).save(tmp_path / "w.png")
    out, info = decode_image(tmp_path / "w.png", 256, conversions=["16bit"])
    assert out.min() == 0 and out.max() == 255 and "min-max" in info["conversion"]
    grey(tmp_path / "s.png", size=128)
    out, info = decode_image(tmp_path / "s.png", 256, conversions=["resize"])
    assert out.shape == (256, 256) and "resize" in info["conversion"]


def _dataset(tmp_path):
    for r, role in enumerate(("generated", "real_used", "real_not_used")):
        (tmp_path / role).mkdir()
        for k in range(3):
            grey(tmp_path / role / f"{role}_{k}.png", seed=10 * r + k)
    return {
        "task": "membership",
        "generated": str(tmp_path / "generated"),
        "real_used": str(tmp_path / "real_used"),
        "real_not_used": str(tmp_path / "real_not_used"),
    }


def test_image_table_roles_labels_shards(tmp_path):
    table = image_table("d", _dataset(tmp_path), 2)
    assert len(table) == 9 and set(table.shard) <= {0, 1}
    assert dict(zip(table.role, table.label)) == {
        "generated": -1,
        "real_used": 1,
        "real_not_used": 0,
    }


def test_missing_and_empty_folders_name_the_key(tmp_path):
    ds = _dataset(tmp_path)
    ds["real_used"] = str(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    ds["real_not_used"] = str(tmp_path / "empty")
    with pytest.raises(ConfigError) as err:
        image_table("d", ds, 2)
    assert "datasets.d.real_used" in str(err.value) and "does not exist" in str(err.value)
    assert "datasets.d.real_not_used" in str(err.value)


def test_duplicate_ids_across_roles(tmp_path):
    ds = _dataset(tmp_path)
    grey(tmp_path / "real_used" / "generated_0.png")
    with pytest.raises(ConfigError, match="generated_0"):
        image_table("d", ds, 2)


def test_membership_without_generated_images(tmp_path):
    ds = _dataset(tmp_path)
    del ds["generated"]
    with pytest.raises(ConfigError, match="needs `generated`"):
        image_table("d", ds, 2)


def test_manifest_reports_all_bad_files_at_once(tmp_path):
    ds = _dataset(tmp_path)
    (tmp_path / "real_used" / "junk.png").write_text("junk")
    (tmp_path / "generated" / "empty.png").write_bytes(b"")
    table = image_table("d", ds, 2)
    status = [ingest_shard(g, 256)[2] for _, g in table.groupby("shard")]
    with pytest.raises(ImageError) as err:
        build_manifest(status, "error", "d")
    msg = str(err.value)
    assert "2 input image(s)" in msg and "junk.png" in msg and "empty.png" in msg
    accepted, rejected, _ = build_manifest(status, "skip", "d")
    assert len(accepted) == 9 and sorted(rejected.image_id) == ["empty", "junk"]


def test_same_content_under_two_names_is_reported(tmp_path):
    ds = _dataset(tmp_path)
    src = tmp_path / "real_used" / "real_used_0.png"
    (tmp_path / "real_not_used" / "copy.png").write_bytes(src.read_bytes())
    table = image_table("d", ds, 1)
    accepted, _, notes = build_manifest([ingest_shard(table, 256)[2]], "error", "d")
    assert any("copy.png" in n for n in notes)
    # "copy" sorts first, so the later name points back to it
    assert accepted.set_index("image_id").at["real_used_0", "duplicate_of"] == "copy"
    assert (accepted.duplicate_of != "").sum() == 1


def test_ingest_shard_keeps_good_images(tmp_path):
    ds = _dataset(tmp_path)
    (tmp_path / "real_used" / "bad.png").write_text("x")
    table = image_table("d", ds, 1)
    ids, images, status = ingest_shard(table, 256)
    assert len(ids) == 9 and images.shape == (9, 256, 256)
    assert isinstance(status, pd.DataFrame) and (~status.ok).sum() == 1
