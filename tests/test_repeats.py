"""evaluation.repeats: stochastic methods (a part declared `stochastic`, or one that trains a
network) rerun over seeds; mean and sd of their metrics beside the one-run figure."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, snakemake
from test_plan import _config, _plan
from test_workflow import planned_jobs

from gantrace import io, stages
from gantrace.attribution.method import CLUSTERERS
from gantrace.membership.scorers import SCORERS
from gantrace.params import is_stochastic
from gantrace.reduce import REDUCERS


def test_parts_declare_whether_their_seed_matters():
    assert is_stochastic(CLUSTERERS["kmeans"]) and is_stochastic(CLUSTERERS["gmm"])
    assert not is_stochastic(CLUSTERERS["agglomerative"])
    assert is_stochastic(REDUCERS["tsne"]) and is_stochastic(REDUCERS["autoencoder"])
    assert not is_stochastic(REDUCERS["pca"])
    assert is_stochastic(SCORERS["centroid_autoencoder"])  # trains a network
    assert not is_stochastic(SCORERS.create("knn"))
    # where it hangs on parameters: a re-ranker's base, a scorer's seeded noise
    rerank = {"name": "dbscan_rerank", "base": {"name": "agglomerative"}}
    assert not is_stochastic(CLUSTERERS.create(rerank, n_clusters=2, random_state=0))
    assert is_stochastic(CLUSTERERS.create("dbscan_rerank", n_clusters=2, random_state=0))
    assert is_stochastic(SCORERS.create({"name": "similarity", "noise_std": 0.1}))
    assert not is_stochastic(SCORERS.create("similarity"))


def test_plan_repeats_stochastic_methods_only():
    cfg = _config()
    cfg["evaluation"] = {"repeats": 3}
    plan = _plan(cfg)
    assert plan.repeats() == 3
    assert plan.repeated("dev_mem") == ["centroids", "ae_scorer"]  # k-means, a network
    assert "knn" not in plan.repeated("dev_mem")  # deterministic: run once
    assert plan.repeated("dev_att") == [
        m for m in plan.methods_for("attribution", "dev_att") if m != "open"
    ]
    # repeats: 1 (the default): nothing is rerun
    assert _plan().repeats() == 1
    assert all(_plan().repeated(ds) == [] for ds in ("dev_mem", "dev_att"))


def _blobs(tmp_path, seed=0):
    """Four overlapping blobs from two generators: k-means with one initialisation lands
    in different local optima under different seeds."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [2.5, 0], [0, 2.5], [2.5, 2.5]])
    x = np.vstack([c + rng.normal(size=(40, 2)) for c in centres])
    gen = np.repeat(["a", "b", "a", "b"], 40)
    ids = [f"i{k:03d}" for k in range(len(x))]
    io.write_features(tmp_path / "f.h5", ids, x)
    manifest = pd.DataFrame(
        {"image_id": ids, "path": ids, "role": "generated", "label": -1, "generator": gen}
    )
    io.write_table(manifest, tmp_path / "manifest.parquet")
    return tmp_path / "f.h5", tmp_path / "manifest.parquet"


@pytest.mark.parametrize(
    ("clusterer", "moves"),
    [({"name": "kmeans", "n_init": 1}, True), ({"name": "agglomerative"}, False)],
)
def test_repeats_summary_spread_where_the_seed_matters(tmp_path, clusterer, moves):
    features, manifest = _blobs(tmp_path)
    spec = {"name": "m", "feature": "f", "clusterer": clusterer}
    paths = []
    for r in range(6):
        paths.append(tmp_path / f"{r}.parquet")
        stages.attribution(features, manifest, spec, 4, 10 + r, paths[-1])
    out = tmp_path / "repeats.parquet"
    stages.repeats("attribution", "toy", ["m"], paths, None, out, seed=10)
    table = io.read_table(out).set_index("metric")
    assert set(table.index) == {"ari", "nmi", "accuracy"} and (table.repeats == 6).all()
    assert (table.method == "m").all() and (table.split == "all").all()
    assert (table.sd > 0).all() if moves else (table.sd == 0).all()
    one = [
        stages.scores.score_results("attribution", "toy", {"m": io.read_table(p)}, ())
        for p in paths
    ]
    assert table.at["ari", "mean"] == pytest.approx(np.mean([t.ari.iloc[0] for t in one]))


def test_leaderboard_gains_mean_sd_columns_only_with_repeats(tmp_path):
    scores = pd.DataFrame(
        {
            "dataset": ["d", "d"],
            "task": "attribution",
            "method": ["km", "agg"],
            "kind": "method",
            "split": "all",
            "n": 10,
            "ari": [0.5, 0.4],
            "nmi": [0.6, 0.5],
            "k_found": 2,
            "k_true": 2,
        }
    )
    io.write_table(scores, tmp_path / "scores.parquet")
    summary = pd.DataFrame(
        {
            "dataset": "d",
            "task": "attribution",
            "method": "km",
            "split": "all",
            "metric": ["ari", "nmi"],
            "mean": [0.45, 0.55],
            "sd": [0.05, 0.02],
            "repeats": 5,
        }
    )
    io.write_table(summary, tmp_path / "repeats.parquet")
    stages.leaderboard([tmp_path / "scores.parquet"], tmp_path / "plain.csv")
    stages.leaderboard(
        [tmp_path / "scores.parquet"], tmp_path / "rep.csv", repeats=[tmp_path / "repeats.parquet"]
    )
    plain = pd.read_csv(tmp_path / "plain.csv")
    rep = pd.read_csv(tmp_path / "rep.csv").set_index("method")
    assert list(rep.columns[-3:]) == ["ari_mean", "ari_sd", "repeats"]
    assert rep.loc["km", ["ari_mean", "ari_sd", "repeats"]].tolist() == [0.45, 0.05, 5]
    assert rep.loc["agg", ["ari_mean", "ari_sd", "repeats"]].isna().all()  # deterministic
    pd.testing.assert_frame_equal(rep.reset_index()[plain.columns], plain)


@pytest.mark.workflow
def test_dry_run_adds_repeat_jobs_only_for_stochastic_methods(workflow_dir):
    """Demo config: repeats 1 plans exactly the jobs of a config without it; repeats 3 adds
    two reruns of each stochastic method and one summary per dataset, nothing else."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

    def jobs(repeats=None):
        run = dict(cfg, **({"evaluation": {"repeats": repeats}} if repeats else {}))
        (workflow_dir / "run.yaml").write_text(yaml.safe_dump(run))
        proc = snakemake(workflow_dir, "all", "-n", "--configfile", "run.yaml")
        return planned_jobs(proc), proc.stdout

    base, _ = jobs()
    once, _ = jobs(1)
    assert once == base
    thrice, out = jobs(3)
    extra = {k: v - base.get(k, 0) for k, v in thrice.items() if v != base.get(k, 0)}
    stochastic = ["spectrum_kmeans", "spectrum_kmeans_auto_k", "lbp_kmeans", "dct_kmeans"]
    stochastic += ["residual_fingerprint", "lite0_pca_kmeans"]
    # demo membership methods are all deterministic (k-NN, DOMIAS, eps-ball): no rerun
    assert extra == {"attribution_repeat": 2 * len(stochastic), "repeats": 1}
    assert "spectrum_lung_agglomerative/1.parquet" not in out
    for m in stochastic:
        assert f"demo_attribution/repeats/attribution/{m}/2.parquet" in out
