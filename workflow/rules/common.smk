import sys
from pathlib import Path

# Parse-time imports come from this checkout; jobs use the installed package (pip -e or
# the conda env, which installs this checkout too).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from gantrace import simulate
from gantrace.config import validate_config
from gantrace.errors import GantraceError
from gantrace.ingest import image_table, simulated_table, under_root

try:
    validate_config(config, workflow.source_path("../../config/schema.yaml"))
except GantraceError as err:
    raise WorkflowError(str(err)) from None

R = "results"
INGEST = config["ingest"]
DATASETS = config["datasets"]
FEATURES = config["features"]
METHODS = {t: config[t]["methods"] for t in ("attribution", "membership")}
FUSIONS = {t: config[t]["fusion"] for t in ("attribution", "membership")}
TORCH_EXTRACTORS = {"torchvision", "dinov2", "timm"}


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
    return [m for m, s in METHODS[task].items() if ds in s.get("datasets", [ds])]


def fusions_for(task, ds):
    ms = set(methods_for(task, ds))
    return [f for f, s in FUSIONS[task].items() if set(s["methods"]) <= ms]


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


def uses_gpu(feature):
    return int(FEATURES[feature]["extractor"] in TORCH_EXTRACTORS)


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
