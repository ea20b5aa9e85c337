"""Feature extraction throughput: the pipeline stage vs. the bare extractor, per extractor.

    PYTHONPATH=src python benchmarks/feature_throughput.py --n 64 --batch-size 32 --device auto

For each extractor, images/s of
  stage  `gantrace.features.extract_shard` on an ingested HDF5 shard of N simulated slices
         (memory-mapped read, DataLoader, region, extractor; the feature write excluded:
         the stage's own `images_per_s`, i.e. its streaming loop), and
  bare   the extractor on the same images already in memory, same device and batch size:
         `forward_batch` (uint8 -> preprocess -> model -> CPU) for torch extractors,
         `transform` for the classic ones, batch by batch,
and stage / bare (target on CPU: >= 0.9). Each is measured `--repeats` times after a
warm-up, alternating, and the best run kept (the machine may be shared).
Random-init networks need no weights; efficientnet_lite0 uses its packaged ImageNet weights.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gantrace.data import shards
from gantrace.data.simulate import thorax_slice
from gantrace.features import build_extractor, extract_shard
from gantrace.torch_env import pick_device

EXTRACTORS = {
    "pixels": {"name": "pixels", "size": 32},
    "lbp": {"name": "lbp"},
    "spectrum": {"name": "spectrum"},
    "dct": {"name": "dct"},
    "residual": {"name": "residual"},
    "densenet121": {"name": "torchvision", "arch": "densenet121", "weights": "none"},
    "resnet50": {"name": "torchvision", "arch": "resnet50", "weights": "none"},
    "dinov2_small": {"name": "dinov2", "size": "small", "weights": "none"},
    "efficientnet_lite0": {"name": "efficientnet_lite0", "weights": "packaged"},
}


def simulate_shard(path, n, seed=0):
    rng = np.random.default_rng(seed)
    images = np.stack([thorax_slice(rng)[0] for _ in range(n)])
    ids = [f"img_{i:06d}" for i in range(n)]
    shards.write_images(path, ids, images, {"dataset": "bench", "shard": 0})
    return images


def time_stage(images_h5, spec, out_h5, device):
    stats = extract_shard(images_h5, None, "full", spec, out_h5, device=device, num_workers=0)
    return stats["images_per_s"], stats["setup_seconds"]


def time_bare(ext, images):
    bs = ext.batch_size
    t0 = time.perf_counter()
    for i in range(0, len(images), bs):  # the stage's batches (batch size changes BLAS speed)
        if ext.uses_torch:
            ext.forward_batch(torch.from_numpy(images[i : i + bs])).cpu()
        else:
            ext.transform(images[i : i + bs])
    return len(images) / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="simulated images in the shard")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--extractors", default=",".join(EXTRACTORS), help="comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.extractors.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        sys.exit(f"unknown extractor(s) {unknown}; choose from {', '.join(EXTRACTORS)}")
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({name}), torch threads {torch.get_num_threads()}, "
        f"N={args.n} images 256x256, batch {args.batch_size}, best of {args.repeats}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        images = simulate_shard(tmp / "shard.h5", args.n)
        print(f"simulated and wrote the shard in {time.perf_counter() - t0:.1f} s\n")
        header = (
            f"{'extractor':<20}{'dim':>6}{'device':>8}{'setup s':>9}"
            f"{'stage img/s':>13}{'bare img/s':>12}{'stage/bare':>12}"
        )
        print(header)
        print("-" * len(header))
        for n in names:
            spec = {**EXTRACTORS[n], "batch_size": args.batch_size}
            ext = build_extractor(spec)
            dev = device if ext.uses_torch else torch.device("cpu")
            if ext.uses_torch:
                ext.to(dev)
            dim = ext.transform(images[:2]).shape[1]  # warm-up (kernels, allocator)
            time_stage(tmp / "shard.h5", spec, tmp / f"{n}.h5", str(dev))  # warm-up
            stage, bare, setup = [], [], []
            for _ in range(args.repeats):
                s, su = time_stage(tmp / "shard.h5", spec, tmp / f"{n}.h5", str(dev))
                stage.append(s)
                setup.append(su)
                bare.append(time_bare(ext, images))
            s, b = max(stage), max(bare)
            print(
                f"{n:<20}{dim:>6}{dev.type:>8}{min(setup):>9.2f}{s:>13.1f}{b:>12.1f}{s / b:>12.2f}",
                flush=True,
            )
            del ext
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(
        "\nstage: extract_shard's streaming loop (mapped read + DataLoader + extractor); "
        "setup (model build, move to device) and the feature write are not in it.\n"
        "bare: the same extractor on the images already in memory."
    )


if __name__ == "__main__":
    main()
