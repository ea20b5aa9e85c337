"""Subset attribution (ImageCLEF 2025 subtask 2): the methods, their scores and run files,
the config checks, the simulation, the subset benchmark and the workflow's plan."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, snakemake
from PIL import Image

from gantrace import io, stages
from gantrace.config import validate_config
from gantrace.data import simulate_subsets
from gantrace.data.ingest import image_table
from gantrace.errors import ConfigError, RunFileError
from gantrace.evaluation.metrics import confusion_table, subset_metrics
from gantrace.evaluation.runfiles import validate_run_file
from gantrace.evaluation.scores import score_results
from gantrace.fusion import build_rule
from gantrace.plan import Plan
from gantrace.subset import ASSIGNERS, SubsetMethod

SCHEMA = ROOT / "config" / "schema.yaml"


def planted(n_real=15, n_gen=12, k=3, dim=8, spread=1.0, seed=0):
    """Real images of k subsets around k centres; generated ones near their subset's real
    images (a generator reproduces its training data): (gx, gy, rx, ry)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 4
    rx = np.concatenate([c + rng.normal(size=(n_real, dim)) * spread for c in centres])
    ry = np.repeat(np.arange(k), n_real)
    src = rng.integers(n_real, size=k * n_gen) + np.repeat(np.arange(k), n_gen) * n_real
    gx = rx[src] + rng.normal(size=(k * n_gen, dim)) * 0.2 * spread
    return gx, ry[src], rx, ry


# -- methods ---------------------------------------------------------------------------------
@pytest.mark.parametrize("signal", ["knn", "calibrated", "density_ratio"])
def test_nearest_subset_recovers_planted_subsets_from_the_real_images(signal):
    gx, gy, rx, ry = planted()
    method = SubsetMethod({"name": "nearest_subset", "signal": signal, "k": 2})
    assert (method.run(gx, rx, ry, 3) == gy).all()
    # the answer follows the real images' subsets: relabel them and it follows
    relabel = np.array([2, 0, 1])
    assert (method.run(gx, rx, relabel[ry], 3) == relabel[gy]).all()
    # label-free: the generated images' labels change nothing
    shuffled = np.random.default_rng(1).permutation(gy)
    assert (method.run(gx, rx, ry, 3, labels=shuffled) == method.run(gx, rx, ry, 3)).all()


def test_calibrated_distance_corrects_a_dense_subset():
    """Subset 0 is dense (many close real images); generated images of the sparse subset 1
    lie nearer, in raw distance, to subset 0's crowd: k-NN distance is fooled, the distance
    relative to each subset's own spacing is not."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(400, 2)) * 0.3
    sparse = rng.normal(size=(20, 2)) * 3.0 + np.array([1.5, 0.0])
    rx, ry = np.concatenate([dense, sparse]), np.repeat([0, 1], [400, 20])
    gx = sparse + rng.normal(size=sparse.shape) * 0.3  # each near its own training image
    knn = SubsetMethod({"name": "nearest_subset", "k": 5}).run(gx, rx, ry, 2)
    calibrated = SubsetMethod({"name": "nearest_subset", "signal": "calibrated", "k": 5})
    assert (calibrated.run(gx, rx, ry, 2) == 1).mean() > (knn == 1).mean()


def test_supervised_beats_chance_out_of_fold_and_needs_its_labels():
    gx, gy, rx, ry = planted(spread=2.0)
    method = SubsetMethod({"name": "supervised", "classifier": "logistic"}, n_folds=3)
    assert method.needs_labels
    assert (method.run(gx, rx, ry, 3, labels=gy) == gy).mean() > 0.9
    shuffled = np.random.default_rng(0).permutation(gy)
    assert (method.run(gx, rx, ry, 3, labels=shuffled) == gy).mean() < 0.6
    # out of fold: a row whose label is wrong is still predicted from the other rows
    wrong = gy.copy()
    wrong[0] = (gy[0] + 1) % 3
    assert method.run(gx, rx, ry, 3, labels=wrong)[0] == gy[0]
    with pytest.raises(ConfigError, match="no labelled generated image"):
        method.run(gx, rx, ry, 3)


def test_supervised_predicts_labelled_rows_out_of_fold():
    """Noise labels on more dimensions than images: a linear model fits its own training rows
    perfectly, so only out-of-fold predictions stay near chance."""
    rng = np.random.default_rng(0)
    gx, labels = rng.normal(size=(60, 200)), rng.integers(3, size=60)
    rx, ry = rng.normal(size=(6, 200)), np.arange(6) % 3
    for classifier in ("logistic", "linear_svm"):
        method = SubsetMethod({"name": "supervised", "classifier": classifier}, n_folds=5)
        assert (method.run(gx, rx, ry, 3, labels=labels) == labels).mean() < 0.6


def test_supervised_on_real_subsets_or_another_datasets_labels():
    gx, gy, rx, ry = planted(spread=2.0)
    on_real = SubsetMethod({"name": "supervised", "train_on": "real"})
    assert not on_real.needs_labels
    assert (on_real.run(gx, rx, ry, 3) == gy).mean() > 0.9
    svm = SubsetMethod({"name": "supervised", "classifier": "linear_svm"})
    tx, ty, _, _ = planted(spread=2.0, seed=0)  # same subsets, another draw of images
    assert (svm.run(gx, rx, ry, 3, train=(tx, ty)) == gy).mean() > 0.9
    relabelled = svm.run(gx, rx, ry, 3, train=(tx, (ty + 1) % 3))  # it follows the labels
    assert (relabelled == (gy + 1) % 3).mean() > 0.9


def test_cluster_match_equals_truth_on_separable_data():
    gx, gy, rx, ry = planted()
    for distance in ("knn", "centroid"):
        method = SubsetMethod({"name": "cluster_match", "distance": distance})
        assert (method.run(gx, rx, ry, 3) == gy).all()
        relabel = np.array([1, 2, 0])
        assert (method.run(gx, rx, relabel[ry], 3) == relabel[gy]).all()
    agglomerative = {"name": "cluster_match", "clusterer": {"name": "agglomerative"}}
    assert (SubsetMethod(agglomerative).run(gx, rx, ry, 3) == gy).all()


def test_assigner_specs_are_checked_naming_the_key():
    with pytest.raises(ConfigError, match=r"m\.assigner\.signal: expected one of knn"):
        SubsetMethod({"name": "nearest_subset", "signal": "knnn"}, where="m.assigner")
    with pytest.raises(ConfigError, match=r"m\.assigner: unknown subset assigner 'nearest'"):
        SubsetMethod("nearest", where="m.assigner")
    with pytest.raises(ConfigError, match=r"clusterer.*unknown clusterer"):
        SubsetMethod({"name": "cluster_match", "clusterer": "kmeanz"})
    with pytest.raises(ConfigError, match="set by the enclosing method"):
        SubsetMethod({"name": "supervised", "n_folds": 3})
    assert set(ASSIGNERS.names()) == {"nearest_subset", "supervised", "cluster_match"}


def test_vote_fusion_takes_the_majority_then_the_first_method():
    def table(subsets):
        names = np.array(subsets)
        return pd.DataFrame(
            {
                "image_id": ["a", "b", "c"],
                "subset": names,
                "cluster": [int(s[-1]) for s in names],
                "generator": "",
            }
        )

    rule = build_rule("subset_attribution", {"methods": ["x", "y", "z"]})
    fused = rule.fuse(
        [table(["s1", "s2", "s3"]), table(["s2", "s2", "s1"]), table(["s2", "s3", "s2"])]
    )
    assert list(fused.subset) == ["s2", "s2", "s3"] and list(fused.cluster) == [2, 2, 3]


# -- scores and run files --------------------------------------------------------------------
def test_accuracy_macro_f1_and_confusion():
    m = subset_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert m["accuracy"] == 0.75 and m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    conf = confusion_table(["a", "a", "b"], ["a", "b", "b"])
    assert conf.values.tolist() == [["a", "a", 1], ["a", "b", 1], ["b", "b", 1]]


def test_scores_with_truth_by_name_or_by_label():
    result = pd.DataFrame(
        {"image_id": ["i1", "i2", "i3"], "subset": ["s1", "s2", "s2"], "cluster": [1, 2, 2]}
    ).assign(generator="")
    by_name = pd.DataFrame({"label": ["s1", "s2", "s1"]}, index=["i1", "i2", "i3"])
    by_label = pd.DataFrame({"label": ["1", "2", "1"]}, index=["i1", "i2", "i3"])
    for truth in (by_name, by_label):
        rows = score_results("subset_attribution", "d", {"m": result}, [], truth)
        assert rows.accuracy.tolist() == [pytest.approx(2 / 3)] and rows.n.tolist() == [3]
    assert not len(score_results("subset_attribution", "d", {"m": result}, [], None))


def test_run_file_labels_are_subset_positions(tmp_path):
    result = pd.DataFrame(
        {"image_id": ["i1", "i2"], "subset": ["s1", "s3"], "cluster": [1, 3], "generator": ""}
    )
    io.write_table(result, tmp_path / "r.parquet")
    stages.submission("subset_attribution", tmp_path / "r.parquet", tmp_path / "r.csv", 3)
    assert (tmp_path / "r.csv").read_text() == "i1,1\ni2,3\n"
    with pytest.raises(RunFileError, match=r"labels outside \[1, 2\]"):
        validate_run_file(tmp_path / "r.csv", ["i1", "i2"], {1, 2})


# -- simulation ------------------------------------------------------------------------------
def test_simulated_subsets_plan_and_truth(tmp_path):
    params = {"task": "subset_attribution", "n_subsets": 2, "n_real": 3, "n_generated": 2}
    table = simulate_subsets.write_dataset({**params, "labelled": False, "size": 64}, tmp_path)
    assert table.role.value_counts().to_dict() == {"real_subset": 6, "generated": 4}
    gen = table[table.role == "generated"]
    assert (gen.generator == "").all() and sorted(gen.subset) == ["subset1"] * 2 + ["subset2"] * 2
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert dict(zip(truth.image_id, truth.generator)) == dict(zip(table.image_id, table.subset))
    assert simulate_subsets.plan(params).equals(simulate_subsets.plan(params))
    with pytest.raises(ConfigError, match="unknown key 'n_used'"):
        simulate_subsets.plan({**params, "n_used": 3})


# -- config checks ---------------------------------------------------------------------------
def _pngs(folder, n, value=0, prefix=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"{prefix or folder.name}_{i}.png"
        Image.fromarray(np.full((8, 8), value + i, np.uint8)).save(folder / name)


def test_folders_roles_and_subset_labels(tmp_path):
    for s in ("a", "b"):
        _pngs(tmp_path / "real" / s, 2)
        _pngs(tmp_path / "gen" / s, 2, 10, prefix=f"gen_{s}")
    ds = {
        "task": "subset_attribution",
        "real_subsets": {"a": "real/a", "b": "real/b"},
        "generated": {"a": "gen/a", "b": "gen/b"},
    }
    table = image_table("d", ds, 1, root=tmp_path)
    assert sorted(zip(table.role, table.generator)) == sorted(
        [("real_subset", "a")] * 2 + [("real_subset", "b")] * 2 + [("generated", "a")] * 2
        + [("generated", "b")] * 2
    )  # fmt: skip


def test_bad_subset_datasets_are_named_all_at_once():
    cfg = {
        "datasets": {
            "no_real": {"task": "subset_attribution", "generated": "g"},
            "odd_names": {
                "task": "subset_attribution",
                "real_subsets": {"a": "ra", "b": "rb"},
                "generated": {"a": "ga", "c": "gc"},
            },
            "mixed": {
                "task": "subset_attribution",
                "real_subsets": {"a": "ra", "b": "rb"},
                "generated": "g",
                "real_used": "u",
            },
            "mem": {
                "task": "membership",
                "generated": "g",
                "real_used": "u",
                "real_subsets": {"a": "x", "b": "y"},
            },
        }
    }
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    msg = str(err.value)
    for expected in (
        "datasets.no_real.real_subsets: required",
        "datasets.odd_names.generated: subset(s) 'c' not in real_subsets",
        "datasets.mixed.real_used: a subset_attribution dataset gives its real images as real_subsets",
        "datasets.mem.real_subsets: only subset_attribution datasets take it",
    ):
        assert expected in msg, msg
    bad_metric = {
        "datasets": {"x": {"task": "subset_attribution", "simulate": {}, "metric": "ari"}}
    }
    with pytest.raises(ConfigError, match="metric"):
        validate_config(bad_metric, SCHEMA)


def _subset_config():
    return {
        "ingest": {"n_shards": 1},
        "datasets": {
            "dev": {"task": "subset_attribution", "simulate": {"n_real": 3, "n_generated": 3}},
            "test": {
                "task": "subset_attribution",
                "simulate": {"n_real": 3, "n_generated": 3, "labelled": False},
            },
        },
        "features": {"pixels": {"name": "pixels", "size": 8}},
        "subset_attribution": {
            "methods": {
                "nearest": {"feature": "pixels", "assigner": {"name": "nearest_subset"}},
                "svm": {"feature": "pixels", "assigner": {"name": "supervised"}},
                "svm_dev": {
                    "feature": "pixels",
                    "assigner": {"name": "supervised"},
                    "train_from": "dev",
                },
                "real_svm": {
                    "feature": "pixels",
                    "assigner": {"name": "supervised", "train_on": "real"},
                },
            },
            "fusion": {"vote": {"methods": ["nearest", "svm_dev"]}},
        },
    }


def _subset_plan(cfg, tmp_path):
    from gantrace.plan import image_table as planned

    cfg = validate_config(cfg, SCHEMA)
    return Plan(cfg, lambda ds: planned(cfg, ds, str(tmp_path / ds)))


def test_plan_runs_supervised_methods_where_labels_are(tmp_path):
    plan = _subset_plan(_subset_config(), tmp_path)
    assert plan.problems(weights=False) == []
    assert plan.labelled("dev") and not plan.labelled("test")
    assert plan.methods_for("subset_attribution", "dev") == [
        "nearest",
        "svm",
        "svm_dev",
        "real_svm",
    ]
    assert plan.methods_for("subset_attribution", "test") == ["nearest", "svm_dev", "real_svm"]
    assert plan.fusions_for("subset_attribution", "test") == ["vote"]
    assert plan.subsets("test") == ["subset1", "subset2", "subset3"]
    assert plan.label_count("test", "fused_vote") == 3
    assert plan.results_of("test")[-1] == "fused_vote"


def test_plan_names_every_subset_problem_at_once(tmp_path):
    cfg = _subset_config()
    methods = cfg["subset_attribution"]["methods"]
    methods["nearest"]["assigner"] = {"name": "nearest_subset", "kk": 1}
    methods["svm"]["assigner"] = {"name": "supervised", "classifier": "svm"}
    methods["svm_dev"]["train_from"] = "test"
    cfg["datasets"]["other"] = {
        "task": "subset_attribution",
        "simulate": {"n_subsets": 2, "n_real": 3, "n_generated": 3},
    }
    methods["real_svm"] = {
        "feature": "pixels",
        "assigner": {"name": "supervised"},
        "train_from": "dev",
    }
    plan = _subset_plan(cfg, tmp_path)
    msg = "\n".join(plan.problems(weights=False))
    assert "subset_attribution.methods.nearest.assigner.kk: unknown parameter" in msg, msg
    assert "subset_attribution.methods.svm.assigner.classifier: expected one of linear_svm" in msg
    assert "subset_attribution.methods.svm_dev.train_from: dataset 'test' has no labelled" in msg
    assert "subset_attribution.methods.real_svm.train_from: dataset 'other' has subsets" in msg


# -- benchmark -------------------------------------------------------------------------------
def test_subset_split_keeps_groups_together_and_balances(tmp_path):
    from gantrace.benchmark_builder.split import SubsetSplit

    files = [tmp_path / f"p{g}_{i}.png" for g in range(9) for i in range(1 + g % 3)]
    groups = [f.stem.split("_")[0] for f in files]
    table = SubsetSplit(3, seed=0).fit_transform(files, groups)
    assert table.groupby("group").subset.nunique().max() == 1
    assert sorted(table.subset.unique()) == ["subset1", "subset2", "subset3"]
    assert table.subset.value_counts().max() - table.subset.value_counts().min() <= 2
    assert table.equals(SubsetSplit(3, seed=0).fit_transform(files, groups))
    with pytest.raises(ConfigError, match="benchmark.subsets.k: 4 subsets need at least 4 groups"):
        SubsetSplit(4).fit_transform(files[:3], groups[:3])


def test_subset_layout_writes_the_2025_layout_with_truth(tmp_path):
    from gantrace.benchmark_builder.split import SubsetSplit
    from gantrace.benchmark_builder.subset_layout import write_subset_benchmark

    files = []
    for g in range(6):
        for i in range(2):
            path = tmp_path / "slices" / f"p{g}_{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(np.full((32, 32), 20 * g + i, np.uint8)).save(path)
            files.append(path)
    split = SubsetSplit(2).fit_transform(files, [f.stem[:2] for f in files])
    split.to_csv(tmp_path / "split.csv", index=False)
    samples = {}
    for k, s in enumerate(["subset1", "subset2"]):
        np.savez(tmp_path / f"{s}.npz", images=np.full((6, 16, 16), 50 * k, np.uint8))
        samples[s] = tmp_path / f"{s}.npz"
    bench = {"name": "t", "resolution": 16, "seed": 0, "subsets": {"k": 2, "generator": "g"}}
    root = tmp_path / "bench"
    config = write_subset_benchmark(
        tmp_path / "split.csv", samples, bench, root, tmp_path / "c.yaml"
    )
    assert yaml.safe_load((tmp_path / "c.yaml").read_text()) == config
    validate_config(config, SCHEMA)
    dev = image_table("d", config["datasets"]["t_subsets_dev"], 1, root=root)
    test = image_table("t", config["datasets"]["t_subsets_test"], 1, root=root)
    assert (dev[dev.role == "generated"].generator.value_counts() == 3).all()
    assert (test[test.role == "generated"].generator == "").all()
    real = dev[dev.role == "real_subset"]
    assert dict(zip(real.image_id, real.generator)) == dict(zip(split.image_id, split.subset))
    truth = pd.read_csv(root / "ground_truth" / "test_truth.csv")
    ids = test.image_id[test.role == "generated"]
    validate_run_file(root / "ground_truth" / "test.csv", ids, {1, 2})
    assert sorted(truth.label) == ["subset1"] * 3 + ["subset2"] * 3
    assert Image.open(root / "real" / "subset1" / f"{real.image_id.iloc[0]}.png").size == (16, 16)


# -- workflow (dry runs) ---------------------------------------------------------------------
@pytest.mark.workflow
def test_demo_and_subset_benchmark_plan_their_subset_jobs(workflow_dir):
    from test_workflow import planned_jobs

    jobs = planned_jobs(snakemake(workflow_dir, "all", "-n"))
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    n_methods = len(demo["subset_attribution"]["methods"])
    assert jobs["subset_attribution"] == n_methods and jobs["subset_confusion"] == 1
    assert jobs["simulate_demo_subsets"] == 1
    text = (workflow_dir / "config" / "benchmark-subsets.yaml").read_text()
    slices = workflow_dir / "slices"
    for g in range(4):
        _pngs(slices, 1, 10 * g)
        (slices / "slices_0.png").rename(slices / f"ChestCT_{g}00.png")
    (workflow_dir / "b.yaml").write_text(text.replace("../shared/data/chest-ct-256", str(slices)))
    jobs = planned_jobs(snakemake(workflow_dir, "benchmark", "-n", "--configfile", "b.yaml"))
    assert jobs == {
        "benchmark_subset_split": 1,
        "benchmark_subset_train": 3,
        "benchmark_subset_sample": 3,
        "benchmark_subset_layout": 1,
        "benchmark": 1,
    }, jobs
