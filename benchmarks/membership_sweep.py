"""Where is membership detectable? A sweep over training-set sizes and generator families.

    python benchmarks/membership_sweep.py [--directory DIR] [--cores 2] [--sizes 100 300 600]
        [--families dcgan vae] [--base config/benchmark.yaml]
        [--methods config/beyond-seeds-weight-free.yaml] [--report-only]

1. For each size, writes a benchmark config (the `--base` one with `used_fraction` set so
   that about `size` real slices train the generators, only the `--families`
   generators, and `--reference-fraction` of the labelled not-used patients set aside as
   a clean pool, `reference_real`) to
   DIR/results/membership-sweep/membership-sweep-<size>.yaml and builds it into
   results/membership-sweep/benchmark/sweep<size>/ with `snakemake benchmark`, or reuses
   it when its gantrace.yaml exists. No source slices: it prints why and exits 0.
2. Runs `--methods` on each benchmark as the run `membership-sweep-<size>`, plus the
   calibrations that need the clean pool (an overlay written beside the config): each
   membership dataset's reference generator (its target's architecture and steps, trained
   on the pool) and scorers with `reference: clean` / `reference: generator`.
3. Prints per benchmark and generator: the best seed method (a catalogue entry) and the
   best new method, each SELECTED ON DEV by AUC and scored on the held-out real_unknown
   images (test): AUC with its bootstrap interval (over patient groups), TPR at 1 % FPR,
   and whether it is tied with the test split's best (paired bootstrap, docs/evaluation.md);
   the same for set-level (per patient group) rows; and each generator's data-copying
   verdict (docs/membership-copying.md).
"""

import argparse
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beyond_seeds import ROOT, benchmark_dir, snakemake  # noqa: E402

from gantrace.benchmark_builder.split import list_slices  # noqa: E402
from gantrace.evaluation.bootstrap import (  # noqa: E402
    interval,
    membership_replicates,
    resample_weights,
)
from gantrace.runs import run_dir  # noqa: E402

SWEEP = "membership-sweep"
LEVELS = ("image", "group")  # group: set-level rows, where the benchmark names groups


def sweep_config(base, size, families, source, n_source, out, reference_fraction=0.3):
    """The base benchmark config, resized to ~`size` training slices and `families`, with
    `reference_fraction` of the labelled not-used slices as a clean pool."""
    cfg = yaml.safe_load(Path(base).read_text())
    bench = cfg["benchmark"]
    bench["source"] = str(source)  # absolute: the sweep may run in another --directory
    missing = [f for f in families if f not in bench["generators"]]
    if missing:
        raise SystemExit(f"--families: {missing} are not generators of {base}")
    if len(set(families)) < 2:
        raise SystemExit("--families: give two or more (a benchmark trains at least two)")
    if not 0 < size < n_source:
        raise SystemExit(f"--sizes: {size} must lie between 0 and the {n_source} source slices")
    cfg["run"] = SWEEP  # every size's benchmark under results/membership-sweep/benchmark/
    bench["name"] = f"sweep{size}"
    bench["split"]["used_fraction"] = round(size / n_source, 4)
    bench["split"]["reference_fraction"] = reference_fraction
    bench["generators"] = {f: bench["generators"][f] for f in families}
    bench.pop("subsets", None)
    bench.setdefault("attribution", {})["unseen"] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


# Calibrations against the clean pool (docs/membership-calibration.md), in the methods
# config's pixels32 space; run on every membership dataset of a sweep benchmark.
CALIBRATED = {
    "calibrated_clean_pixels": {
        "feature": "pixels32",
        "scorer": {"name": "calibrated_knn", "reference": "clean"},
    },
    "gan_leaks_refgen_pixels": {
        "feature": "pixels32",
        "scorer": {"name": "calibrated_knn", "reference": "generator"},
    },
    "domias_refgen_pixels_pca10": {
        "feature": "pixels32",
        "reducer": {"name": "pca", "n_components": 10},
        "scorer": {"name": "domias", "reference": "generator"},
    },
}


def calibration_overlay(bench_config, gantrace_yaml, out):
    """A config overlay: each membership dataset with a clean pool gets a reference
    generator of its target's architecture and steps (GAN-Leaks' setting) but another seed
    (its own initialisation and latents), and the CALIBRATED methods run on those datasets."""
    bench = yaml.safe_load(Path(bench_config).read_text())["benchmark"]
    built = yaml.safe_load(Path(gantrace_yaml).read_text())["datasets"]
    datasets = {}
    for name, ds in built.items():
        if ds["task"] != "membership" or "reference_real" not in ds:
            continue
        target = bench["generators"][name.split("_membership_")[-1]]
        datasets[name] = {
            "reference_generator": {
                "generator": {**target, "seed": target.get("seed", bench.get("seed", 0)) + 1},
                "resolution": bench["resolution"],
                "n_samples": bench["n_samples"],
            }
        }
    methods = {m: {**spec, "datasets": sorted(datasets)} for m, spec in CALIBRATED.items()}
    overlay = {"datasets": datasets, "membership": {"methods": methods}} if datasets else {}
    out.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return out


def selected(board, seed, level="image"):
    """Per membership dataset: the method ranked first on dev by AUC among seed (catalogue)
    or new methods, with its test row; `level` image or group (set-level rows)."""
    m = board[(board.task == "membership") & (board.kind != "selected_on_dev")].copy()
    m = m[m.get("level", pd.Series("image", index=m.index)).fillna("image") == level]
    m = m[m.catalogue.fillna("").astype(str).ne("") == seed]
    rows = []
    for dataset, part in m.groupby("dataset"):
        dev = part[part.split == "dev"].sort_values(["auc", "method"], ascending=[False, True])
        test = part[part.split == "test"].set_index("method")
        if dev.empty or test.empty:
            continue
        name = dev.method.iloc[0]
        rows.append({"dataset": dataset, "method": name, "dev_auc": dev.auc.iloc[0]})
        rows[-1].update(test.loc[name, ["auc", "auc_lo", "auc_hi", "tpr_at_fpr_1pct"]])
        rows[-1]["tied_with_best"] = test.loc[name, "tied_with_best"]
    return pd.DataFrame(rows)


def paired_difference(results, truth, new, seed, level="image", n_boot=1000, ci=0.95, rng=0):
    """Test AUC of `new` minus `seed` on the same bootstrap resamples (whole groups drawn,
    as the leaderboard does): (difference, lo, hi). `results`: the dataset's membership
    folder; `truth`: its CSV image_id,label,role (the hidden labels of real_unknown)."""
    hidden = pd.read_csv(truth, dtype={"image_id": str})
    hidden = hidden[hidden.role == "real_unknown"].set_index("image_id").label
    tables = [pd.read_parquet(Path(results) / f"{m}.parquet") for m in (new, seed)]
    rows = [t[t.image_id.isin(hidden.index)].sort_values("image_id") for t in tables]
    y = hidden.reindex(rows[0].image_id).to_numpy()
    groups = rows[0]["group"].to_numpy() if "group" in rows[0] else None
    scores = [r.score.to_numpy() for r in rows]
    if level == "group":  # one row per group: its group score, used if any image is
        frame = pd.DataFrame({"group": groups, "y": y})
        y = frame.groupby("group", sort=True).y.max().to_numpy()
        scores = [r.groupby("group", sort=True).group_score.first().to_numpy() for r in rows]
        groups = None
    weights = resample_weights(y, n_boot, np.random.default_rng(rng), groups)
    zeros = np.zeros((2, len(y)))
    auc = membership_replicates(y, np.stack(scores), zeros, weights, ())["auc"]
    full = membership_replicates(y, np.stack(scores), zeros, np.ones((1, len(y))), ())["auc"]
    lo, hi = interval(auc[:, 0] - auc[:, 1], ci)
    return float(full[0, 0] - full[0, 1]), float(lo), float(hi)


def compare(board, run, gantrace_yaml, directory):
    """Per membership dataset and level: the dev-selected new method's test AUC minus the
    dev-selected seed method's, paired (`paired_difference`). Relative paths of the built
    config are under `directory` (where the workflow ran)."""
    built = yaml.safe_load(Path(gantrace_yaml).read_text())
    root, rows = Path(directory) / built["data_root"], []
    for level in LEVELS:
        picks = [selected(board, seed, level).set_index("dataset") for seed in (False, True)]
        for dataset in picks[0].index.intersection(picks[1].index):
            new, seed = picks[0].loc[dataset, "method"], picks[1].loc[dataset, "method"]
            truth = root / built["datasets"][dataset]["truth"]
            diff = paired_difference(run / dataset / "membership", truth, new, seed, level)
            rows.append((dataset, level, new, seed, *diff))
    return pd.DataFrame(rows, columns=["dataset", "level", "new", "seed", "diff", "lo", "hi"])


def report(board, size):
    fmt = "{:.3f}".format
    for (seed, name), level in product(((True, "best seed"), (False, "best new ")), LEVELS):
        table = selected(board, seed, level)
        label = f"{name} ({level})"
        for _, r in table.iterrows():
            generator = r.dataset.split("_membership_")[-1]
            chance = "above chance" if r.auc_lo > 0.5 else "not above chance"
            tie = "tied with the split's best" if r.tied_with_best else "the split's best or worse"
            print(
                f"  ~{size:>4} slices  {generator:<8} {label:<17} {r.method:<36} "
                f"test AUC {fmt(r.auc)} [{fmt(r.auc_lo)}, {fmt(r.auc_hi)}] ({chance}), "
                f"TPR@1%FPR {fmt(r.tpr_at_fpr_1pct)}, dev AUC {fmt(r.dev_auc)}; {tie}"
            )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--directory", type=Path, default=ROOT)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 600])
    ap.add_argument("--families", nargs="+", default=["dcgan", "vae"])
    ap.add_argument("--base", type=Path, default=ROOT / "config/benchmark.yaml")
    ap.add_argument("--methods", type=Path, default=ROOT / "config/beyond-seeds-weight-free.yaml")
    ap.add_argument("--reference-fraction", type=float, default=0.3)
    ap.add_argument("--report-only", action="store_true", help="print the existing leaderboards")
    args = ap.parse_args(argv)
    directory = args.directory.resolve()
    base = yaml.safe_load(args.base.read_text())["benchmark"]
    source = Path(base["source"])
    source = (source if source.is_absolute() else ROOT / source).resolve()
    if not source.is_dir():
        print(f"skipped: no source slices at {source} (set benchmark.source in --base)")
        return 0
    n_source = len(list_slices(source))
    for size in args.sizes:
        config = directory / run_dir(SWEEP) / f"{SWEEP}-{size}.yaml"
        sweep_config(
            args.base, size, args.families, source, n_source, config, args.reference_fraction
        )
        bench, _ = benchmark_dir(config, directory)
        run = f"{SWEEP}-{size}"
        if not args.report_only:
            if not (bench / "gantrace.yaml").exists():
                snakemake(directory, args.cores, "benchmark", [config])
            overlay = calibration_overlay(
                config, bench / "gantrace.yaml", config.with_name(f"{run}-calibration.yaml")
            )
            configs = [bench / "gantrace.yaml", args.methods.resolve(), overlay]
            snakemake(directory, args.cores, "all", configs, ["--config", f"run={run}"])
        board_path = directory / run_dir(run) / "leaderboard.csv"
        if not board_path.exists():
            print(f"~{size} slices: no leaderboard at {board_path}")
            continue
        print(f"\n== ~{size} training slices ({bench}) ==")
        board = pd.read_csv(board_path)
        report(board, size)
        for _, r in compare(
            board, directory / run_dir(run), bench / "gantrace.yaml", directory
        ).iterrows():
            verdict = "significant" if r.lo > 0 or r.hi < 0 else "not significant"
            print(
                f"  ~{size:>4} slices  {r.dataset.split('_membership_')[-1]:<8} ({r.level}) "
                f"best new {r.new} - best seed {r.seed}: test AUC {r['diff']:+.3f} "
                f"[{r.lo:+.3f}, {r.hi:+.3f}] ({verdict}, paired bootstrap over groups)"
            )
        for path in sorted((directory / run_dir(run)).glob("*/copying.parquet")):
            verdict = pd.read_parquet(path).verdict.iloc[0]
            print(f"  ~{size:>4} slices  {path.parent.name}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
