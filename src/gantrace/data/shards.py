"""The shard format: which shard an image falls in, and image / lung-mask shards on disk.

A shard is an HDF5 file written by `gantrace.io.write_array_h5`: one (N, H, W) uint8 array
("images" or "masks") and its N image ids in the same row order. `open_shard` checks a shard
(and its mask shard) before a stage streams it; the streaming reader itself is
`gantrace.data.loader` (it needs torch, this module does not).
"""

import hashlib
import math
import mmap
from collections import namedtuple

import h5py
import numpy as np

from gantrace.errors import GantraceError, ImageError
from gantrace.io import ids_of, read_array_h5, write_array_h5

# Image shards are stored uncompressed. The cheap extractors (pixels: ~0.3 ms per 256x256
# image on one core) cost less than inflating the image: gzip reads ~90 MB/s (0.7 ms per
# image), lzf ~125 MB/s, uncompressed ~4 GB/s, so compressed shards capped those stages at
# 0.2-0.8 of the extractor's own speed (benchmarks/feature_throughput.py), for a size
# saving of only 1.2-1.6x on CT slices. Masks (mostly runs of 0/1) and features stay gzip.
# Uncompressed arrays are stored contiguously, so a reader can map them with no copy at all
# (`map_rows`). Reading is layout-agnostic: chunked or gzip shards of older versions still work.
IMAGE_COMPRESSION = None


def shard_of(image_id, n_shards):
    """Stable shard of an image: a hash of its id, so adding images moves no other."""
    digest = hashlib.sha256(str(image_id).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % int(n_shards)


# -- whole shards ----------------------------------------------------------------------------
def write_images(path, ids, images, attrs=None):
    images = np.asarray(images, dtype=np.uint8)
    write_array_h5(path, "images", ids, images, attrs, compression=IMAGE_COMPRESSION)


def read_images(path):
    ids, images, _ = read_array_h5(path, "images")
    return ids, images


def write_masks(path, ids, masks, attrs=None):
    write_array_h5(path, "masks", ids, np.asarray(masks, dtype=np.uint8), attrs)


def read_masks(path):
    ids, masks, _ = read_array_h5(path, "masks")
    return ids, masks.astype(bool)


def read_rows(paths, wanted, dataset="images"):
    """{id: array} of the `wanted` ids, read shard by shard (HDF5 rows in file order)."""
    wanted = set(map(str, wanted))
    found = {}
    for p in paths:
        with h5py.File(p, "r") as h5:
            ids = ids_of(h5)
            rows = [i for i, iid in enumerate(ids) if iid in wanted]
            if rows:
                block = h5[dataset][rows]
                for i, a in zip(rows, block):
                    found[ids[i]] = a
    return found


# -- checking a shard before streaming it ----------------------------------------------------
Shard = namedtuple("Shard", "ids shape cache_bytes")
Shard.__doc__ = """An image shard that `open_shard` checked: its ids, the (N, H, W) shape of its
images, and the chunk-cache sizes of the image file and (where given) the mask file."""


def chunk_cache_bytes(dataset, batch_size):
    """HDF5 chunk-cache size for reading `dataset` `batch_size` rows at a time.

    Compressed chunks are cached, so a chunk that batches share is inflated once.
    Uncompressed ones get no cache: HDF5 then reads them straight into the batch, while a
    cached chunk costs an allocation and an extra copy (~30 us per 256x256 image).
    """
    if dataset.chunks is None or dataset.id.get_create_plist().get_nfilters() == 0:
        return 0
    rows = dataset.chunks[0]
    chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    return max(chunk_bytes * (2 + math.ceil(batch_size / rows)), 1 << 20)


_KIND = {"images": ("image", "an image shard"), "masks": ("mask", "a mask shard")}


def _read_layout(path, name, batch_size):
    """(ids, shape, chunk-cache bytes) of the `name` array of shard `path`, checked."""
    kind, a_shard = _KIND[name]
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:  # missing, unreadable or not HDF5
        raise GantraceError(f"{path}: cannot open {kind} shard ({exc})") from exc
    with h5:
        if name not in h5 or "ids" not in h5:
            raise GantraceError(f"{path}: no '{name}'/'ids' datasets; not {a_shard}")
        ds = h5[name]
        ids = ids_of(h5)
        if ds.ndim != 3:
            raise ImageError([(path, f"'{name}' has shape {ds.shape}, not (N, H, W)")])
        if len(ids) != ds.shape[0]:
            raise GantraceError(f"{path}: {name} {ds.shape} do not match {len(ids)} ids")
        return ids, ds.shape, chunk_cache_bytes(ds, batch_size)


def open_shard(images_h5, masks_h5=None, batch_size=1):
    """Check an image shard, and its lung-mask shard where given, before streaming it.

    Both must open and hold (N, H, W) arrays with one id per row; the masks must match the
    images in shape and in id order (else an `ImageError` naming the mask shard). Returns a
    `Shard`; its cache sizes suit reading `batch_size` rows at a time.
    """
    ids, shape, cache = _read_layout(images_h5, "images", batch_size)
    caches = [cache]
    if masks_h5 is not None:
        mask_ids, mask_shape, mask_cache = _read_layout(masks_h5, "masks", batch_size)
        caches.append(mask_cache)
        if mask_shape != shape:
            problem = f"masks of shape {mask_shape} for images of shape {shape} in {images_h5}"
        elif mask_ids != ids:
            row = next(i for i, (a, b) in enumerate(zip(ids, mask_ids, strict=True)) if a != b)
            problem = (
                f"mask ids differ from the image ids of {images_h5} from row {row} "
                f"({mask_ids[row]!r} vs {ids[row]!r})"
            )
        else:
            problem = None
        if problem:
            raise ImageError([(masks_h5, problem)], hint="re-run segmentation for this shard")
    return Shard(ids, shape, tuple(caches))


# -- reading rows without a copy -------------------------------------------------------------
class MappedRows:
    """Rows of an open HDF5 dataset read straight from its file's pages, with no copy.

    `rows` is a read-only (N, ...) array over a memory map of the file. Touched pages would
    stay in the process's resident set; `release(lo, hi)` drops those of rows lo:hi (the
    page cache keeps them, and a later read faults them back in), so a streaming reader holds
    one batch, not the whole shard. Build with `map_rows`.
    """

    def __init__(self, mapping, offset, dtype, shape):
        self._mapping = mapping
        self._offset = offset
        self.rows = np.frombuffer(mapping, dtype, count=math.prod(shape), offset=offset)
        self.rows = self.rows.reshape(shape)

    def release(self, lo, hi):
        row_bytes = self.rows.strides[0]
        start = self._offset + lo * row_bytes
        start -= start % mmap.PAGESIZE
        end = self._offset + hi * row_bytes
        if end > start:
            self._mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


def map_rows(dataset):
    """`MappedRows` of an open HDF5 `dataset`, or None where a map cannot serve it.

    Only an uncompressed, contiguous, allocated dataset in native byte order, in a plain
    (sec2) file, maps; the map outlives the file handle.
    """
    plist = dataset.id.get_create_plist()
    if (
        plist.get_layout() != h5py.h5d.CONTIGUOUS
        or plist.get_nfilters()
        or plist.get_external_count()
        or not dataset.dtype.isnative
        or dataset.file.driver != "sec2"
        or not hasattr(mmap, "MADV_DONTNEED")
    ):
        return None
    offset = dataset.id.get_offset()
    if offset is None or dataset.size == 0:  # storage never allocated
        return None
    try:
        with open(dataset.file.filename, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # a file system that cannot map: the caller reads instead
        return None
    return MappedRows(mapping, offset, dataset.dtype, dataset.shape)
