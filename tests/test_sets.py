"""Set-level membership (a group score from its images' scores), its leaderboard rows, the
clean reference pool of a dataset (`reference_real`) and the parse-time problem without one."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from test_plan import _config, _plan

from gantrace import io, stages
from gantrace.errors import ConfigError
from gantrace.evaluation.leaderboard import rank
from gantrace.evaluation.scores import score_results
from gantrace.evaluation.summary import best_methods
from gantrace.membership.sets import SetInference, image_p_values


def weak_members(seed=0, n_groups=40, size=16):
    """Image scores with a weak member signal (+0.6 sd) on the slices of the member groups
    (the first half): an image alone is near chance, a group's 16 slices together are not."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{g:02d}" for g in range(n_groups)], size)
    used = np.repeat(np.arange(n_groups) < n_groups // 2, size).astype(int)
    scores = rng.normal(size=len(groups)) + 0.6 * used
    return scores, used, groups


def test_image_p_values_count_the_null_outside_the_group():
    scores = np.array([3.0, 1.0, 2.0, 0.0, 5.0])
    labels = np.array([1, 0, 0, 0, -1])
    groups = np.array(["a", "b", "b", "c", "d"])
    p = image_p_values(scores, labels, groups)
    # a: null {1, 2, 0}, none >= 3; b's rows: null {0} only; d: null {1, 2, 0}
    np.testing.assert_allclose(p, [1 / 4, 1 / 2, 1 / 2, 3 / 3, 1 / 4])


@pytest.mark.parametrize("statistic", ["fisher", "stouffer", "mean", "top_k"])
def test_group_scores_recover_a_planted_member_group(statistic):
    scores, used, groups = weak_members()
    labels = np.where(np.arange(len(used)) % 2, used, -1)  # half the images labelled
    table = SetInference(statistic=statistic).group_table(
        scores, np.zeros(len(scores)), labels, groups
    )
    truth = pd.Series(used).groupby(groups).max().loc[table.group]
    image_auc = roc_auc_score(used, scores)
    group_auc = roc_auc_score(truth, table.group_score)
    assert image_auc < 0.7 and group_auc > 0.85
    # shuffled image scores carry no group signal
    shuffled = np.random.default_rng(1).permutation(scores)
    noise = SetInference(statistic=statistic).group_table(
        shuffled, np.zeros(len(scores)), labels, groups
    )
    assert roc_auc_score(truth, noise.group_score) < 0.75


def test_fisher_decides_at_alpha_and_propagates_only_when_asked():
    scores, used, groups = weak_members()
    table = pd.DataFrame(
        {"score": scores, "threshold": 10.0, "decision": 0, "label": np.where(used, -1, 0)}
    )
    kept = SetInference().apply(table, groups)
    assert (kept.decision == 0).all() and kept.group_decision.sum() > 0
    spread = SetInference(propagate=True).apply(table, groups)
    assert (spread.decision == spread.group_decision).all()
    assert spread.groupby("group").decision.nunique().max() == 1
    strict = SetInference(alpha=1e-12).apply(table, groups)
    assert strict.group_decision.sum() < kept.group_decision.sum()


def test_set_inference_parameters_are_checked():
    with pytest.raises(ConfigError, match="membership.set_inference.statistic"):
        SetInference(statistic="median")


def _result(name, scores, used, groups, split_unknown=None):
    table = pd.DataFrame(
        {
            "image_id": [f"i{k:03d}" for k in range(len(scores))],
            "role": "real_used",
            "label": used,
            "score": scores,
            "decision": (scores > 0.25).astype(int),
            "fold": -1,
            "threshold": 0.25,
        }
    )
    table["role"] = np.where(used == 1, "real_used", "real_not_used")
    return SetInference(statistic="mean").apply(table, groups)


def test_leaderboard_gets_group_level_rows_with_group_bootstrap():
    scores, used, groups = weak_members()
    results = {"a": _result("a", scores, used, groups), "b": _result("b", -scores, used, groups)}
    ids = dict(zip(results["a"].image_id, groups, strict=True))
    table = score_results("membership", "ds", results, (), None, ids, "auc", {"n_boot": 200})
    group = table[table.level == "group"].set_index("method")
    image = table[table.level == "image"].set_index("method")
    assert len(group) == 2 and group.n.tolist() == [40, 40]
    assert (group.boot_unit == "group").all()
    assert group.auc["a"] > 0.85 > image.auc["a"]
    assert group.auc_lo["a"] < group.auc["a"] < group.auc_hi["a"]
    assert "tpr_at_fpr_1pct" in group
    board = rank([table], {"ds": "auc"})
    assert list(board.columns[:4]) == ["dataset", "task", "split", "level"]
    assert board.level.tolist() == ["image", "image", "group", "group"]
    assert board.groupby("level")["rank"].apply(list).to_dict() == {
        "group": [1, 2],
        "image": [1, 2],
    }
    lines = best_methods(board, "ds")
    assert lines[0].startswith("best (dev): a auc") and lines[1].startswith(
        "best (dev, per group): a"
    )
    # without group columns: no level column, as before
    plain = {
        n: t.drop(columns=["group", "group_score", "group_decision"]) for n, t in results.items()
    }
    assert "level" not in score_results("membership", "ds", plain, (), None, ids, "auc")


# -- the dataset's clean pool through the membership job and the plan -----------------------
def test_membership_job_reads_the_clean_pool_and_writes_group_columns(tmp_path, capsys):
    rng = np.random.default_rng(0)
    dim, size = 4, 2
    centres = rng.normal(0, 3.0, (40, dim))
    real = np.repeat(centres, size, axis=0) + rng.normal(0, 0.02, (80, dim))
    used = np.repeat(np.arange(40) < 20, size).astype(int)
    generated = real[used == 1] + rng.normal(0, 0.1, (40, dim))
    pool = rng.normal(0, 3.0, (60, dim))
    ids = [f"p{g:02d}_s{s}" for g in range(40) for s in range(size)]
    gen_ids, ref_ids = [f"gen{i:03d}" for i in range(40)], [f"ref{i:03d}" for i in range(60)]
    manifest = pd.DataFrame(
        {
            "image_id": gen_ids + ids + ref_ids,
            "role": ["generated"] * 40
            + list(np.where(used == 1, "real_used", "real_not_used"))
            + ["reference_real"] * 60,
            "label": [-1] * 40 + list(used) + [-1] * 60,
            "group": list(gen_ids) + [i.split("_")[0] for i in ids] + list(ref_ids),
        }
    )
    features, man_path = tmp_path / "f.h5", tmp_path / "m.parquet"
    io.write_features(features, gen_ids + ids + ref_ids, np.vstack([generated, real, pool]))
    io.write_table(manifest, man_path)

    def run(reference):
        out = tmp_path / f"{reference}.parquet"
        spec = {
            "name": reference,
            "feature": "f",
            "scorer": {"name": "calibrated_knn", "reference": reference},
        }
        stages.membership(features, man_path, spec, 3, 0, out)
        return io.read_table(out)

    clean = run("clean")
    assert len(clean) == 80 and not clean.image_id.str.startswith("ref").any()
    assert roc_auc_score(clean.label, clean.score) > 0.95
    assert {"group", "group_score", "group_decision"} <= set(clean.columns)
    assert clean.group.nunique() == 40
    log = capsys.readouterr().out
    assert "clean reference pool: 60 reference_real images" in log and "set inference" in log
    # no reference_real rows: the clean scorer refuses instead of using the real images
    manifest.loc[manifest.role == "reference_real", "role"] = "real_unknown"
    io.write_table(manifest, man_path)
    with pytest.raises(Exception, match="reference_real"):
        run("clean")


def test_a_membership_fusion_gets_group_rows_from_its_fused_scores(tmp_path, capsys):
    scores, used, groups = weak_members(seed=3)
    ids = [f"{g}_{i:03d}" for i, g in enumerate(groups)]
    labels = np.where(np.arange(len(ids)) % 2 == 0, used, -1)  # half labelled
    rng = np.random.default_rng(0)
    paths = []
    for m in range(2):  # two methods: the member signal plus their own noise
        table = pd.DataFrame(
            {
                "image_id": ids,
                "role": np.where(labels >= 0, "real_used", "real_unknown"),
                "label": labels,
                "score": scores + rng.normal(0, 0.3, len(ids)),
                "decision": 0,
                "fold": -1,
            }
        )
        paths.append(tmp_path / f"m{m}.parquet")
        io.write_table(table, paths[-1])
    manifest = tmp_path / "manifest.parquet"
    io.write_table(pd.DataFrame({"image_id": ids, "group": groups}), manifest)
    out = tmp_path / "fused.parquet"
    spec = {"methods": ["m0", "m1"], "rule": "mean_rank"}
    stages.fusion("membership", paths, spec, out, 3, 0, manifest_path=manifest)
    fused = io.read_table(out)
    assert {"group", "group_score", "group_decision"} <= set(fused.columns)
    by_group = fused.groupby("group").agg(score=("group_score", "first"), used=("label", "max"))
    labelled = by_group[by_group.used >= 0]
    assert roc_auc_score(labelled.used, labelled.score) > 0.9  # the planted member groups
    assert "set inference: group score = Fisher-combined p-values" in capsys.readouterr().out
    # without groups in the manifest: no group columns
    io.write_table(pd.DataFrame({"image_id": ids}), manifest)
    stages.fusion("membership", paths, spec, out, 3, 0, manifest_path=manifest)
    assert "group_score" not in io.read_table(out).columns


def test_clean_reference_without_a_pool_is_a_parse_time_problem():
    cfg = _config()
    cfg["datasets"]["test_mem"]["dev_dataset"] = "dev_mem"
    cfg["membership"]["methods"]["clean"] = {
        "feature": "pixels",
        "scorer": {"name": "calibrated_knn", "reference": "clean"},
    }
    problems = _plan(cfg).problems(weights=False)
    text = "\n".join(problems)
    for ds in ("dev_mem", "test_mem"):
        assert f"datasets.{ds}.reference_real" in text
    assert text.count("membership.methods.clean.scorer.reference: 'clean'") == 2
    assert "its dev set's not-used images: reference_real: n" in text  # test_mem's hint
    cfg["datasets"]["dev_mem"]["reference_real"] = "n"
    cfg["datasets"]["test_mem"]["reference_real"] = "n"
    assert not [p for p in _plan(cfg).problems(weights=False) if "reference" in p]
    # only where the method runs
    del cfg["datasets"]["test_mem"]["reference_real"]
    cfg["membership"]["methods"]["clean"]["datasets"] = ["dev_mem"]
    assert not [p for p in _plan(cfg).problems(weights=False) if "reference" in p]


def test_reference_real_only_on_folder_membership_datasets():
    cfg = _config()
    cfg["datasets"]["dev_att"]["reference_real"] = "n"
    with pytest.raises(ConfigError, match=r"datasets\.dev_att\.reference_real: only folder-based"):
        _plan(cfg)
