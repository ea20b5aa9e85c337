"""New methods vs. the seed methods on a benchmark with ground truth (issue 6).

    python benchmarks/beyond_seeds.py [--directory DIR] [--cores 2]
        [--benchmark-config config/benchmark.yaml] [--methods config/beyond-seeds.yaml]

1. Builds the benchmark of `--benchmark-config` with `snakemake benchmark` (generators
   trained on real slices; the default reads ../shared/data/chest-ct-256), or reuses
   DIR/results/<run>/benchmark/<name>/ when it exists (<run>: the benchmark config's). No source slices and no benchmark: it
   prints why and exits 0.
2. Adds an open-set setting (with three generators or more): `<dev>_known`, the dev
   attribution set without its last generator, open-set methods (`known_from`) that must
   find that generator in the test set as an unseen one, and SDVAHCS's pseudo-labelling.
3. Runs `snakemake all` with the benchmark's gantrace.yaml + `--methods` + the open-set
   config, in DIR (default: the project root) as the run `<methods run>-<benchmark name>`
   (e.g. results/beyond-seeds-chest64/), so two benchmarks' runs never mix.
4. Prints, from DIR/results/<run>/leaderboard.csv: membership F1 / AUC / kappa per generator on the
   held-out real_unknown images (and the mean over generators), attribution ARI with the
   number of clusters found (known k, estimated k, open set), and the best seed method
   (a catalogue entry) against the best new method.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from gantrace.runs import run_dir, run_of_files

ROOT = Path(__file__).resolve().parents[1]


def snakemake(directory, cores, target, configfiles, extra=()):
    cmd = [sys.executable, "-m", "snakemake", target, "--snakefile", str(ROOT / "Snakefile")]
    cmd += ["--directory", str(directory), "--cores", str(cores), "--resources", "gpu=1"]
    cmd += ["--configfile", *map(str, configfiles), *extra]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def benchmark_dir(benchmark_config, directory):
    cfg = yaml.safe_load(Path(benchmark_config).read_text())["benchmark"]
    source = Path(cfg["source"])
    if not source.is_absolute():
        source = ROOT / source
    bench = directory / run_dir(run_of_files([benchmark_config])) / "benchmark" / cfg["name"]
    return bench, source


def open_set_config(gantrace_yaml, out):
    """Config adding `<dev>_known` (dev minus its last generator) and open-set methods."""
    datasets = yaml.safe_load(gantrace_yaml.read_text())["datasets"]
    attribution = {k: v for k, v in datasets.items() if v["task"] == "attribution"}
    dev = next(k for k, v in attribution.items() if isinstance(v["generated"], dict))
    test = next(k for k in attribution if k != dev)
    generators = dict(datasets[dev]["generated"])
    if len(generators) < 3:  # open set needs two known generators and an unseen one
        return None, None, test
    unseen = list(generators)[-1]
    del generators[unseen]
    known = f"{dev}_known"
    methods = {
        f"{feature}_open_set": {
            "feature": feature,
            "clusterer": {"name": "kmeans"},
            **({"reducer": {"name": "pca", "n_components": 0.95}} if feature == "dct" else {}),
            "known_from": known,
            "datasets": [test],
        }
        for feature in ("spectrum", "dct")
    }
    # SDVAHCS 2024: nets trained on the known generators; the least confident test images
    # are pseudo-labelled as the unseen generator and the nets retrained (random init here);
    # each image takes the class the nets predict (as catalogue entry
    # sdvahcs_resnet_ensemble_pseudolabel).
    pseudo = "sdvahcs_open_set_ft"
    features = {
        pseudo: {
            "name": "finetuned",
            "ensemble": ["resnet18", "resnet34", "resnet50"],
            "weights": "none",
            "input_size": 64,
            "epochs": 3,
            "train_from": known,
            "open_set": {"n_pseudo": round(1 / (len(generators) + 1), 3)},
            "output": "probabilities",
        }
    }
    methods["sdvahcs_pseudolabel_open_set"] = {
        "feature": pseudo,
        "clusterer": {"name": "argmax"},
        "datasets": [test],
    }
    config = {
        "datasets": {
            known: {"task": "attribution", "generated": generators, "n_generators": len(generators)}
        },
        "features": features,
        "attribution": {"methods": methods},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return unseen, known, test


def membership_table(board):
    m = board[(board.task == "membership") & (board.split == "test")].copy()
    if "level" in m:  # image-level rows only (set-level rows are per group)
        m = m[m.level.fillna("image") == "image"]
    m["generator"] = m.dataset.str.split("_membership_").str[-1]
    wide = m.pivot_table(index="method", columns="generator", values="f1")
    mean = m.groupby("method")[["f1", "auc", "kappa"]].mean()
    table = wide.join(mean.rename(columns=lambda c: f"mean_{c}"))
    seeds = m.drop_duplicates("method").set_index("method").catalogue
    table.insert(0, "seed", [isinstance(seeds[i], str) and seeds[i] != "" for i in table.index])
    return table.sort_values("mean_auc", ascending=False)


def attribution_table(board):
    a = board[board.task == "attribution"].copy()
    cols = ["dataset", "method", "ari", "nmi"] + [c for c in ("k_found", "k_true") if c in a]
    a["seed"] = a.catalogue.fillna("").astype(str) != ""
    return a[["seed", *cols]].sort_values(["dataset", "ari"], ascending=[True, False])


def best_lines(table, score, label):
    lines = []
    for seed, name in ((True, "best seed"), (False, "best new ")):
        part = table[table.seed == seed]
        if len(part):
            top = part[score].idxmax()
            lines.append(f"  {label} {name}: {top}  {score} {part.loc[top, score]:.3f}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--directory", type=Path, default=ROOT)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--benchmark-config", type=Path, default=ROOT / "config/benchmark.yaml")
    ap.add_argument("--methods", type=Path, default=ROOT / "config/beyond-seeds.yaml")
    ap.add_argument("--report-only", action="store_true", help="print the existing leaderboard")
    ap.add_argument(
        "--target",
        default="all",
        help="snakemake target; results/<run>/leaderboard.csv skips run files and plots (faster)",
    )
    args = ap.parse_args(argv)
    directory = args.directory.resolve()
    bench, source = benchmark_dir(args.benchmark_config, directory)
    gantrace_yaml = bench / "gantrace.yaml"
    run = f"{run_of_files([args.methods])}-{bench.name}"
    results = directory / run_dir(run)
    times = {}
    if not args.report_only:
        if not gantrace_yaml.exists():
            if not source.is_dir():
                print(f"skipped: no benchmark at {bench} and no source slices at {source}")
                return 0
            times["build benchmark"] = snakemake(
                directory, args.cores, "benchmark", [args.benchmark_config.resolve()]
            )
        open_set = results / "open_set.yaml"
        unseen, known, test = open_set_config(gantrace_yaml, open_set)
        configs = [gantrace_yaml, args.methods.resolve()]
        if known:
            print(f"open set: {known} lacks {unseen!r}; open-set methods must find it in {test}")
            configs.append(open_set)
        else:
            print("open set: skipped, the benchmark has fewer than three generators")
        times["run methods"] = snakemake(
            directory, args.cores, args.target, configs, ["--config", f"run={run}"]
        )
    board_path = results / "leaderboard.csv"
    if not board_path.exists():
        print(f"skipped: no leaderboard at {board_path}")
        return 0
    board = pd.read_csv(board_path)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_rows", 200)
    fmt = "{:.3f}".format
    print("\n== membership: F1 per generator on real_unknown (test), mean F1 / AUC / kappa ==")
    mem = membership_table(board)
    print(mem.to_string(float_format=fmt))
    print("\n== attribution: ARI, clusters found (k_found) vs true generators (k_true) ==")
    att = attribution_table(board)
    print(att.to_string(index=False, float_format=fmt))
    print("\n== best seed vs best new ==")
    for line in best_lines(mem, "mean_auc", "membership (mean AUC)"):
        print(line)
    for line in best_lines(mem, "mean_f1", "membership (mean F1) "):
        print(line)
    for dataset, part in att.groupby("dataset"):
        for line in best_lines(part.set_index("method"), "ari", f"{dataset} (ARI)"):
            print(line)
    for step, seconds in times.items():
        print(f"{step}: {seconds:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
