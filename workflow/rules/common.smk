import functools
import re
import sys
from pathlib import Path

# Parse-time imports come from this checkout; jobs use the installed package (pip -e or
# the conda env, which installs this checkout too).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from gantrace import catalogue, cluster, plan, runs
from gantrace.config import validate_config
from gantrace.errors import GantraceError
from gantrace.data.ingest import under_root
from gantrace.evaluation.metrics import PRIMARY
from gantrace.evaluation.summary import run_summary


def checked(fn):
    """`fn` raising a GantraceError (a config or data problem) as a WorkflowError: its
    message alone, no traceback. Every call from here into the library goes through it.
    """

    @functools.wraps(fn)
    def call(*args):
        try:
            return fn(*args)
        except GantraceError as err:
            raise WorkflowError(str(err)) from None

    return call


# Every result of this config under results/<run>/ (gantrace.runs): runs never mix.
config.setdefault("run", runs.default_run(workflow.overwrite_configfiles))
# Catalogue entries (config/methods/<id>.yaml) join the config before it is checked.
CATALOGUE = checked(catalogue.expand)(
    config, Path(workflow.basedir) / "config" / "methods"
)
checked(validate_config)(config, workflow.source_path("../../config/schema.yaml"))
# SLURM partitions and account: refused while the profile's placeholders are unset.
checked(cluster.check_slurm_resources)(workflow.resource_settings)

R = runs.run_dir(config["run"])
INGEST = config["ingest"]
DATASETS = config.get("datasets", {})  # a benchmark-only config has none
FEATURES = config["features"]
FUSIONS = {t: config[t]["fusion"] for t in plan.TASKS}


wildcard_constraints:
    dataset=r"[^/]+",
    shard=r"\d+",
    feature=r"[^/]+",
    region=r"full|lung|outer",
    method=r"(?!fused_)[^/]+",
    fusion=r"[^/]+",
    generator=r"[^/]+",


def sim_dir(ds):
    return f"{R}/{ds}/simulated"


def reference_dir(ds):
    """Where a dataset's reference generator and its samples live."""
    return f"{R}/models/{ds}/reference_generator"


PLAN = checked(plan.Plan)(
    config,
    lambda ds: plan.image_table(
        config, ds, sim_dir(ds), f"{reference_dir(ds)}/samples"
    ),
)
# Every part built, every folder listed, every mask source and weight looked for, now: all
# problems in one message, before any job. Jobs a cluster runs parse again: checked once.
# `snakemake fetch_weights` is how missing weights are fetched: it checks all but them.
if workflow.is_main_process:
    _FETCHING = any(
        a == "fetch_weights" or a.endswith("weights_fetched.json") for a in sys.argv[1:]
    )
    checked(PLAN.check)(not _FETCHING, workflow.overwrite_configfiles)
# What runs where (gantrace.plan), under the names the rules use.
images = checked(PLAN.images)
shards = checked(PLAN.shards)
simulate_params = checked(PLAN.simulate_params)
groups_of = checked(PLAN.groups)
repeated = checked(PLAN.repeated)
REPEATS = checked(PLAN.repeats)()
methods_for = checked(PLAN.methods_for)
fusions_for = checked(PLAN.fusions_for)
results_of = checked(PLAN.results_of)
method_spec = checked(PLAN.method_spec)
label_count = checked(PLAN.label_count)
uses_gpu = checked(PLAN.uses_gpu)
trains_network = checked(PLAN.trains_network)
learned_features = checked(PLAN.learned_features)
shard_features = checked(PLAN.shard_features)
segmentation_datasets = checked(PLAN.segmentation_datasets)
copying_feature = checked(PLAN.copying_feature)
copying_datasets = checked(PLAN.copying_datasets)
copying_params = checked(PLAN.copying)()
reference_generator_datasets = checked(PLAN.reference_generator_datasets)
reference_generator = checked(PLAN.reference_generator)
role_paths = checked(PLAN.role_paths)
bench_config = checked(PLAN.benchmark)
bench_generators = checked(PLAN.benchmark_generators)
bench_seed = lambda wc: checked(PLAN.benchmark_seed)(wc.generator)
# Input functions: wildcards in, the plan's answer out.
shard_files = lambda wc: checked(PLAN.shard_paths)(wc.dataset, wc.shard)
train_from = lambda wc: checked(PLAN.train_from)(wc.feature, wc.dataset)
bench_source_files = lambda wc: checked(PLAN.benchmark_slices)()
reference_training_paths = lambda wc: role_paths(wc.dataset, "reference_real")
result_tables = lambda wc: [
    f"{R}/{wc.dataset}/{PLAN.task(wc.dataset)}/{n}.parquet"
    for n in results_of(wc.dataset)
]


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def truth_file(ds):
    if "simulate" in DATASETS[ds]:
        return f"{sim_dir(ds)}/truth.csv"
    truth = DATASETS[ds].get("truth")
    return under_root(truth, config.get("data_root")) if truth else []


def true_mask_dir(ds):
    """Folder of true lung masks (<image_id>.png) for Dice, or None."""
    seg = config["segmentation"]
    if "simulate" in DATASETS[ds]:
        return f"{sim_dir(ds)}/masks"
    return str(seg["mask_dir"]) if seg["mask_source"] == "folder" else None


def feature_path(ds, task, m):
    return f"{R}/{ds}/features/{PLAN.methods[task][m]['feature']}/{PLAN.region(task, m)}.h5"


def copying_features(ds):
    """The whole-image features the data-copying test of `ds` runs in."""
    return f"{R}/{ds}/features/{copying_feature(ds)}/full.h5"


def copying_tables():
    """Every data-copying summary of the run (gantrace.plan.Plan.copying_datasets)."""
    return [f"{R}/{ds}/copying.parquet" for ds in copying_datasets()]


def known_inputs(wc):
    """An open-set method's `known_from` dataset: its features (same feature, region)."""
    source = PLAN.known_from(wc.method)
    if source is None:
        return {}
    return {
        "known_features": feature_path(source, "attribution", wc.method),
        "known_manifest": f"{R}/{source}/manifest.parquet",
    }


def repeat_tables(wc):
    """Each repeated method's tables, repeat 0 (its own result) first, method by method."""
    task = PLAN.task(wc.dataset)
    return [
        (
            f"{R}/{wc.dataset}/{task}/{m}.parquet"
            if r == 0
            else f"{R}/{wc.dataset}/repeats/{task}/{m}/{r}.parquet"
        )
        for m in repeated(wc.dataset)
        for r in range(REPEATS)
    ]


def repeat_summaries():
    """The datasets' repeats.parquet (none when evaluation.repeats is 1)."""
    return [f"{R}/{ds}/repeats.parquet" for ds in DATASETS if repeated(ds)]


def image_shards(ds):
    return [f"{R}/{ds}/images/{s}.h5" for s in shards(ds)]


def unet_training_images():
    return [f"{R}/{d}/images/{s}.h5" for d, s in checked(PLAN.unet_training_shards)()]


def attribution_method_tables(ds):
    return [f"{R}/{ds}/attribution/{m}.parquet" for m in methods_for("attribution", ds)]


def plot_targets(ds):
    """PNGs of one dataset (which ones: gantrace.plan.Plan.plots)."""
    seg = {plan.SEGMENTATION_PLOT: f"{R}/segmentation/{ds}.png"}
    return [seg.get(p, f"{R}/{ds}/plots/{p}.png") for p in checked(PLAN.plots)(ds)]


def all_targets():
    targets = [f"{R}/leaderboard.csv"]
    for ds in DATASETS:
        targets.append(f"{R}/{ds}/scores.parquet")
        targets += [f"{R}/submissions/{ds}/{name}.csv" for name in results_of(ds)]
        targets += plot_targets(ds)
        targets += subset_targets(ds)
        targets.append(f"{R}/submissions/{ds}/checked.txt")
    targets.append(f"{R}/leaderboard.html")
    return targets


onsuccess:
    # The run's summary (datasets, jobs, refused images, leaderboard, best methods); `log` is
    # Snakemake's log of this run. A dry run or a benchmark-only run has no leaderboard.
    if (Path(R) / "leaderboard.csv").exists() and not workflow.dryrun:
        print("\n" + run_summary(R, DATASETS, log))


# -- benchmark builder (workflow/rules/benchmark.smk) ---------------------------------------
_BENCH = (config.get("benchmark") or {}).get("name", "_unset")
BENCH_DIR = f"{R}/benchmark/{_BENCH}"
BENCH_MODELS = f"{R}/models/benchmark/{_BENCH}"
BENCH_LOGS = f"{R}/logs/benchmark/{_BENCH}"
BENCH_TIMES = f"{R}/timings/benchmark/{_BENCH}"


def bench_targets(wc):
    """Both task layouts (2 generators or more), and the subset layout (`subsets`)."""
    reports = [
        f"{BENCH_DIR}/report/{{g}}_{end}" for end in ("grid.png", "memorisation.txt")
    ]
    targets = (
        [f"{BENCH_DIR}/subsets/gantrace.yaml"] if bench_config().get("subsets") else []
    )
    if len(bench_generators()) < 2:
        return targets
    return [
        f"{BENCH_DIR}/gantrace.yaml",
        *expand(reports, g=bench_generators()),
        *targets,
    ]


# -- subset attribution (subset.smk, subset_score.smk, benchmark_subsets.smk) ----------
def subset_train_inputs(wc):
    """A supervised method's `train_from` dataset (when not the scored one): its features
    (same feature and region) and manifest."""
    source = checked(PLAN.subset_train_from)(wc.method)
    if source is None or source == wc.dataset:
        return {}
    return {
        "train_features": feature_path(source, "subset_attribution", wc.method),
        "train_manifest": f"{R}/{source}/manifest.parquet",
    }


def subset_targets(ds):
    return [f"{R}/{ds}/subset_confusion.csv"] if ds in SUBSET_DATASETS else []


def subset_generator_spec(wc):
    bench = bench_config()
    return bench["generators"][bench["subsets"]["generator"]]
