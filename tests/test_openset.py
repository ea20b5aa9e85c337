"""Open-set attribution: known generators from a labelled dev set, new ones found in test."""

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import adjusted_rand_score

from gantrace import io, stages
from gantrace.attribution.openset import OpenSetAttribution
from gantrace.config import validate_config
from gantrace.errors import ConfigError, GantraceError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
NAMES = np.array(["dcgan", "vae", "wgan"])


def _data(seed=0, d=8, n_known=60, n_test=40):
    """3 known generators (dev) and a test set of those 3 plus an unseen 4th (label 3)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, (4, d))
    known_x = np.concatenate([centers[g] + rng.normal(0, 1, (n_known, d)) for g in range(3)])
    test_y = np.repeat(np.arange(4), n_test)
    test_x = centers[test_y] + rng.normal(0, 1, (len(test_y), d))
    return known_x, np.repeat(NAMES, n_known), test_x, test_y


@pytest.mark.parametrize("n_new", [None, 1])
def test_unseen_generator_gets_its_own_cluster_and_beats_closed_set(n_new):
    kx, kg, tx, ty = _data()
    m = OpenSetAttribution(n_new=n_new).fit(kx, kg)
    labels = m.predict(tx)
    assert list(m.known_names_) == list(NAMES) and m.n_new_ == 1
    unseen, known = ty == 3, ty < 3
    assert m.is_unknown_[unseen].mean() >= 0.9
    assert (labels[unseen] == 3).mean() >= 0.9  # the new cluster, after the 3 known ones
    assert (labels[known] == ty[known]).mean() >= 0.9  # known images keep their generator
    assert m.is_unknown_[known].mean() <= 0.15
    open_ari = adjusted_rand_score(ty, labels)
    # closed set: every image to its nearest known centroid (the unseen one cannot be found)
    closed = np.linalg.norm(tx[:, None] - m.centroids_[None], axis=2).argmin(axis=1)
    assert open_ari >= 0.9 and open_ari > adjusted_rand_score(ty, closed) + 0.1


def _twins(seed=0, n=80, d=20):
    """Two known generators that differ along one quiet axis only (seed twins: same
    architecture, different weights), buried in loud shared variation, plus an unseen
    third generator far away."""
    rng = np.random.default_rng(seed)

    def draw(g, count):
        x = rng.normal(0, 3.0, (count, d))  # shared, generator-independent variation
        x[:, 0] = rng.normal(0, 0.1, count) + (0.0, 1.0, 0.0)[g]  # the twins' fingerprint
        if g == 2:
            x[:, 1] += 40.0
        return x

    known_x = np.concatenate([draw(0, n), draw(1, n)])
    test_y = np.repeat([0, 1, 2], n // 2)
    test_x = np.concatenate([draw(g, n // 2) for g in range(3)])
    return known_x, np.repeat(["dcgan", "dcgan_seed1"], n), test_x, test_y


def test_classifier_tells_seed_twins_apart_where_the_nearest_centroid_cannot():
    kx, kg, tx, ty = _twins()
    known = ty < 2
    centroid = OpenSetAttribution(n_new=1, reject_quantile=1.0).fit(kx, kg)
    logistic = OpenSetAttribution(n_new=1, reject_quantile=1.0, classifier="logistic")
    by_centroid = centroid.fit(kx, kg).predict(tx)
    by_classifier = logistic.fit(kx, kg).predict(tx)
    assert (by_classifier[known] == ty[known]).mean() >= 0.95
    assert (by_centroid[known] == ty[known]).mean() <= 0.8
    assert logistic.is_unknown_[ty == 2].all()  # the radius rule still finds the unseen one
    assert (by_classifier[ty == 2] == 2).all()
    # the classifier reads its input: shuffled known labels make it guess
    shuffled = np.random.default_rng(3).permutation(kg)
    guessed = logistic.fit(kx, shuffled).predict(tx)
    assert (guessed[known] == ty[known]).mean() <= 0.7
    with pytest.raises(ConfigError, match="classifier"):
        OpenSetAttribution(classifier="forest")


def test_predict_follows_its_input():
    kx, kg, tx, ty = _data()
    m = OpenSetAttribution().fit(kx, kg)
    perm = np.random.default_rng(1).permutation(len(tx))
    np.testing.assert_array_equal(m.predict(tx[perm]), m.predict(tx)[perm])
    only_known = m.predict(tx[ty < 3])
    assert m.n_new_ == 0 and only_known.max() < 3
    m2 = OpenSetAttribution(min_new=50).fit(kx, kg)  # 40 unseen images: too few for a cluster
    assert m2.predict(tx).max() < 3 and m2.n_new_ == 0 and m2.is_unknown_[ty == 3].all()


def test_radius_is_out_of_fold_and_seeded():
    kx, kg, _, _ = _data(seed=2, n_known=30)
    m = OpenSetAttribution(reject_quantile=0.9).fit(kx, kg)
    y = np.searchsorted(NAMES, kg)
    in_sample = np.linalg.norm(kx - m.centroids_[y], axis=1)
    optimistic = [np.quantile(in_sample[y == g], 0.9) for g in range(3)]
    assert (m.radius_ > optimistic).all()
    again = OpenSetAttribution(reject_quantile=0.9).fit(kx, kg).radius_
    other = OpenSetAttribution(reject_quantile=0.9, random_state=3).fit(kx, kg).radius_
    np.testing.assert_array_equal(m.radius_, again)
    assert not np.array_equal(m.radius_, other)


def test_bad_parameters_fail():
    kx, kg, _, _ = _data(n_known=4)
    with pytest.raises(ConfigError, match=r"open_set\.reject_quantile"):
        OpenSetAttribution(reject_quantile=0)
    with pytest.raises(ConfigError, match=r"open_set\.metric"):
        OpenSetAttribution(metric="ssim")
    with pytest.raises(ConfigError, match="known_from: needs at least two generators"):
        OpenSetAttribution().fit(kx[:4], kg[:4])
    with pytest.raises(ConfigError, match="no transform"):
        OpenSetAttribution(reducer={"name": "tsne"})


def _write(tmp_path, name, x, generators):
    ids = [f"{name}_{i:04d}" for i in range(len(x))]
    io.write_features(tmp_path / f"{name}.h5", ids, x)
    man = pd.DataFrame({"image_id": ids, "role": "generated", "generator": generators})
    io.write_table(man, tmp_path / f"{name}.parquet")
    return tmp_path / f"{name}.h5", tmp_path / f"{name}.parquet"


def test_stage_dispatches_open_set_methods(tmp_path, capsys):
    kx, kg, tx, ty = _data()
    known = _write(tmp_path, "dev", kx, kg)
    test = _write(tmp_path, "test", tx, NAMES.tolist() + [""] * (len(tx) - 3))
    spec = {"name": "open", "clusterer": {"name": "kmeans"}, "known_from": "dev"}
    out = tmp_path / "open.parquet"
    stages.attribution(*test, spec, 4, 0, out, known_features=known[0], known_manifest=known[1])
    labels = io.read_table(out).cluster.to_numpy()
    assert adjusted_rand_score(ty, labels) >= 0.9 and set(labels) == {1, 2, 3, 4}
    assert "known generators 1=dcgan, 2=vae, 3=wgan" in capsys.readouterr().out
    # unknown n_generators: the new generators are estimated, labels still 1..k found
    stages.attribution(*test, spec, None, 0, out, known_features=known[0], known_manifest=known[1])
    assert set(io.read_table(out).cluster) == {1, 2, 3, 4}
    assert "(estimated)" in capsys.readouterr().out
    with pytest.raises(GantraceError, match="went to 3 generators but the dataset has n_gen"):
        stages.attribution(*test, spec, 2, 0, out, known_features=known[0], known_manifest=known[1])
    bad = dict(spec, open_set={"reject_quantile": 2})
    with pytest.raises(ConfigError, match=r"attribution\.methods\.open\.open_set\.reject_quantile"):
        stages.attribution(*test, bad, 4, 0, out, known_features=known[0], known_manifest=known[1])
    # a closed-set method with n_clusters: auto estimates k and logs the criterion table
    auto = {"name": "auto", "clusterer": "kmeans", "n_clusters": "auto"}
    stages.attribution(*test, auto, 3, 0, out)
    assert "estimated 4 generators by silhouette (n_generators: 3)" in capsys.readouterr().out


def _config(**method):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["datasets"]["test_att"] = {"task": "attribution", "generated": "data/test"}
    cfg["attribution"]["methods"] = {
        "open": {"feature": "spectrum", "clusterer": {"name": "kmeans"}, **method}
    }
    cfg["attribution"]["fusion"] = {}
    return cfg


def test_config_checks_known_from():
    validate_config(_config(known_from="demo_attribution"), ROOT / "config" / "schema.yaml")
    for method, key in [
        ({"known_from": "demo_membership"}, "known_from: 'demo_membership' is not an attrib"),
        ({"known_from": "test_att"}, "test_att' has no per-generator labels"),
        ({"open_set": {"min_new": 3}}, "open.open_set: only for open-set methods"),
        ({"known_from": "demo_attribution", "datasets": ["demo_attribution"]}, "open.datasets"),
        ({"estimate_k": {"name": "bic", "k_min": 4, "k_max": 3}}, "estimate_k.k_max"),
        ({"n_clusters": 3}, "n_clusters"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            validate_config(_config(**method), ROOT / "config" / "schema.yaml")


def test_workflow_plans_unknown_k_and_open_set(workflow_dir):
    """Dry run: a test set without n_generators plans; the open-set method reads the dev
    set's feature file and skips the dev set itself."""
    from conftest import snakemake
    from PIL import Image

    rng = np.random.default_rng(0)
    (workflow_dir / "data" / "test").mkdir(parents=True)
    for i in range(6):
        img = rng.integers(0, 255, (32, 32), dtype=np.uint8)
        Image.fromarray(img).save(workflow_dir / "data" / "test" / f"t{i}.png")
    cfg = _config(known_from="demo_attribution")
    cfg["attribution"]["methods"]["plain"] = {
        "feature": "spectrum",
        "clusterer": {"name": "kmeans"},
    }
    cfg["datasets"] = {k: cfg["datasets"][k] for k in ("demo_attribution", "test_att")}
    cfg["segmentation"]["train_datasets"] = ["demo_attribution"]
    (workflow_dir / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow_dir, "all", "-n", "--configfile", "run.yaml")
    jobs = {
        m.group(1): block
        for block in proc.stdout.split("\n\n")
        if (m := re.search(r"output: (results/[^,\s]+/attribution/\w+\.parquet)", block))
    }
    # run.yaml is the demo config changed: its run stays demo (results/demo/)
    assert set(jobs) == {
        "results/demo/test_att/attribution/open.parquet",
        "results/demo/test_att/attribution/plain.parquet",
        "results/demo/demo_attribution/attribution/plain.parquet",
    }
    open_job = jobs["results/demo/test_att/attribution/open.parquet"]
    assert "results/demo/demo_attribution/features/spectrum/full.h5" in open_job
    assert "results/demo/demo_attribution/manifest.parquet" in open_job
    assert (
        "results/demo/demo_attribution"
        not in jobs["results/demo/test_att/attribution/plain.parquet"]
    )


def test_open_set_labels_are_run_file_labels():
    """The library call behind the stage: unnamed known rows are left out, k follows
    n_generators (or the count found), labels are 1..k."""
    import io as textio

    from gantrace.attribution.openset import open_set_labels, run_file_labels

    kx, kg, tx, ty = _data()
    kg = kg.astype(object)
    kg[:4] = None
    spec = {"name": "open", "clusterer": {"name": "kmeans"}, "known_from": "dev"}
    log = textio.StringIO()
    method, labels = open_set_labels(spec, kx, kg, tx, 4, random_state=0, log=log)
    assert set(labels) == {1, 2, 3, 4} and method.n_new_ == 1
    assert "dev: 4 images without a generator left out" in log.getvalue()
    np.testing.assert_array_equal(run_file_labels(np.array([2, 2, 5]), 3, False, "m"), [1, 1, 2])
    np.testing.assert_array_equal(run_file_labels(np.array([3, 1]), None, True, "m"), [1, 2])
    with pytest.raises(GantraceError, match="m: images went to 3 generators"):
        run_file_labels(np.array([1, 2, 3]), 2, False, "m")


def test_features_are_read_by_manifest_role(tmp_path):
    ids = ["c", "a", "b", "z"]
    io.write_features(tmp_path / "f.h5", ids, np.arange(8.0).reshape(4, 2))
    man = pd.DataFrame(
        {"image_id": ["a", "b", "c"], "role": ["generated", "real_used", "generated"]}
    )
    io.write_table(man, tmp_path / "m.parquet")
    rows, x = io.read_features_by_role(tmp_path / "f.h5", tmp_path / "m.parquet", {"generated"})
    assert list(rows.image_id) == ["c", "a"]  # the feature file's order; z is not listed
    np.testing.assert_array_equal(x, [[0, 1], [2, 3]])
