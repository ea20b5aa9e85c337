"""Groups of images (a patient's neighbouring slices): named in the config, checked at parse
time, a `group` column of the manifest, and folds that never split a group."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from test_plan import _config, _plan

from gantrace import io, stages
from gantrace.attribution.openset import OpenSetAttribution
from gantrace.data.groups import EMPTY, assign_groups, group_column, groups_or_none
from gantrace.errors import ConfigError, GantraceError
from gantrace.fusion import build_rule, stacked_scores
from gantrace.membership.method import decide_thresholds, stratified_folds


# -- config ----------------------------------------------------------------------------------
def _with_groups(tmp_path, **groups):
    cfg = _config()
    for ds, spec in groups.items():
        cfg["datasets"][ds]["groups"] = spec
    return cfg


def test_config_groups_problems_all_at_once(tmp_path):
    no_columns = tmp_path / "bad.csv"
    no_columns.write_text("file,patient\na.png,1\n")
    cfg = _with_groups(
        tmp_path,
        dev_mem={"pattern": r"^(u)(\d)"},  # two captures
        test_mem={"pattern": r"^patient(\d+)_"},  # matches no file name
        dev_att={"csv": str(tmp_path / "missing.csv")},
        test_att={"csv": str(no_columns)},
    )
    problems = _plan(cfg).problems(weights=False)
    text = "\n".join(problems)
    assert "datasets.dev_mem.groups.pattern: '^(u)(\\\\d)' has 2 capture groups" in text
    assert "datasets.test_mem.groups.pattern" in text and "matches none of the 7" in text
    assert "datasets.dev_att.groups.csv" in text and "does not exist" in text
    assert "datasets.test_att.groups.csv" in text and "needs columns image,group" in text
    bad_rx = _with_groups(tmp_path, dev_mem={"pattern": "(u"})
    assert any(
        p.startswith("datasets.dev_mem.groups.pattern: not a regular expression")
        for p in _plan(bad_rx).problems(weights=False)
    )


def test_config_groups_good_specs_pass(tmp_path):
    csv = tmp_path / "g.csv"
    pd.DataFrame({"image": ["u0.png", "u1"], "group": ["p1", "p1"]}).to_csv(csv, index=False)
    cfg = _with_groups(tmp_path, dev_mem={"pattern": r"^([un])\d"}, test_mem={"csv": str(csv)})
    plan = _plan(cfg)
    assert plan.problems(weights=False) == []
    assert plan.groups("dev_mem") == {"pattern": r"^([un])\d"}
    assert plan.groups("dev_att") is None
    # a relative CSV is read under data_root, like truth files
    cfg = _with_groups(tmp_path, test_mem={"csv": "g.csv"})
    cfg["data_root"] = str(tmp_path)
    assert _plan(cfg).groups("test_mem") == {"csv": str(tmp_path / "g.csv")}


def test_schema_refuses_two_ways_of_naming_groups(tmp_path):
    cfg = _with_groups(tmp_path, dev_mem={"pattern": "(x)", "csv": "g.csv"})
    with pytest.raises(ConfigError, match="groups"):
        _plan(cfg)


# -- the manifest's group column -------------------------------------------------------------
def _status(ids, paths):
    """A shard status table as `ingest` writes it (every image accepted)."""
    return pd.DataFrame(
        {
            "image_id": ids,
            "path": paths,
            "role": "real_used",
            "label": 1,
            "generator": "",
            "shard": 0,
            "ok": True,
            "reason": "",
            "sha256": [f"h{i}" for i in range(len(ids))],
        }
    )


def test_manifest_group_column(tmp_path):
    ids = ["p01_s1", "p01_s2", "p02_s1", "gen_007"]
    status = tmp_path / "0.parquet"
    io.write_table(_status(ids, [f"/d/{i}.png" for i in ids]), status)

    def manifest(groups):
        out = tmp_path / "manifest.parquet"
        stages.manifest([status], out, tmp_path / "rejected.parquet", "error", "ds", groups)
        return io.read_table(out).set_index("image_id").group

    plain = manifest(None)
    assert (plain == "").all() and pd.api.types.is_string_dtype(plain)
    grouped = manifest({"pattern": r"^p(\d+)_"})
    # a file the pattern does not match (a generated image) is a group of its own
    assert grouped.to_dict() == {
        "p01_s1": "01",
        "p01_s2": "01",
        "p02_s1": "02",
        "gen_007": "gen_007",
    }
    csv = tmp_path / "g.csv"
    pd.DataFrame({"image": ["p01_s1.png", "p02_s1"], "group": ["a", "b"]}).to_csv(csv, index=False)
    assert manifest({"csv": str(csv)}).to_dict() == {
        "p01_s1": "a",
        "p01_s2": "p01_s2",  # not listed: its own group
        "p02_s1": "b",
        "gen_007": "gen_007",
    }


def test_benchmark_split_still_refuses_an_unmatched_slice():
    with pytest.raises(ConfigError, match="benchmark.split.groups.pattern: 1 file"):
        assign_groups(["p1_1.png", "q.png"], {"pattern": r"^p(\d)_"}, "benchmark.split.groups")
    frame = pd.DataFrame({"path": ["a/p1_1.png"]})
    assert list(group_column(frame, None, "k")) == [""]


# -- folds -----------------------------------------------------------------------------------
def _grouped_labels(n_groups=30, size=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    labels = np.repeat(rng.permutation(np.arange(n_groups) % 2), size)
    return labels, groups


def test_folds_keep_groups_whole_and_are_unchanged_without_groups():
    labels, groups = _grouped_labels()
    folds = stratified_folds(labels, 5, random_state=3, groups=groups)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1  # a group in one fold
    assert set(folds) == set(range(5))
    assert all(0 < labels[folds == f].mean() < 1 for f in range(5))  # still stratified
    # without groups: the same folds as StratifiedKFold (results of old runs unchanged)
    expected = np.empty(len(labels), int)
    split = StratifiedKFold(5, shuffle=True, random_state=3).split(labels, labels)
    for f, (_, test) in enumerate(split):
        expected[test] = f
    np.testing.assert_array_equal(stratified_folds(labels, 5, random_state=3), expected)
    assert pd.Series(expected).groupby(groups).nunique().max() > 1  # image folds split groups
    # a group that holds a whole class leaves a fold nothing of it to learn from
    with pytest.raises(GantraceError, match="groups: with fold 0 left out"):
        stratified_folds(labels, 5, groups=labels)
    # fewer groups than folds: as many folds as groups
    few = stratified_folds(np.repeat([0, 1, 0, 1], 3), 5, groups=np.repeat([7, 8, 9, 6], 3))
    assert sorted(few) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_oof_thresholds_stacked_fusion_and_open_set_respect_groups():
    labels, groups = _grouped_labels()
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(2, len(labels)))
    _, folds, note = decide_thresholds(scores[0], labels, n_folds=5, groups=groups)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1
    assert "stratified group folds" in note
    _, folds = stacked_scores(scores, labels, 5, groups=groups)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1
    tables = [
        pd.DataFrame({"image_id": np.arange(len(labels)), "role": "real_used", "label": labels,
                      "score": s, "decision": (s > 0).astype(int), "fold": -1})
        for s in scores
    ]  # fmt: skip
    for rule in ("stacked", "mean_rank"):
        fused = build_rule("membership", {"methods": ["a", "b"], "rule": rule}).fuse(tables, groups)
        assert fused.groupby(groups).fold.nunique().max() == 1
        plain = build_rule("membership", {"methods": ["a", "b"], "rule": rule}).fuse(tables)
        assert plain.groupby(groups).fold.nunique().max() > 1
    # open set: the radius of a known generator is estimated with whole groups left out
    x = rng.normal(size=(len(labels), 3)) + 4 * labels[:, None]
    x += np.repeat(rng.normal(size=(30, 3)), 4, axis=0)  # groups of near copies
    plain = OpenSetAttribution(clusterer="kmeans").fit(x, labels.astype(str))
    grouped = OpenSetAttribution(clusterer="kmeans").fit(x, labels.astype(str), groups)
    assert (grouped.radius_ > plain.radius_).all()  # a left-out group is farther away


# -- planted correlated neighbours -----------------------------------------------------------
def _neighbour_dataset(tmp_path, n_groups=600, size=5, dim=8, seed=0):
    """Real images in groups of `size` near copies (a patient's neighbouring slices), each
    group used or not as a whole; the generator memorises nothing, so no method can tell
    used from not used on images of unseen groups (true AUC 0.5). A third of the groups are
    held out (real_unknown, labels known only to the test)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim))
    real = np.repeat(centres, size, axis=0) + 0.05 * rng.normal(size=(n_groups * size, dim))
    used = np.repeat(rng.permutation(np.arange(n_groups) % 2), size)
    held = np.repeat(np.arange(n_groups) % 3 == 0, size)
    generated = rng.normal(size=(300, dim))
    ids = [f"p{g:03d}_s{s}" for g in range(n_groups) for s in range(size)]
    gen_ids = [f"gen_{i:04d}" for i in range(len(generated))]
    role = np.where(held, "real_unknown", np.where(used == 1, "real_used", "real_not_used"))
    manifest = pd.DataFrame(
        {
            "image_id": gen_ids + ids,
            "path": [f"/d/{i}.png" for i in gen_ids + ids],
            "role": ["generated"] * len(gen_ids) + list(role),
            "label": [-1] * len(gen_ids) + list(np.where(held, -1, used)),
            "generator": "",
        }
    )
    features = tmp_path / "features.h5"
    io.write_features(features, gen_ids + ids, np.vstack([generated, real]))
    truth = dict(zip(ids, used, strict=True))
    return features, manifest, truth


def _dev_and_held_out_auc(tmp_path, features, manifest, truth, groups):
    man = manifest.copy()
    man["group"] = group_column(man, groups, "datasets.toy.groups")
    man_path, out = tmp_path / "manifest.parquet", tmp_path / "result.parquet"
    io.write_table(man, man_path)
    spec = {
        "name": "calibrated",
        "feature": "f",
        "scorer": {"name": "calibrated_knn", "reference": "not_used"},
    }
    stages.membership(features, man_path, spec, 5, 0, out)
    result = io.read_table(out)
    y = result.image_id.map(truth).to_numpy()
    dev = (result.role != "real_unknown").to_numpy()
    return (
        roc_auc_score(y[dev], result.score[dev]),  # out of fold
        roc_auc_score(y[~dev], result.score[~dev]),  # a model fitted on every dev image
    )


def test_group_folds_remove_the_dev_gap_of_planted_neighbours(tmp_path, capsys):
    features, manifest, truth = _neighbour_dataset(tmp_path)
    image_dev, image_held = _dev_and_held_out_auc(tmp_path, features, manifest, truth, None)
    groups = {"pattern": r"^p(\d+)_"}
    group_dev, group_held = _dev_and_held_out_auc(tmp_path, features, manifest, truth, groups)
    with capsys.disabled():
        print(
            f"\nplanted neighbours, AUC out-of-fold dev / held-out: image folds "
            f"{image_dev:.3f} / {image_held:.3f}, group folds {group_dev:.3f} / {group_held:.3f}"
        )
    # image folds: a query's near copies (and their labels) sit in the training folds
    assert image_dev > 0.9 and image_dev - image_held > 0.3
    # group folds: the out-of-fold dev score is as honest as the held-out one
    assert abs(group_dev - group_held) < 0.1 and abs(group_dev - 0.5) < 0.1
    assert image_held == pytest.approx(group_held)  # held-out rows: one model, all dev rows


def test_an_empty_capture_is_a_group_not_no_groups():
    # ChestCT_31 -> capture "" (slices 0..99 of the benchmark's numbering): still one group,
    # so the score stage resamples groups instead of falling back to single images
    manifest = pd.DataFrame(
        {"path": ["a/ChestCT_31.png", "a/ChestCT_45.png", "a/ChestCT_1031.png"]}
    )
    column = group_column(manifest, {"pattern": r"^ChestCT_(\d*)\d\d\.png$"}, "datasets.d.groups")
    assert list(column) == [EMPTY, EMPTY, "10"]
    assert groups_or_none(manifest.assign(group=column)) is not None
