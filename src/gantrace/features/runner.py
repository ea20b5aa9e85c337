"""Streaming feature extraction of one image shard into an HDF5 feature file."""

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gantrace import io
from gantrace.errors import ConfigError, ImageError
from gantrace.features.base import REGIONS, apply_region, build_extractor, with_seed
from gantrace.nn.seeding import seed_everything
from gantrace.params import Interval, Options, check_value
from gantrace.torch_env import pick_device

LOG_EVERY_S = 30.0


class ShardDataset(Dataset):
    """Rows of an image shard (and its masks), region-masked, read a batch at a time.

    The HDF5 files are opened lazily in whichever process reads (each DataLoader worker
    gets its own handle); an uncompressed contiguous image shard is also memory-mapped
    (`io.map_rows`). `__getitems__` serves a whole batch with one slice read; the
    `preprocess` callable (the extractor's preprocessing) runs before the region mask; with
    a `transform` (a weight-free extractor) the batch's features are computed here, in the
    worker, instead of its pixels being shipped back. `cache_bytes` are the HDF5 chunk-cache
    sizes of the image and mask files (see `chunk_cache_bytes`).
    """

    def __init__(
        self,
        images_h5,
        masks_h5,
        region,
        n,
        cache_bytes=(64 << 20, 64 << 20),
        transform=None,
        preprocess=None,
    ):
        self.images_h5 = str(images_h5)
        self.masks_h5 = None if masks_h5 is None else str(masks_h5)
        self.region = region
        self.n = n
        self.cache_bytes = cache_bytes
        self.transform = transform
        self.preprocess = preprocess
        self._files = None
        self._mapped = None
        self._buffer = None

    def __len__(self):
        return self.n

    def _open(self):
        if self._files is None:
            paths = [self.images_h5]
            if self.masks_h5 is not None and self.region != "full":
                paths.append(self.masks_h5)
            files = [
                h5py.File(path, "r", rdcc_nbytes=cache, rdcc_nslots=1021)
                for path, cache in zip(paths, self.cache_bytes, strict=False)
            ]
            # Keep the dataset objects: HDF5's chunk cache lives as long as they do.
            masks = files[1]["masks"] if len(files) > 1 else None
            images = files[0]["images"]
            self._files = (files, images, masks)
            self._mapped = io.map_rows(images)
        return self._files[1], self._files[2]

    def close(self):
        if self._files is not None:
            for h5 in self._files[0]:
                h5.close()
        self._files = None
        self._mapped = None  # unmapped once the last view of it is gone

    def _read(self, dataset, index, reuse=False, mapped=None):
        """Rows `index` of `dataset`; a run of rows is one slice read.

        With `reuse`, the batch need not outlive the call (features computed here): a run is
        then a zero-copy view of the `mapped` rows when there are some, else read into a
        buffer kept between calls (a fresh array per batch costs page faults comparable to
        the read itself).
        """
        lo, hi = int(index[0]), int(index[-1]) + 1
        run = hi - lo == len(index) and np.all(np.diff(index) == 1)
        if mapped is not None:
            if not run:
                return mapped.rows[index]  # fancy indexing copies
            return mapped.rows[lo:hi] if reuse else mapped.rows[lo:hi].copy()
        if run:
            if not reuse:
                return dataset[lo:hi]
            shape = (hi - lo, *dataset.shape[1:])
            if self._buffer is None or self._buffer.shape[0] < shape[0]:
                self._buffer = np.empty(shape, dtype=dataset.dtype)
            out = self._buffer[: shape[0]]
            dataset.read_direct(out, np.s_[lo:hi])
            return out
        order = np.argsort(index)
        rows = dataset[np.asarray(index)[order]]
        return rows[np.argsort(order)]

    def __getitems__(self, index):
        images, masks = self._open()
        index = np.asarray(index, dtype=np.int64)
        batch = self._read(images, index, self.transform is not None, self._mapped)
        if self.preprocess is not None:
            batch = self.preprocess(batch)
        if masks is not None:
            batch = apply_region(batch, self._read(masks, index).astype(bool), self.region)
        out = self.transform(batch) if self.transform is not None else np.ascontiguousarray(batch)
        if self._mapped is not None:  # keeps the resident set to one batch (see MappedRows)
            self._mapped.release(int(index.min()), int(index.max()) + 1)
        return torch.from_numpy(index), torch.from_numpy(out)

    def __getitem__(self, i):
        index, batch = self.__getitems__([i])
        return index[0], batch[0]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"] = state["_mapped"] = state["_buffer"] = None
        return state


def _collate(batch):
    """`__getitems__` already returns a collated (indices, batch) pair."""
    return batch


def shard_loader(dataset, batch_size, num_workers, device):
    """Batches of a `ShardDataset` in row order: `num_workers` processes each prefetching two
    batches, pinned for a CUDA `device` so the copy to it can overlap compute."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if num_workers > 0 else None,
    )


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


def _check_shards(images_h5, masks_h5, region, batch_size):
    """Return (ids, chunk-cache bytes of the images and masks) after checking the shards fit."""
    ids = io.read_ids_h5(images_h5)
    with h5py.File(images_h5, "r") as h5:
        ds = h5["images"]
        if ds.ndim != 3:
            raise ImageError([(images_h5, f"'images' has shape {ds.shape}, not (N, H, W)")])
        shape = ds.shape
        caches = [chunk_cache_bytes(ds, batch_size)]
    if region != "full":
        if masks_h5 is None:
            raise ConfigError(
                f"region '{region}' needs the lung-mask shard of {images_h5}, but none was given"
            )
        mask_ids = io.read_ids_h5(masks_h5)
        with h5py.File(masks_h5, "r") as h5:
            mask_shape = h5["masks"].shape
            caches.append(chunk_cache_bytes(h5["masks"], batch_size))
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
    return ids, tuple(caches)


def extract_shard(
    images_h5,
    masks_h5,
    region,
    spec,
    out_h5,
    device="auto",
    num_workers=0,
    seed=0,
    log=None,
    key="features spec",
):
    """Extract features of every image in `images_h5` and write them to `out_h5`.

    Images are streamed in batches through a DataLoader; the extractor's preprocessing and
    then the region are applied per batch (in the workers); torch extractors run under
    inference mode (and autocast on CUDA). `key` names the spec in errors ("features.r50").
    Returns {"n_images", "seconds", "images_per_s", ...}.
    """
    check_value("extract_shard.region", region, [Options(*REGIONS)])
    num_workers = int(check_value("extract_shard.num_workers", num_workers, [Interval(int, 0)]))
    spec = with_seed(spec, int(seed))  # a random-init model follows the job's seed
    extractor = build_extractor(spec, key=key)  # validates the spec before any work
    seed_everything(seed)
    ids, cache_bytes = _check_shards(images_h5, masks_h5, region, extractor.batch_size)
    n = len(ids)

    t0 = time.perf_counter()
    dev = pick_device(device) if extractor.uses_torch else torch.device("cpu")
    if extractor.uses_torch:
        extractor.to(dev)
    setup_s = time.perf_counter() - t0

    dataset = ShardDataset(
        images_h5,
        masks_h5,
        region,
        n,
        cache_bytes=cache_bytes,
        transform=None if extractor.uses_torch else extractor.extract,
        preprocess=extractor.preprocessor.transform if extractor.preprocessor else None,
    )
    loader = shard_loader(dataset, extractor.batch_size, num_workers, dev)

    features = None
    done = 0
    t_start = last_log = time.perf_counter()
    try:
        for index, batch in loader:
            if extractor.uses_torch:
                batch = extractor.forward_batch(batch).cpu()
            rows = batch.numpy()
            if features is None:
                features = np.empty((n, rows.shape[1]), dtype=np.float32)
            features[index.numpy()] = rows
            done += len(index)
            now = time.perf_counter()
            if log is not None and now - last_log >= LOG_EVERY_S:
                last_log = now
                print(
                    f"[features] {Path(out_h5).name}: {done}/{n} images, "
                    f"{done / (now - t_start):.1f} images/s",
                    file=log,
                    flush=True,
                )
    finally:
        dataset.close()  # the handles opened in this process (num_workers == 0)
    seconds = time.perf_counter() - t_start
    if features is None:  # empty shard: still record the feature width
        with h5py.File(images_h5, "r") as h5:
            shape = h5["images"].shape[1:]
        features = np.zeros((0, extractor.transform(np.zeros((1, *shape), np.uint8)).shape[1]))

    attrs = extractor.provenance()
    attrs.update(
        extractor=extractor.name,  # attrs keep `extractor` (a spec says `name`)
        spec=json.dumps({"extractor": extractor.name, **extractor.get_params()}, sort_keys=True),
        region=region,
        weights=extractor.weights_description(),
        device=str(dev),
        shard=Path(images_h5).stem,
        images_h5=str(images_h5),
        masks_h5=str(masks_h5) if masks_h5 is not None and region != "full" else "none",
        seed=int(seed),
        n_images=n,
    )
    t_write = time.perf_counter()
    io.write_features(out_h5, ids, features, attrs)
    stats = {
        "n_images": n,
        "n_features": int(features.shape[1]),
        "seconds": seconds,
        "images_per_s": n / seconds if seconds > 0 else float("nan"),
        "setup_seconds": setup_s,
        "write_seconds": time.perf_counter() - t_write,
        "device": str(dev),
    }
    if log is not None:
        print(
            f"[features] {Path(out_h5).name}: {n} images, {extractor.name} {region} on {dev}: "
            f"{stats['images_per_s']:.1f} images/s ({seconds:.1f} s, setup {setup_s:.1f} s)",
            file=log,
            flush=True,
        )
    return stats
