import functools
import re
import sys
from pathlib import Path

# Parse-time imports come from this checkout; jobs use the installed package (pip -e or
# the conda env, which installs this checkout too).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from gantrace import catalogue, cluster
from gantrace.data import simulate
from gantrace.config import validate_config
from gantrace.errors import GantraceError
from gantrace.data.ingest import image_table, simulated_table, under_root

try:
    # Catalogue entries (config/methods/<id>.yaml) join the config before it is checked.
    CATALOGUE = catalogue.expand(config, Path(workflow.basedir) / "config" / "methods")
    validate_config(config, workflow.source_path("../../config/schema.yaml"))
    cluster.check_slurm_resources(workflow.resource_settings)
except GantraceError as err:
    raise WorkflowError(str(err)) from None

R = "results"
INGEST = config["ingest"]
DATASETS = config.get("datasets", {})  # a benchmark-only config has none
FEATURES = config["features"]
METHODS = {t: config[t]["methods"] for t in ("attribution", "membership")}
FUSIONS = {t: config[t]["fusion"] for t in ("attribution", "membership")}
# Features trained on a dataset's labelled images by a dataset-level rule (finetune.smk),
# not extracted shard by shard (gantrace.features.finetuned.EXTRACTOR).
LEARNED_EXTRACTORS = {"finetuned"}


wildcard_constraints:
    dataset=r"[^/]+",
    shard=r"\d+",
    feature=r"[^/]+",
    region=r"full|lung|outer",
    method=r"(?!fused_)[^/]+",
    fusion=r"[^/]+",


def sim_dir(ds):
    return f"{R}/{ds}/simulated"


def simulate_params(ds):
    return {
        "task": DATASETS[ds]["task"],
        "seed": config["seed"],
        **DATASETS[ds]["simulate"],
    }


_TABLES = {}


def images(ds):
    """Every image of a dataset (parsed once): id, path, role, label, generator, shard."""
    if ds not in _TABLES:
        cfg = DATASETS[ds]
        try:
            if "simulate" in cfg:
                plan = simulate.plan(simulate_params(ds))
                _TABLES[ds] = simulated_table(ds, plan, sim_dir(ds), INGEST["n_shards"])
            else:
                _TABLES[ds] = image_table(
                    ds, cfg, INGEST["n_shards"], root=config.get("data_root")
                )
        except GantraceError as err:
            raise WorkflowError(str(err)) from None
    return _TABLES[ds]


def shards(ds):
    return sorted(set(images(ds).shard))


def shard_files(wc):
    table = images(wc.dataset)
    return list(table.path[table.shard == int(wc.shard)])


def datasets_of(task):
    return [d for d, c in DATASETS.items() if c["task"] == task]


def methods_for(task, ds):
    """Methods run on a dataset: those listing it (or listing none), except methods that
    learn from labels on a dataset without enough labelled images (a test set), and
    open-set methods on their own `known_from` dataset."""
    named = [
        m
        for m, s in METHODS[task].items()
        if ds in s.get("datasets", [ds]) and s.get("known_from") != ds
    ]
    return [m for m in named if labelled(ds) or not needs_labels(task, m)]


@functools.cache
def labelled(ds):
    """At least two labelled images per class: used / not used, or two generators."""
    table = images(ds)
    if DATASETS[ds]["task"] == "membership":
        return min((table.label == 1).sum(), (table.label == 0).sum()) >= 2
    counts = table.generator.dropna().astype(str).value_counts()
    return (counts.drop("", errors="ignore") >= 2).sum() >= 2


def needs_labels(task, method):
    """The method learns from the labelled images of the dataset it scores: a learned
    feature without `train_from`, a supervised scorer, or a scorer with tuned (listed)
    parameters."""
    from gantrace.membership.method import build_scorer, expand_grid

    spec = METHODS[task][method]
    feature = FEATURES[spec["feature"]]
    if feature["extractor"] in LEARNED_EXTRACTORS and not feature.get("train_from"):
        return True
    if task != "membership":
        return False
    # An instance, not the class: whether a scorer learns can hang on its parameters.
    supervised = getattr(
        build_scorer(expand_grid(spec["scorer"])[0]), "supervised", False
    )
    scorer = spec["scorer"] if isinstance(spec["scorer"], dict) else {}
    return supervised or any(isinstance(v, list) for v in scorer.values())


def fusions_for(task, ds):
    """Fusions whose methods all run on `ds`; a stacked fusion also needs its labels."""
    ms = set(methods_for(task, ds))
    return [
        f
        for f, s in FUSIONS[task].items()
        if set(s["methods"]) <= ms and (s.get("rule") != "stacked" or labelled(ds))
    ]


def method_spec(task, method):
    return {"task": task, "name": method, **METHODS[task][method]}


def truth_file(ds):
    if "simulate" in DATASETS[ds]:
        return f"{sim_dir(ds)}/truth.csv"
    truth = DATASETS[ds].get("truth")
    return under_root(truth, config.get("data_root")) if truth else []


def feature_path(ds, task, method):
    m = METHODS[task][method]
    return f"{R}/{ds}/features/{m['feature']}/{m.get('region', 'full')}.h5"


def known_inputs(wc):
    """An open-set method's known generators: its `known_from` dataset's features (same
    feature and region) and manifest; nothing for other methods."""
    source = METHODS["attribution"][wc.method].get("known_from")
    if source is None:
        return {}
    return {
        "known_features": feature_path(source, "attribution", wc.method),
        "known_manifest": f"{R}/{source}/manifest.parquet",
    }


def label_count(ds, name):
    """k of a run file's labels 1..k: the dataset's n_generators, or None (1..k found) where
    it has none or the method (or a fused one) estimates k itself (`n_clusters: auto`).
    """
    task = DATASETS[ds]["task"]
    if task != "attribution":
        return None
    fused = name.removeprefix("fused_")
    parts = FUSIONS[task][fused]["methods"] if name != fused else [name]
    if any(METHODS[task][m].get("n_clusters") == "auto" for m in parts):
        return None
    return DATASETS[ds].get("n_generators")


@functools.cache
def uses_gpu(feature):
    """1 for features computed by a network (learned ones included), else 0."""
    spec = FEATURES[feature]
    if spec["extractor"] in LEARNED_EXTRACTORS:
        return 1
    from gantrace.features import check_spec  # imports torch: only when asked

    try:
        return int(check_spec(spec, key=f"features.{feature}").uses_torch)
    except GantraceError as err:
        raise WorkflowError(str(err)) from None


def learned_features():
    """Feature names produced by `train_features` (a net trained on labelled images)."""
    return sorted(
        f for f, s in FEATURES.items() if s["extractor"] in LEARNED_EXTRACTORS
    )


def shard_features():
    """Feature names extracted shard by shard (`embed` + `gather_features`)."""
    return sorted(f for f in FEATURES if f not in learned_features())


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def train_from(wc):
    """The dataset a learned feature trains on: its `train_from`, else its own dataset."""
    source = FEATURES[wc.feature].get("train_from")
    if source is None:
        return wc.dataset
    if source not in DATASETS:
        raise WorkflowError(
            f"features.{wc.feature}.train_from: unknown dataset {source!r} "
            f"(defined: {', '.join(DATASETS)})"
        )
    return source


for _task, _methods in METHODS.items():
    for _name, _m in _methods.items():
        if _m["feature"] in learned_features() and _m.get("region", "full") != "full":
            raise WorkflowError(
                f"{_task}.methods.{_name}.region: learned feature {_m['feature']!r} covers "
                "whole images only; remove region (or set it to full)"
            )


def trains_network(task, method):
    """1 when a part of the method (its reducer or membership scorer) trains a network."""
    from gantrace.membership.method import SCORERS
    from gantrace.reduce import REDUCERS, spec_name

    spec = METHODS[task][method]
    parts = [REDUCERS.get(spec_name(spec.get("reducer")))]
    if task == "membership":
        # A tuned scorer may list values; its name is never a list.
        parts.append(SCORERS.get(spec_name(spec.get("scorer"))))
    return int(any(getattr(p, "trains", False) for p in parts))


def segmentation_datasets():
    return config["segmentation"].get("train_datasets") or list(DATASETS)


def unet_training_images():
    train = config["segmentation"]["train_shards"]
    return [
        f"{R}/{ds}/images/{s}.h5"
        for ds in segmentation_datasets()
        for s in shards(ds)
        if s in train
    ]


def results_of(ds):
    task = DATASETS[ds]["task"]
    names = methods_for(task, ds) + [f"fused_{f}" for f in fusions_for(task, ds)]
    return names


def result_tables(wc):
    task = DATASETS[wc.dataset]["task"]
    return [
        f"{R}/{wc.dataset}/{task}/{name}.parquet" for name in results_of(wc.dataset)
    ]


def all_targets():
    targets = [f"{R}/leaderboard.csv"]
    for ds in DATASETS:
        targets.append(f"{R}/{ds}/scores.parquet")
        targets += [f"{R}/submissions/{ds}/{name}.csv" for name in results_of(ds)]
        targets += plot_targets(ds)
        targets.append(f"{R}/submissions/{ds}/checked.txt")
    targets.append(f"{R}/leaderboard.html")
    return targets


onsuccess:
    board = Path(R) / "leaderboard.csv"
    if board.exists():
        print(
            f"\ngantrace: leaderboard written to {board} (scores per dataset in {R}/<dataset>/scores.parquet)"
        )


# -- plots for the report (workflow/rules/report.smk) -----------------------------------------
def image_shards(ds):
    return [f"{R}/{ds}/images/{s}.h5" for s in shards(ds)]


def attribution_method_tables(ds):
    return [f"{R}/{ds}/attribution/{m}.parquet" for m in methods_for("attribution", ds)]


def uses_masks(ds):
    """A method of the dataset reads lung masks (region lung or outer)."""
    task = DATASETS[ds]["task"]
    return any(
        METHODS[task][m].get("region", "full") != "full" for m in methods_for(task, ds)
    )


def true_mask_dir(ds):
    """Folder of true lung masks (<image_id>.png) for Dice, or None."""
    if "simulate" in DATASETS[ds]:
        return f"{sim_dir(ds)}/masks"
    seg = config["segmentation"]
    if seg["mask_source"] == "folder" and seg.get("mask_dir"):
        return str(seg["mask_dir"])
    return None


def plot_targets(ds):
    """PNGs of one dataset. The segmentation montage only where lung masks are computed
    anyway (a method uses region lung/outer), so plots never add U-Net work."""
    plots = f"{R}/{ds}/plots"
    if not methods_for(DATASETS[ds]["task"], ds):
        targets = []
    elif DATASETS[ds]["task"] == "attribution":
        targets = [
            f"{plots}/attribution_tsne.png",
            f"{plots}/attribution_confusion.png",
            f"{plots}/attribution_montage.png",
        ]
    else:
        targets = [f"{plots}/membership_scores.png", f"{plots}/membership_roc_pr.png"]
    if uses_masks(ds):
        targets.append(f"{R}/segmentation/{ds}.png")
    return targets


# -- benchmark builder (workflow/rules/benchmark.smk) ---------------------------------------
BENCH = config.get("benchmark")
BENCH_DIR = f"{R}/benchmark/{BENCH['name']}" if BENCH else f"{R}/benchmark/_unset"
BENCH_MODELS = (
    f"{R}/models/benchmark/{BENCH['name']}" if BENCH else f"{R}/models/benchmark/_unset"
)
BENCH_LOGS = (
    f"{R}/logs/benchmark/{BENCH['name']}" if BENCH else f"{R}/logs/benchmark/_unset"
)
BENCH_TIMES = (
    f"{R}/timings/benchmark/{BENCH['name']}" if BENCH else f"{R}/timings/_unset"
)


def bench_config():
    if not BENCH:
        raise WorkflowError(
            "`snakemake benchmark` needs a `benchmark:` section in the config "
            "(copy config/benchmark.yaml and set `source` to your folder of slices)"
        )
    return BENCH


def bench_generators():
    return list(bench_config()["generators"])


def bench_source_files(wc):
    from gantrace.benchmark_builder.split import list_slices

    try:
        return [str(p) for p in list_slices(bench_config()["source"])]
    except GantraceError as err:
        raise WorkflowError(str(err)) from None


def bench_targets(wc):
    gens = bench_generators()
    return [
        f"{BENCH_DIR}/gantrace.yaml",
        *expand(f"{BENCH_DIR}/report/{{g}}_grid.png", g=gens),
        *expand(f"{BENCH_DIR}/report/{{g}}_memorisation.txt", g=gens),
    ]


wildcard_constraints:
    generator=r"[^/]+",
