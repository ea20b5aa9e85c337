"""The ImageCLEF edition configs: schema-valid, and the 2024 layout runs end to end."""

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake

from gantrace.config import validate_config
from gantrace.data import simulate
from gantrace.evaluation.runfiles import validate_run_file

SCHEMA = ROOT / "config" / "schema.yaml"
EDITIONS = ("imageclef2023", "imageclef2024", "imageclef2025")


def load_edition(name, data_root="/data/imageclef"):
    cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    cfg["data_root"] = str(data_root)
    return cfg


@pytest.mark.parametrize("edition", EDITIONS)
def test_edition_config_is_valid(edition):
    cfg = validate_config(load_edition(edition), SCHEMA)
    for name, ds in cfg["datasets"].items():
        roles = ("generated", "real_used", "real_not_used", "real_unknown", "real_subsets")
        for key in (*roles, "truth"):
            specs = ds.get(key, {})
            for spec in specs.values() if isinstance(specs, dict) else [specs]:
                assert not Path(spec).is_absolute(), f"{edition} {name}.{key}: {spec}"


def test_2025_ranks_membership_by_kappa():
    cfg = validate_config(load_edition("imageclef2025"), SCHEMA)
    metrics = {n: d.get("metric") for n, d in cfg["datasets"].items() if d["task"] == "membership"}
    assert metrics and set(metrics.values()) == {"kappa"}


def _move(src_dir, dest_dir):
    dest_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(src_dir.glob("*.png")):
        shutil.copy2(f, dest_dir / f.name)


def make_membership_layout(root, scratch):
    """membership/generator{1,2}/{dev,test}/..., as the 2024 and 2025 configs document."""
    for g in (1, 2):
        sim = scratch / f"mem{g}"
        simulate.write_dataset(
            {
                "task": "membership",
                "seed": g,
                "n_used": 4,
                "n_not_used": 4,
                "n_generated": 6,
                "n_unknown": 6,
            },
            sim,
        )
        gen = root / "membership" / f"generator{g}"
        for role in ("generated", "real_used", "real_not_used"):
            _move(sim / role, gen / "dev" / role)
        _move(sim / "generated", gen / "test" / "generated")
        _move(sim / "real_unknown", gen / "test" / "real_unknown")


def make_2024_layout(root, scratch):
    """A miniature of the 2024 release in the layout config/imageclef2024.yaml documents."""
    make_membership_layout(root, scratch)
    sim = scratch / "attr"
    gens = ["checkerboard", "spectral", "oversmooth", "upsample"]
    simulate.write_dataset({"task": "attribution", "generators": gens, "n_per_generator": 4}, sim)
    for i, g in enumerate(gens[:3], start=1):
        _move(sim / "generated" / g, root / "attribution" / "dev" / f"generator{i}")
    for g in gens:  # the test folder mixes all four generators, one unseen on dev
        _move(sim / "generated" / g, root / "attribution" / "test" / "generated")


def test_2024_layout_runs_end_to_end(workflow_dir, tmp_path):
    data_root = tmp_path / "imageclef2024"
    make_2024_layout(data_root, tmp_path / "scratch")
    edition = load_edition("imageclef2024", data_root)
    # Keep the edition's datasets (and data_root); swap the heavy parts for cheap ones.
    cfg = {
        "data_root": edition["data_root"],
        "seed": 0,
        "ingest": {**edition["ingest"], "n_shards": 1},
        "datasets": edition["datasets"],
        "segmentation": {
            "mask_source": "threshold",
            "unet": {"input_size": 64, "epochs": 1, "decoder_channels": [16, 8, 4]},
        },
        "features": {"pixels": {"name": "pixels", "size": 8}},
        "attribution": {
            "methods": {
                "pixels_kmeans": {"feature": "pixels", "clusterer": {"name": "kmeans"}},
                # open set: generators 1-3 known from dev, the 4th found as a new one
                "pixels_open_set": {
                    "feature": "pixels",
                    "clusterer": {"name": "kmeans"},
                    "known_from": "attribution_dev",
                },
            }
        },
        "membership": {
            "n_folds": 2,
            "methods": {"pixels_knn": {"feature": "pixels", "scorer": {"name": "knn", "k": 1}}},
        },
    }
    config = workflow_dir / "edition.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # Every dataset is parsed (its folders listed); to stay fast on 2 cores, run the three
    # test sets and the one dev set laid out as one folder per generator to checked run files.
    checked = [
        "membership_gen1_test",
        "membership_gen2_test",
        "attribution_test",
        "attribution_dev",
    ]
    targets = [f"results/edition/submissions/{ds}/checked.txt" for ds in checked]
    snakemake(workflow_dir, *targets, "--configfile", str(config))

    subs = workflow_dir / "results" / "edition" / "submissions"
    for ds in checked:
        checked = (subs / ds / "checked.txt").read_text()
        assert "\tOK" in checked and "FAILED" not in checked, checked
    for g in (1, 2):
        unknown = sorted(
            p.stem for p in (data_root / f"membership/generator{g}/test/real_unknown").iterdir()
        )
        validate_run_file(subs / f"membership_gen{g}_test" / "pixels_knn.csv", unknown, {0, 1})
    test_ids = sorted(p.stem for p in (data_root / "attribution/test/generated").iterdir())
    for method in ("pixels_kmeans", "pixels_open_set"):
        validate_run_file(subs / "attribution_test" / f"{method}.csv", test_ids, {1, 2, 3, 4})
    assert not (subs / "attribution_dev" / "pixels_open_set.csv").exists()
    dev_ids = sorted(p.stem for p in (data_root / "attribution/dev").rglob("*.png"))
    validate_run_file(subs / "attribution_dev" / "pixels_kmeans.csv", dev_ids, {1, 2, 3})


def test_leaderboard_metric_per_dataset(tmp_path):
    import pandas as pd

    from gantrace import io, stages

    rows = [
        {"dataset": "a", "task": "membership", "method": "m1", "kind": "method", "split": "dev"},
        {"dataset": "a", "task": "membership", "method": "m2", "kind": "method", "split": "dev"},
    ]
    scores = pd.DataFrame(rows).assign(n=10, f1=[0.9, 0.5], kappa=[0.1, 0.4])
    io.write_table(scores, tmp_path / "a.parquet")
    stages.leaderboard([tmp_path / "a.parquet"], tmp_path / "f1.csv")
    stages.leaderboard([tmp_path / "a.parquet"], tmp_path / "kappa.csv", {"a": "kappa"})
    by_f1 = pd.read_csv(tmp_path / "f1.csv")
    by_kappa = pd.read_csv(tmp_path / "kappa.csv")
    assert list(by_f1.method) == ["m1", "m2"] and set(by_f1.metric) == {"f1"}
    assert list(by_kappa.method) == ["m2", "m1"] and set(by_kappa.metric) == {"kappa"}


def test_image_table_reads_relative_paths_under_root(tmp_path):
    import numpy as np
    from PIL import Image

    from gantrace.data.ingest import image_table

    for role in ("generated", "real_unknown"):
        (tmp_path / "root" / role).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "root" / role / f"{role}.png")
    ds = {
        "task": "membership",
        "generated": "generated",
        "real_unknown": str(tmp_path / "root" / "real_unknown"),  # absolute: used as given
    }
    table = image_table("x", ds, 2, root=tmp_path / "root")
    assert sorted(table.path) == sorted(
        str(tmp_path / "root" / r / f"{r}.png") for r in ("generated", "real_unknown")
    )


def make_2025_layout(root, scratch):
    """A miniature of the 2025 release as config/imageclef2025.yaml documents it: membership
    as in 2024; subtask 2 in the organisers' GAN25_Identify_Training_Data_Subset/{real,
    generated}/<subset>/ layout, the test images of the same generators in one folder."""
    from gantrace.data import simulate_subsets

    make_membership_layout(root, scratch)
    sim = scratch / "subsets"
    params = {"task": "subset_attribution", "n_subsets": 5, "n_real": 4, "n_generated": 8}
    table = simulate_subsets.write_dataset(params, sim)
    release = root / "GAN25_Identify_Training_Data_Subset"
    test = root / "GAN25_Identify_Training_Data_Subset_test" / "generated"
    test.mkdir(parents=True)
    for s in simulate_subsets.subset_names(5):
        _move(sim / "real" / s, release / "real" / s)
        ids = sorted(table.image_id[(table.role == "generated") & (table.subset == s)])
        (release / "generated" / s).mkdir(parents=True)
        for k, iid in enumerate(ids):  # half labelled (dev), half in the mixed test folder
            dest = release / "generated" / s if k % 2 else test
            shutil.copy2(sim / "generated" / s / f"{iid}.png", dest / f"{iid}.png")
    return table


def test_2025_layout_runs_end_to_end(workflow_dir, tmp_path):
    """The 2025 edition's datasets on a miniature of its layout: subtask 2's run files are
    written and checked, the dev set is scored by accuracy, and the supervised method
    (train_from: subsets_dev) runs on the unlabelled test set."""
    import pandas as pd

    data_root = tmp_path / "imageclef2025"
    table = make_2025_layout(data_root, tmp_path / "scratch")
    edition = load_edition("imageclef2025", data_root)
    methods = edition["subset_attribution"]["methods"]
    assert methods["resnet50_linear_svm"]["train_from"] == "subsets_dev"
    cfg = {
        "run": "edition",
        "data_root": edition["data_root"],
        "seed": 0,
        "ingest": {**edition["ingest"], "n_shards": 1},
        "datasets": edition["datasets"],
        "segmentation": {"mask_source": "threshold"},
        "features": {"pixels": {"name": "pixels", "size": 16}},
        # the edition's kinds of method, on a weight-free feature
        "subset_attribution": {
            "n_folds": 2,
            "methods": {
                "pixels_nearest_subset": {
                    "feature": "pixels",
                    "assigner": {"name": "nearest_subset"},
                },
                "pixels_cluster_match": {
                    "feature": "pixels",
                    "assigner": {"name": "cluster_match"},
                },
                "pixels_linear_svm": {
                    "feature": "pixels",
                    "assigner": {"name": "supervised", "classifier": "linear_svm"},
                    "train_from": "subsets_dev",
                },
            },
            "fusion": {
                "vote": {
                    "methods": [
                        "pixels_nearest_subset",
                        "pixels_cluster_match",
                        "pixels_linear_svm",
                    ]
                }
            },
        },
    }
    config = workflow_dir / "edition.yaml"
    config.write_text(yaml.safe_dump(cfg))
    targets = [
        f"results/edition/submissions/{ds}/checked.txt" for ds in ("subsets_dev", "subsets_test")
    ]
    snakemake(
        workflow_dir,
        *targets,
        "results/edition/subsets_dev/scores.parquet",
        "--configfile",
        str(config),
    )

    subs = workflow_dir / "results" / "edition" / "submissions"
    test_ids = sorted(
        p.stem for p in (data_root / "GAN25_Identify_Training_Data_Subset_test/generated").iterdir()
    )
    names = ["pixels_nearest_subset", "pixels_cluster_match", "pixels_linear_svm", "fused_vote"]
    for name in names:
        validate_run_file(subs / "subsets_test" / f"{name}.csv", test_ids, {1, 2, 3, 4, 5})
    for ds in ("subsets_dev", "subsets_test"):
        checked = (subs / ds / "checked.txt").read_text()
        assert checked.count("\tOK") == len(names) and "FAILED" not in checked, checked
    # label i is the i-th subset: the nearest-subset answers on test agree with the truth
    truth = dict(zip(table.image_id, table.subset))
    lines = (subs / "subsets_test" / "pixels_nearest_subset.csv").read_text().split()
    hits = [truth[i] == f"subset{label}" for i, label in (line.split(",") for line in lines)]
    assert sum(hits) / len(hits) > 0.5, hits  # chance is 0.2
    scores = pd.read_parquet(workflow_dir / "results/edition/subsets_dev/scores.parquet")
    assert set(scores.method) == {
        "pixels_nearest_subset",
        "pixels_cluster_match",
        "pixels_linear_svm",
        "fused_vote",
    }
    assert (scores.n == 20).all() and scores.accuracy.between(0, 1).all()
