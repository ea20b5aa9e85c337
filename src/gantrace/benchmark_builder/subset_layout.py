"""Write a built subset benchmark in the 2025 subtask-2 layout, with its ground truth.

subsets/real/<subset>/            the real slices each subset's generator trained on
subsets/generated/<subset>/       labelled generated images (dev)
subsets/test/generated/           the rest, mixed under neutral ids (test)
subsets/ground_truth/test_truth.csv   image_id,label (the subset name)
subsets/ground_truth/test.csv         the answer as a run file (label i: i-th subset, sorted)
"""

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from gantrace.benchmark_builder.layout import write_pngs
from gantrace.benchmark_builder.train import load_slices
from gantrace.evaluation.runfiles import write_run_file
from gantrace.imaging import resize_images


def write_subset_benchmark(split_csv, sample_paths, bench, out_root, out_config):
    """`sample_paths`: subset name -> samples .npz of its generator. Returns the config."""
    root = Path(out_root)
    split = pd.read_csv(split_csv, dtype={"image_id": str, "group": str}, keep_default_na=False)
    up = bench.get("upsample")
    size = up["size"] if up else bench["resolution"]
    names = sorted(sample_paths)
    gen = {s: np.load(sample_paths[s])["images"] for s in names}
    if up:
        gen = {s: resize_images(x, size, up.get("mode", "bicubic")) for s, x in gen.items()}
    real = load_slices(list(split.path), size)
    for s in names:
        sel = (split.subset == s).to_numpy()
        write_pngs(root / "real" / s, split.image_id[sel], real[sel])
    rng = np.random.default_rng(bench.get("seed", 0))
    test_fraction = bench["subsets"].get("test_fraction", 0.5)
    pool = []
    for s in names:
        order = rng.permutation(len(gen[s]))
        n_test = int(round(test_fraction * len(order)))
        dev = np.sort(order[n_test:])
        write_pngs(root / "generated" / s, [f"dev_{s}_{i:05d}" for i in dev], gen[s][dev])
        pool += [(s, int(i)) for i in np.sort(order[:n_test])]
    subsets = {s: f"real/{s}" for s in names}
    name = bench["name"]
    datasets = {
        f"{name}_subsets_dev": {
            "task": "subset_attribution",
            "real_subsets": subsets,
            "generated": {s: f"generated/{s}" for s in names},
        }
    }
    if pool:
        mixed = [pool[j] for j in rng.permutation(len(pool))]
        ids = [f"img_{k:05d}" for k in range(len(mixed))]
        write_pngs(root / "test" / "generated", ids, [gen[s][i] for s, i in mixed])
        gt = root / "ground_truth"
        gt.mkdir(parents=True, exist_ok=True)
        truth = pd.DataFrame({"image_id": ids, "label": [s for s, _ in mixed]})
        truth.to_csv(gt / "test_truth.csv", index=False)
        label = {s: k for k, s in enumerate(names, start=1)}
        write_run_file(ids, [label[s] for s, _ in mixed], gt / "test.csv")
        datasets[f"{name}_subsets_test"] = {
            "task": "subset_attribution",
            "real_subsets": subsets,
            "generated": "test/generated",
            "truth": "ground_truth/test_truth.csv",
            "dev_dataset": f"{name}_subsets_dev",  # the leaderboard's selected_on_dev row
        }
    config = {"data_root": str(root), "ingest": {"image_size": size}, "datasets": datasets}
    Path(out_config).write_text(
        "# Written by `snakemake benchmark_subsets` (subset attribution, ImageCLEF 2025\n"
        "# subtask 2): run methods on it with\n"
        f"#   snakemake all --configfile {out_config} my_methods.yaml\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    for s in names:
        print(f"{s}: {int((split.subset == s).sum())} real slices, {len(gen[s])} generated")
    return config
