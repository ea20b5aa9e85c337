"""Stream an image shard (and its lung masks) through a torch DataLoader, a batch at a time.

Used by feature extraction and U-Net inference; `gantrace.data.shards` checks a shard first.
"""

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gantrace.data.shards import map_rows


class ShardDataset(Dataset):
    """Rows of an image shard (and its masks), read a batch at a time.

    The HDF5 files are opened lazily in whichever process reads (each DataLoader worker
    gets its own handle); an uncompressed contiguous image shard is also memory-mapped
    (`shards.map_rows`). `__getitems__` serves a whole batch with one slice read; then the
    `preprocess` callable (an extractor's preprocessing) runs, then, with a `masks_h5`,
    `masking(batch, masks)` (a feature's region); with a `transform` (a weight-free
    extractor) the batch's features are computed here, in the worker, instead of its pixels
    being shipped back. `cache_bytes` are the HDF5 chunk-cache sizes of the image and mask
    files (`shards.open_shard` gives them). Callables must pickle (DataLoader workers).
    """

    def __init__(
        self,
        images_h5,
        n,
        masks_h5=None,
        masking=None,
        cache_bytes=(64 << 20, 64 << 20),
        transform=None,
        preprocess=None,
    ):
        self.images_h5 = str(images_h5)
        self.masks_h5 = None if masks_h5 is None else str(masks_h5)
        if masks_h5 is not None and masking is None:
            raise ValueError("ShardDataset: masks_h5 needs a masking(batch, masks) callable")
        self.masking = masking
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
            if self.masks_h5 is not None:
                paths.append(self.masks_h5)
            files = [
                h5py.File(path, "r", rdcc_nbytes=cache, rdcc_nslots=1021)
                for path, cache in zip(paths, self.cache_bytes, strict=False)
            ]
            # Keep the dataset objects: HDF5's chunk cache lives as long as they do.
            masks = files[1]["masks"] if len(files) > 1 else None
            images = files[0]["images"]
            self._files = (files, images, masks)
            self._mapped = map_rows(images)
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
            batch = self.masking(batch, self._read(masks, index).astype(bool))
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
