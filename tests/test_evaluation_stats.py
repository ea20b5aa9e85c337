"""Confidence intervals, privacy-audit metrics, the paired comparison with the best and the
selection on dev (gantrace.evaluation.bootstrap, scores, leaderboard)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gantrace import io, stages
from gantrace.config import validate_config
from gantrace.errors import ConfigError
from gantrace.evaluation import bootstrap
from gantrace.evaluation.leaderboard import SELECTED, rank
from gantrace.evaluation.metrics import attribution_metrics, membership_metrics, tpr_at_fpr
from gantrace.evaluation.scores import score_results

ROOT = Path(__file__).parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
Z95 = 1.959963984540054


def _accuracy_interval(correct, n_boot=4000, seed=0, groups=None):
    """Bootstrap 95 % interval of the accuracy of 0/1 `correct` decisions (all used)."""
    y = np.ones(len(correct), int)
    w = bootstrap.resample_weights(y, n_boot, np.random.default_rng(seed), groups)
    reps = bootstrap.membership_replicates(y, correct[None].astype(float), correct[None], w, [0.1])
    lo, hi = bootstrap.interval(reps["accuracy"], 0.95)
    return float(lo[0]), float(hi[0])


def _wilson(p, n, z=Z95):
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_bootstrap_interval_of_a_proportion_matches_the_binomial_closed_form():
    n, right = 400, 320  # accuracy 0.8
    correct = np.r_[np.ones(right, int), np.zeros(n - right, int)]
    lo, hi = _accuracy_interval(correct)
    wilson = _wilson(right / n, n)
    assert lo == pytest.approx(wilson[0], abs=0.012)
    assert hi == pytest.approx(wilson[1], abs=0.012)
    half = Z95 * math.sqrt(0.8 * 0.2 / n)  # Wald half-width 0.039
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_intervals_shrink_as_n_grows():
    widths = []
    for n in (100, 400, 1600):
        correct = (np.arange(n) % 10 < 7).astype(int)  # 70 % right at every n
        lo, hi = _accuracy_interval(correct, n_boot=2000)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # the width falls as 1 / sqrt(n): four times the images, half the width
    assert widths[0] / widths[1] == pytest.approx(2, rel=0.25)
    assert widths[1] / widths[2] == pytest.approx(2, rel=0.25)


def test_same_seed_same_intervals_other_seed_others():
    correct = (np.arange(300) % 3 > 0).astype(int)
    assert _accuracy_interval(correct, 500, seed=1) == _accuracy_interval(correct, 500, seed=1)
    assert _accuracy_interval(correct, 500, seed=1) != _accuracy_interval(correct, 500, seed=2)


def _membership_tables(n, decide, ids=None, noise=1.0, seed=0):
    """Result tables of methods on n labelled dev images (half used); `decide` maps a
    method name to its 0/1 decisions given the true labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    ids = ids if ids is not None else [f"im{k:04d}" for k in range(n)]
    role = np.where(y == 1, "real_used", "real_not_used")
    out = {}
    for name, fn in decide.items():
        d = fn(y)
        out[name] = pd.DataFrame(
            {
                "image_id": ids,
                "role": role,
                "label": y,
                "score": d + rng.normal(0, noise, n),
                "decision": d,
            }
        )
    return out


def test_group_bootstrap_is_wider_than_the_image_bootstrap_with_correlated_groups():
    """40 groups of 10 near-copies (one decision per group): 40 independent units, not
    400, and the interval over groups says so (about sqrt(10) times wider)."""
    n, size = 400, 10
    ids = [f"im{k:04d}" for k in range(n)]
    group_of = {i: f"patient{k // size:02d}" for k, i in enumerate(ids)}
    right_groups = np.random.default_rng(3).random(n // size) < 0.75

    def decide(y):
        right = right_groups[np.arange(n) // size]
        return np.where(right, y, 1 - y)

    tables = _membership_tables(n, {"m": decide}, ids)
    ev = {"n_boot": 2000}
    by_image = score_results("membership", "d", tables, [], evaluation=ev).iloc[0]
    by_group = score_results("membership", "d", tables, [], groups=group_of, evaluation=ev)
    by_group = by_group.iloc[0]
    assert by_image.boot_unit == "image" and by_group.boot_unit == "group"
    assert by_group.n_groups == n // size
    assert by_group.accuracy == by_image.accuracy  # the point estimate does not change
    wide = by_group.accuracy_hi - by_group.accuracy_lo
    narrow = by_image.accuracy_hi - by_image.accuracy_lo
    assert wide > 2 * narrow


def test_score_stage_resamples_the_manifest_groups(tmp_path):
    """The score stage reads the manifest's `group` column: whole groups where it names
    them, images (assumed independent) where it is empty."""
    n = 60
    tables = _membership_tables(n, {"m": lambda y: y})
    paths = []
    for name, t in tables.items():
        io.write_table(t, tmp_path / f"{name}.parquet")
        paths.append(tmp_path / f"{name}.parquet")
    man = tables["m"][["image_id", "role", "label"]].assign(group=[f"g{k // 6}" for k in range(n)])
    io.write_table(man, tmp_path / "grouped.parquet")
    io.write_table(man.assign(group=""), tmp_path / "plain.parquet")
    for manifest, unit, groups in (("grouped", "group", 10), ("plain", "image", None)):
        out = tmp_path / f"scores_{manifest}.parquet"
        stages.score(
            "membership",
            "d",
            list(tables),
            [],
            paths,
            None,
            out,
            manifest_path=tmp_path / f"{manifest}.parquet",
            evaluation={"n_boot": 200},
        )
        got = io.read_table(out).iloc[0]
        assert got.boot_unit == unit
        assert (pd.isna(got.n_groups) and groups is None) or got.n_groups == groups


def test_tpr_at_fpr_exact_on_a_toy_and_undefined_with_too_few_negatives():
    neg = np.arange(10.0)  # not used: 0..9
    pos = np.array([9.5, 8.5, 5.5, 0.5])
    y = np.r_[np.zeros(10, int), np.ones(4, int)]
    s = np.r_[neg, pos]
    # FPR <= 10 %: one not-used image (9) may pass; the cut above 8 keeps 9.5 and 8.5
    # FPR <= 30 %: 7, 8, 9 pass; above 6: 9.5, 8.5 -- 5.5 would bring 6 in (40 %)
    tpr = tpr_at_fpr(y, s, [0.1, 0.3, 0.01])
    assert tpr[0] == 0.5 and tpr[1] == 0.5
    assert math.isnan(tpr[2])  # 10 not-used images cannot resolve 1 %
    got = membership_metrics(y, (s > 8).astype(int), s, fprs=[0.1, 0.01])
    assert got["tpr_at_fpr_10pct"] == 0.5 and math.isnan(got["tpr_at_fpr_1pct"])
    # 100 not-used images resolve 1 %: the used image above all of them is found
    y2 = np.r_[np.zeros(100, int), 1, 1]
    s2 = np.r_[np.arange(100.0), 200.0, 50.5]
    assert tpr_at_fpr(y2, s2, [0.01])[0] == 0.5
    assert tpr_at_fpr(y2, s2, [0.5])[0] == 1.0  # FPR 49 % lets 50.5 pass


def test_hungarian_accuracy():
    gen = np.repeat(["a", "b", "c"], 20)
    permuted = np.repeat([7, 2, 5], 20)  # the right clusters under other names
    assert attribution_metrics(gen, permuted)["accuracy"] == 1.0
    merged = np.repeat([1, 1, 2], 20)  # a and b in one cluster: one of them is lost
    assert attribution_metrics(gen, merged)["accuracy"] == pytest.approx(40 / 60)
    split = np.r_[np.repeat([1, 2, 3], 20)[:50], np.full(10, 4)]  # 10 of c in a 4th
    assert attribution_metrics(gen, split)["accuracy"] == pytest.approx(50 / 60)


def test_attribution_intervals_and_tie():
    gen = np.repeat(["a", "b", "c"], 40)
    rng = np.random.default_rng(0)
    good = np.where(rng.random(120) < 0.9, np.repeat([0, 1, 2], 40), rng.integers(0, 3, 120))
    noisy = rng.integers(0, 3, 120)
    table = pd.DataFrame({"image_id": [f"x{k}" for k in range(120)], "generator": gen})
    results = {
        "good": table.assign(cluster=good),
        "same": table.assign(cluster=good),
        "noisy": table.assign(cluster=noisy),
    }
    got = score_results("attribution", "d", results, [], evaluation={"n_boot": 500})
    got = got.set_index("method")
    for m in ("ari", "nmi", "accuracy"):
        assert (got[f"{m}_lo"] <= got[m]).all() and (got[m] <= got[f"{m}_hi"]).all()
    assert bool(got.loc["same", "tied_with_best"]) and not got.loc["noisy", "tied_with_best"]


def test_paired_comparison_ties_identical_methods_not_a_clearly_better_one():
    def noisy(y):
        flip = np.random.default_rng(1).random(len(y)) < 0.3
        return np.where(flip, 1 - y, y)

    tables = _membership_tables(300, {"a": noisy, "a_copy": noisy, "worse": lambda y: 1 - y})
    tables["a_copy"] = tables["a"].copy()  # identical scores too
    got = score_results("membership", "d", tables, [], evaluation={"n_boot": 500})
    got = got.set_index("method")
    assert not got.loc["a", "tied_with_best"]  # the best itself
    assert got.loc["a", "diff_lo"] == got.loc["a", "diff_hi"] == 0
    assert got.loc["a_copy", "tied_with_best"]
    assert not got.loc["worse", "tied_with_best"] and got.loc["worse", "diff_hi"] < 0
    # a method as good as the best up to noise, not identical, is tied too
    almost = _membership_tables(300, {"a": noisy, "b": noisy}, seed=5)
    almost["b"]["decision"] = np.where(
        np.arange(300) == 0, 1 - almost["a"].decision, almost["a"].decision
    )
    got = score_results("membership", "d", almost, [], evaluation={"n_boot": 500})
    assert got.set_index("method").loc["b", "tied_with_best"]


def _scores(dataset, task, split, values, metric="f1"):
    rows = [
        {"dataset": dataset, "task": task, "method": m, "kind": "method", "split": split, "n": 50}
        | {metric: v, f"{metric}_lo": v - 0.1, f"{metric}_hi": v + 0.1}
        for m, v in values.items()
    ]
    return pd.DataFrame(rows)


def test_selected_on_dev_picks_by_dev_not_by_test():
    """m1 is best on dev, m2 on test: the honest row holds m1's test score."""
    dev = _scores("mem", "membership", "dev", {"m1": 0.9, "m2": 0.8, "m3": 0.5})
    test = _scores("mem", "membership", "test", {"m1": 0.6, "m2": 0.7, "m3": 0.65})
    board = rank([pd.concat([dev, test])])
    sel = board[board.method == SELECTED]
    assert len(sel) == 1
    row = sel.iloc[0]
    assert row.selected == "m1" and row.split == "test" and row.kind == "selected"
    assert row.score == 0.6 and row.dev_score == 0.9
    assert row.score_lo == pytest.approx(0.5) and pd.isna(row["rank"])
    best_on_test = board[(board.split == "test") & (board["rank"] == 1)].iloc[0]
    assert best_on_test.method == "m2"  # best-of-N on test: what the selection avoids


def test_selected_on_dev_across_a_dev_test_pair_of_attribution_datasets():
    dev = _scores("att_dev", "attribution", "all", {"k1": 0.9, "k2": 0.3}, "ari")
    test = _scores("att_test", "attribution", "all", {"k1": 0.4, "k2": 0.5}, "ari")
    other = _scores("att_other", "attribution", "all", {"k1": 0.1}, "ari")
    board = rank([dev, test, other], dev_datasets={"att_test": "att_dev"})
    sel = board[board.method == SELECTED]
    assert list(sel.dataset) == ["att_test"] and sel.iloc[0].selected == "k1"
    assert sel.iloc[0].score == 0.4
    # without the key, no pair: no selected row
    assert SELECTED not in set(rank([dev, test]).method)


def _config(**datasets):
    cfg = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    for name, extra in datasets.items():
        cfg["datasets"][name].update(extra)
    return cfg


def test_evaluation_defaults_and_dev_dataset_checked_at_parse_time():
    cfg = validate_config(_config(), SCHEMA)
    assert cfg["evaluation"] == {
        "n_boot": 1000,
        "ci": 0.95,
        "fpr": [0.1, 0.01, 0.001],
        "repeats": 1,
    }
    names = list(cfg["datasets"])
    att = next(d for d in names if cfg["datasets"][d]["task"] == "attribution")
    mem = next(d for d in names if cfg["datasets"][d]["task"] == "membership")
    with pytest.raises(ConfigError, match=rf"datasets\.{att}\.dev_dataset: '{mem}' is not"):
        validate_config(_config(**{att: {"dev_dataset": mem}}), SCHEMA)
    with pytest.raises(ConfigError, match=rf"datasets\.{att}\.dev_dataset: 'nope'"):
        validate_config(_config(**{att: {"dev_dataset": "nope"}}), SCHEMA)
    bad = _config()
    bad["evaluation"] = {"ci": 1.5, "n_boot": 5}
    with pytest.raises(ConfigError, match=r"evaluation\.ci.*\n.*evaluation\.n_boot"):
        validate_config(bad, SCHEMA)
