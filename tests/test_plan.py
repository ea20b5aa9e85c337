"""The workflow's planning (gantrace.plan): which methods run on which dataset, which jobs
need labels, a GPU or a trained network. No Snakemake, no image files: the image tables are
built in memory with the columns the workflow's image listing gives."""

import copy
from pathlib import Path

import pandas as pd
import pytest

from gantrace import catalogue
from gantrace.config import validate_config
from gantrace.errors import ConfigError
from gantrace.plan import Plan, image_table, is_learned

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
KMEANS = {"name": "kmeans"}


def _feature(extractor, **params):
    return {"name": extractor, **params}


def _table(rows):
    """An image table: (image_id, role, label, generator) rows, two shards."""
    table = pd.DataFrame(rows, columns=["image_id", "role", "label", "generator"])
    table.insert(1, "path", [f"data/{i}.png" for i in table.image_id])
    table["shard"] = [i % 2 for i in range(len(table))]
    return table


def _membership(labelled):
    rows = [(f"g{i}", "generated", -1, "") for i in range(4)]
    if labelled:
        rows += [(f"u{i}", "real_used", 1, "") for i in range(3)]
        rows += [(f"n{i}", "real_not_used", 0, "") for i in range(3)]
    return _table(rows + [(f"x{i}", "real_unknown", -1, "") for i in range(3)])


def _attribution(labelled):
    gens = ["a", "a", "b", "b", "b"] if labelled else [""] * 5
    return _table([(f"i{i}", "generated", -1, g) for i, g in enumerate(gens)])


TABLES = {
    "dev_mem": _membership(labelled=True),
    "test_mem": _membership(labelled=False),
    "dev_att": _attribution(labelled=True),
    "test_att": _attribution(labelled=False),
}


def _config():
    return {
        "ingest": {"n_shards": 2},
        "datasets": {
            "dev_mem": {"task": "membership", "real_used": "u", "real_not_used": "n"},
            "test_mem": {"task": "membership", "generated": "g", "real_unknown": "x"},
            "dev_att": {
                "task": "attribution",
                "generated": {"a": "ga", "b": "gb"},
                "n_generators": 2,
            },
            "test_att": {"task": "attribution", "generated": "gt"},
        },
        "segmentation": {"train_datasets": ["dev_mem"], "train_shards": [0]},
        "features": {
            "pixels": _feature("pixels", size=8),
            "resnet": _feature("torchvision", arch="resnet18", weights="none"),
            "ft_own": _feature("finetuned", arch="custom"),
            "ft_dev": _feature("finetuned", arch="custom", train_from="dev_att"),
        },
        "attribution": {
            "methods": {
                "kmeans": {"feature": "pixels", "clusterer": KMEANS},
                "auto_k": {"feature": "pixels", "clusterer": KMEANS, "n_clusters": "auto"},
                "lung": {"feature": "pixels", "region": "lung", "clusterer": KMEANS},
                "ft_own_kmeans": {"feature": "ft_own", "clusterer": KMEANS},
                "ft_dev_kmeans": {"feature": "ft_dev", "clusterer": KMEANS},
                "open": {"feature": "pixels", "clusterer": KMEANS, "known_from": "dev_att"},
                "ae": {
                    "feature": "pixels",
                    "reducer": {"name": "autoencoder"},
                    "clusterer": KMEANS,
                },
                "resnet_kmeans": {"feature": "resnet", "clusterer": KMEANS},
            },
            "fusion": {
                "vote": {"methods": ["kmeans", "ft_own_kmeans"]},
                "rr": {"methods": ["kmeans", "auto_k"], "rule": "rerank"},
            },
        },
        "membership": {
            "methods": {
                "knn": {"feature": "pixels", "scorer": {"name": "knn", "k": 1}},
                "knn3": {"feature": "pixels", "scorer": {"name": "knn", "k": 3}},
                "tuned": {"feature": "pixels", "scorer": {"name": "knn", "k": [1, 3]}},
                "centroids": {"feature": "pixels", "scorer": {"name": "class_centroids"}},
                "not_used_ref": {
                    "feature": "pixels",
                    "scorer": {"name": "calibrated_knn", "reference": "not_used"},
                },
                "ae_scorer": {"feature": "pixels", "scorer": {"name": "centroid_autoencoder"}},
                "own_only": {
                    "feature": "pixels",
                    "scorer": {"name": "knn"},
                    "datasets": ["dev_mem"],
                },
            },
            "fusion": {
                "mean": {"methods": ["knn", "knn3"], "rule": "mean_rank"},
                "stacked": {"methods": ["knn", "knn3"], "rule": "stacked"},
                "with_tuned": {"methods": ["knn", "tuned"]},
            },
        },
    }


def _plan(cfg=None, tables=TABLES):
    return Plan(validate_config(cfg or _config(), SCHEMA), tables)


@pytest.fixture(scope="module")
def plan():
    return _plan()


def test_a_dataset_is_labelled_with_two_images_per_class(plan):
    assert plan.labelled("dev_mem") and plan.labelled("dev_att")
    assert not plan.labelled("test_mem") and not plan.labelled("test_att")
    one_each = _table([("i0", "generated", -1, "a"), ("i1", "generated", -1, "b")])
    assert not _plan(tables={**TABLES, "dev_att": one_each}).labelled("dev_att")


def test_membership_methods_on_labelled_and_unlabelled_datasets(plan):
    every = ["knn", "knn3", "tuned", "centroids", "not_used_ref", "ae_scorer"]
    assert plan.methods_for("membership", "dev_mem") == every + ["own_only"]
    # a test set: no supervised scorer, no tuned (listed) parameter, no scorer whose
    # reference pool is the not-used images; `own_only` lists its dataset
    assert plan.methods_for("membership", "test_mem") == ["knn", "knn3"]
    assert plan.needs_labels("membership", "centroids")  # a supervised class
    assert plan.needs_labels("membership", "not_used_ref")  # supervised by its parameter
    assert plan.needs_labels("membership", "tuned")
    assert not plan.needs_labels("membership", "knn")


def test_attribution_methods_learned_features_and_open_set(plan):
    dev, test = (
        plan.methods_for("attribution", "dev_att"),
        plan.methods_for("attribution", "test_att"),
    )
    # a learned feature trained on the dataset itself needs its labels; one trained on
    # another dataset (`train_from`) does not
    assert "ft_own_kmeans" in dev and "ft_own_kmeans" not in test
    assert "ft_dev_kmeans" in dev and "ft_dev_kmeans" in test
    assert plan.needs_labels("attribution", "ft_own_kmeans")
    assert not plan.needs_labels("attribution", "ft_dev_kmeans")
    # open set: never on its own known_from dataset
    assert "open" not in dev and "open" in test
    assert plan.known_from("open") == "dev_att" and plan.known_from("kmeans") is None
    assert [m for m in test if m != "open"] == [m for m in dev if m != "ft_own_kmeans"]


def test_fusions_need_all_their_methods_and_stacked_needs_labels(plan):
    assert plan.fusions_for("membership", "dev_mem") == ["mean", "stacked", "with_tuned"]
    assert plan.fusions_for("membership", "test_mem") == ["mean"]
    assert plan.fusions_for("attribution", "dev_att") == ["vote", "rr"]
    assert plan.fusions_for("attribution", "test_att") == ["rr"]  # ft_own_kmeans is missing
    assert plan.results_of("test_mem") == ["knn", "knn3", "fused_mean"]


def test_gpu_jobs_networks_and_weight_free_features(plan):
    assert plan.uses_gpu("pixels") == 0  # weight-free
    assert plan.uses_gpu("resnet") == 1  # a network, even with random weights
    assert plan.uses_gpu("ft_own") == plan.uses_gpu("ft_dev") == 1  # trained CNNs
    assert plan.trains_network("attribution", "ae") == 1  # autoencoder reducer
    assert plan.trains_network("attribution", "kmeans") == 0
    assert plan.trains_network("attribution", "resnet_kmeans") == 0  # features are given
    assert plan.trains_network("membership", "ae_scorer") == 1
    assert plan.trains_network("membership", "tuned") == 0


def test_learned_features_train_on_their_dataset_or_train_from(plan):
    assert plan.learned_features() == ["ft_dev", "ft_own"]
    assert plan.shard_features() == ["pixels", "resnet"]
    assert plan.train_from("ft_own", "test_att") == "test_att"
    assert plan.train_from("ft_dev", "test_att") == "dev_att"
    assert is_learned(_feature("finetuned")) and not is_learned(_feature("pixels"))
    cfg = _config()
    cfg["features"]["ft_dev"]["train_from"] = "nowhere"
    with pytest.raises(ConfigError, match=r"features\.ft_dev\.train_from: unknown dataset"):
        _plan(cfg).train_from("ft_dev", "test_att")


def test_learned_features_cover_whole_images_only():
    cfg = _config()
    cfg["attribution"]["methods"]["ft_own_kmeans"]["region"] = "lung"
    with pytest.raises(ConfigError, match=r"ft_own_kmeans\.region: learned feature 'ft_own'"):
        _plan(cfg).check()


def test_label_count_of_run_files(plan):
    assert plan.label_count("dev_att", "kmeans") == 2  # the dataset's n_generators
    assert plan.label_count("dev_att", "auto_k") is None  # estimates k: 1..k found
    assert plan.label_count("dev_att", "fused_rr") is None  # fuses an auto-k method
    assert plan.label_count("dev_att", "fused_vote") == 2
    assert plan.label_count("test_att", "kmeans") is None  # no n_generators
    assert plan.label_count("dev_mem", "knn") is None  # membership: 0/1


def test_plots_masks_and_segmentation_training(plan):
    assert plan.uses_masks("dev_att") and not plan.uses_masks("dev_mem")
    assert plan.plots("dev_att") == [
        "attribution_tsne",
        "attribution_confusion",
        "attribution_montage",
        "forest",
        "segmentation",
    ]
    assert plan.plots("test_mem") == [
        "membership_scores",
        "membership_roc_pr",
        "membership_roc_log_fpr",
        "forest",
    ]
    cfg = _config()
    cfg["membership"]["methods"] = {"only": {**cfg["membership"]["methods"]["own_only"]}}
    cfg["membership"]["fusion"] = {}
    assert _plan(cfg).plots("test_mem") == []  # no method runs there: no figure
    assert plan.segmentation_datasets() == ["dev_mem"]
    assert plan.unet_training_shards() == [("dev_mem", 0)]
    assert plan.shards("dev_mem") == [0, 1]
    assert plan.shard_paths("dev_mem", "1") == list(TABLES["dev_mem"].path[1::2])


def test_image_tables_are_loaded_once_and_lazily():
    calls = []

    def load(ds):
        calls.append(ds)
        return TABLES[ds]

    plan = _plan(tables=load)
    assert calls == []
    plan.methods_for("membership", "test_mem")
    plan.results_of("test_mem")
    assert calls == ["test_mem"]


def test_simulated_image_table_needs_no_files():
    cfg = validate_config(
        {
            "datasets": {
                "sim": {"task": "attribution", "simulate": {"n_per_generator": 3}},
            },
            "ingest": {"n_shards": 2},
        },
        SCHEMA,
    )
    table = image_table(cfg, "sim", "results/sim/simulated")
    assert list(table.columns) == ["image_id", "path", "role", "label", "generator", "shard"]
    assert table.path.str.startswith("results/sim/simulated/").all()
    assert Plan(cfg, {"sim": table}).labelled("sim")


def test_catalogue_expansion_adds_methods_that_skip_unlabelled_datasets():
    cfg = _config()
    cfg["catalogue"] = {
        "include": ["goa_resnet50_class_centroids", "shitongcao_pixel_ssim"],
        "override": {"all": {"weights": "none"}},
    }
    before = copy.deepcopy(cfg)
    origin = catalogue.expand(cfg, ROOT / "config" / "methods")
    added = set(cfg["membership"]["methods"]) - set(before["membership"]["methods"])
    assert {"goa_resnet50_class_centroids", "shitongcao_pixel_ssim"} <= added
    assert set(origin) >= added and origin["shitongcao_pixel_ssim"]["id"] == "shitongcao_pixel_ssim"
    new_features = set(cfg["features"]) - set(before["features"])
    assert new_features and all(
        cfg["features"][f].get("weights", "none") == "none" for f in new_features
    )
    plan = Plan(validate_config(cfg, SCHEMA), TABLES)
    assert "goa_resnet50_class_centroids" in plan.methods_for("membership", "dev_mem")
    test = plan.methods_for("membership", "test_mem")
    assert "shitongcao_pixel_ssim" in test  # unsupervised: runs on the test set
    assert "goa_resnet50_class_centroids" not in test  # supervised: needs labels
    goa = cfg["membership"]["methods"]["goa_resnet50_class_centroids"]["feature"]
    assert plan.uses_gpu(goa) == 1


def test_benchmark_section_is_required_for_the_builder(plan):
    with pytest.raises(ConfigError, match="`snakemake benchmark` needs a `benchmark:` section"):
        plan.benchmark()


def test_the_copying_test_runs_on_labelled_membership_datasets(plan):
    """Default: in the feature of the dataset's first membership method; not on a test set."""
    assert plan.copying_datasets() == ["dev_mem"]
    assert plan.copying_feature("dev_mem") == "pixels"
    assert plan.copying() == {"n_cells": 5, "tau": 0.05, "metric": "euclidean"}
    cfg = _config()
    cfg["membership"]["copying"] = {"feature": "resnet", "n_cells": 3}
    assert _plan(cfg).copying_feature("dev_mem") == "resnet"
    assert _plan(cfg).copying()["n_cells"] == 3
    cfg["membership"]["copying"] = {"enabled": False}
    assert _plan(cfg).copying_datasets() == []


def test_an_unknown_copying_feature_is_a_parse_time_problem():
    cfg = _config()
    cfg["membership"]["copying"] = {"feature": "pixles"}
    problems = _plan(cfg).problems(weights=False)
    assert any(
        p.startswith("membership.copying.feature: unknown feature 'pixles'") for p in problems
    )


def test_a_feature_learned_without_labels_runs_on_test_sets():
    """`contrastive` trains on the real slices, no label read: no labelled dataset needed,
    unlike `finetuned`."""
    cfg = _config()
    cfg["features"]["ssl"] = _feature("contrastive", epochs=1)
    cfg["membership"]["methods"]["ssl_knn"] = {"feature": "ssl", "scorer": {"name": "knn"}}
    cfg["membership"]["methods"]["ft_knn"] = {"feature": "ft_own", "scorer": {"name": "knn"}}
    plan = _plan(cfg)
    assert "ssl" in plan.learned_features() and plan.uses_gpu("ssl") == 1
    assert "ssl_knn" in plan.methods_for("membership", "test_mem")
    assert "ft_knn" not in plan.methods_for("membership", "test_mem")
    assert "ft_knn" in plan.methods_for("membership", "dev_mem")
