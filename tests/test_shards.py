"""The shard format: one check of an image shard (and its masks) before it is streamed."""

import h5py
import numpy as np
import pytest

from gantrace.data import shards
from gantrace.errors import GantraceError, ImageError


@pytest.fixture
def shard(tmp_path):
    images = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    ids = ["c", "a", "e", "b", "d"]  # row order, not sorted
    shards.write_images(tmp_path / "im.h5", ids, images)
    shards.write_masks(tmp_path / "m.h5", ids, images > 100)
    return tmp_path, ids, images


def test_open_shard_returns_ids_shape_and_caches(shard):
    tmp, ids, images = shard
    got = shards.open_shard(tmp / "im.h5", tmp / "m.h5", batch_size=2)
    assert got.ids == ids and got.shape == images.shape
    assert got.cache_bytes[0] == 0 and got.cache_bytes[1] > 0  # masks are gzip chunks
    assert len(shards.open_shard(tmp / "im.h5").cache_bytes) == 1
    rows = shards.read_rows([tmp / "im.h5"], ["e", "a"])
    assert sorted(rows) == ["a", "e"] and np.array_equal(rows["e"], images[2])


def test_open_shard_names_what_is_wrong(shard):
    tmp, ids, images = shard
    with pytest.raises(GantraceError, match="missing.h5: cannot open image shard"):
        shards.open_shard(tmp / "missing.h5")
    with h5py.File(tmp / "other.h5", "w") as h5:
        h5.create_dataset("x", data=[1])
    with pytest.raises(GantraceError, match="no .images./.ids. datasets; not an image shard"):
        shards.open_shard(tmp / "other.h5")
    shards.write_masks(tmp / "reordered.h5", ids[::-1], images > 100)
    with pytest.raises(ImageError, match="reordered.h5.*from row 0") as err:
        shards.open_shard(tmp / "im.h5", tmp / "reordered.h5")
    assert "re-run segmentation" in str(err.value)
    shards.write_masks(tmp / "small.h5", ids, images[:, :4] > 100)
    with pytest.raises(ImageError, match="masks of shape"):
        shards.open_shard(tmp / "im.h5", tmp / "small.h5")
