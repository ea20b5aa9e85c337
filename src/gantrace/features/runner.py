"""Streaming feature extraction of one image shard into an HDF5 feature file."""

import functools
import json
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from gantrace import io
from gantrace.data.loader import ShardDataset, shard_loader
from gantrace.data.shards import open_shard
from gantrace.errors import ConfigError
from gantrace.features.base import REGIONS, apply_region, build_extractor, with_seed
from gantrace.nn.seeding import seed_everything
from gantrace.params import Interval, Options, check_value
from gantrace.torch_env import pick_device

LOG_EVERY_S = 30.0


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
    if region != "full" and masks_h5 is None:
        raise ConfigError(
            f"region '{region}' needs the lung-mask shard of {images_h5}, but none was given"
        )
    mask_shard = masks_h5 if region != "full" else None
    ids, _, cache_bytes = open_shard(images_h5, mask_shard, extractor.batch_size)
    n = len(ids)

    t0 = time.perf_counter()
    dev = pick_device(device) if extractor.uses_torch else torch.device("cpu")
    if extractor.uses_torch:
        extractor.to(dev)
    setup_s = time.perf_counter() - t0

    dataset = ShardDataset(
        images_h5,
        n,
        mask_shard,
        masking=functools.partial(apply_region, region=region),
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
