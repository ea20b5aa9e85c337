import numpy as np
import pytest

from gantrace.fusion import (
    align_labels,
    majority_vote,
    mean_rank_scores,
    perfect_agreement,
    vote_decisions,
)


def test_align_permuted_labels_returns_reference():
    rng = np.random.default_rng(0)
    reference = rng.integers(1, 6, size=200)
    permuted = np.array([40, 10, 30, 50, 20, 60])[reference]
    np.testing.assert_array_equal(align_labels(permuted, reference), reference)


def test_align_maximises_agreement_and_numbers_extra_clusters():
    reference = np.array([1, 1, 1, 2, 2, 2])
    labels = np.array([5, 5, 7, 9, 9, 9])  # 3 clusters against 2: cluster 7 is left over
    np.testing.assert_array_equal(align_labels(labels, reference), [1, 1, 3, 2, 2, 2])
    fewer = align_labels(np.array([0, 0, 0, 0, 0, 0]), np.array([3, 3, 4, 4, 4, 4]))
    np.testing.assert_array_equal(fewer, [4] * 6)
    with pytest.raises(ValueError):
        align_labels([1, 2], [1, 2, 3])


def test_majority_vote_by_hand():
    reference = [1, 1, 2, 2, 3, 3]
    other = [7, 7, 8, 8, 9, 9]  # same partition, other ids
    third = [5, 6, 6, 6, 4, 4]
    fused = majority_vote([reference, other, third])
    np.testing.assert_array_equal(fused, [1, 1, 2, 2, 3, 3])
    # Two methods disagreeing on every sample: each tie goes to the reference's label.
    a, b = [1, 1, 2, 2], [1, 2, 2, 1]
    np.testing.assert_array_equal(majority_vote([a, b]), a)
    np.testing.assert_array_equal(majority_vote([a, b], reference_index=1), b)
    # Four methods, ids permuted in one; sample 9 splits 2-2 and the reference says 2.
    ref = [1, 1, 1, 2, 2, 2, 3, 3, 3, 2]
    b = [7, 7, 7, 8, 8, 8, 9, 9, 9, 7]
    c = [1, 1, 1, 2, 2, 2, 3, 3, 3, 1]
    d = [1, 1, 1, 2, 2, 2, 3, 3, 3, 2]
    np.testing.assert_array_equal(majority_vote([ref, b, c, d]), [1, 1, 1, 2, 2, 2, 3, 3, 3, 2])
    np.testing.assert_array_equal(majority_vote([c, b, ref, d])[-1], 1)


def test_majority_vote_tie_without_reference_takes_smallest():
    ref = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4])
    b = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 2])
    c = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    d = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    e = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 2])
    # last sample votes 4 (ref), 2, 3, 3, 2 -> tie between 2 and 3, reference not tied -> 2
    assert majority_vote([ref, b, c, d, e])[-1] == 2


def test_vote_decisions_and_tie_rule():
    d = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]])
    np.testing.assert_array_equal(vote_decisions(d), [1, 0, 0, 0])
    even = np.array([[1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(vote_decisions(even), [0, 1, 0])
    np.testing.assert_array_equal(vote_decisions(even, tie=1), [1, 1, 0])
    with pytest.raises(ValueError):
        vote_decisions([[0, 2]])


def test_perfect_agreement():
    d = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(perfect_agreement(d), [1, 0, 0, 1])


def test_mean_rank_scores():
    scores = np.array([[10.0, 20.0, 30.0], [0.3, 0.1, 0.2]])
    # ranks normalised: [0, .5, 1] and [1, 0, .5]
    np.testing.assert_allclose(mean_rank_scores(scores), [0.5, 0.25, 0.75])
    np.testing.assert_allclose(mean_rank_scores([[1.0, 1.0, 2.0]]), [0.25, 0.25, 1.0])
    # invariant to any monotone rescaling of one method
    rng = np.random.default_rng(1)
    s = rng.standard_normal((3, 50))
    t = s.copy()
    t[1] = np.exp(5 * t[1]) + 100
    np.testing.assert_allclose(mean_rank_scores(s), mean_rank_scores(t))


def test_rerank_decisions_fixes_a_planted_outvoted_row():
    from gantrace.fusion import rerank_decisions

    rng = np.random.default_rng(0)
    truth = np.repeat([1, 0], 10)
    # Three methods agree in their scores: used rows score high, not-used rows low.
    scores = np.stack([truth + 0.1 * rng.standard_normal(20) for _ in range(3)])
    decisions = np.tile(truth, (3, 1))
    decisions[:2, 4] = 0  # two of three methods' decisions wrongly call row 4 not used
    assert vote_decisions(decisions)[4] == 0
    fixed = rerank_decisions(decisions, scores, n_clusters=2)
    np.testing.assert_array_equal(fixed, truth)
    # One cluster per row: nothing to re-rank, the majority vote is returned.
    np.testing.assert_array_equal(
        rerank_decisions(decisions, scores, n_clusters=20), vote_decisions(decisions)
    )


def test_rerank_labels_absorbs_a_fragment_the_vote_keeps():
    from gantrace.fusion import rerank_labels

    truth = np.repeat([1, 2, 3], 10)
    a = truth.copy()
    b = np.array([5, 6, 7])[truth - 1]  # same partition, other ids
    c = truth.copy()
    a[:2], b[:2] = 4, 8  # two of three clusterings split rows 0-1 off as a 4th cluster
    voted = majority_vote(np.stack([a, b, c]))
    assert len(set(voted)) == 4 and voted[0] == 4
    fixed = rerank_labels(np.stack([a, b, c]), n_clusters=3, linkage="average")
    np.testing.assert_array_equal(fixed, truth)
    np.testing.assert_array_equal(rerank_labels(np.stack([a, b, c]), n_clusters=4), voted)


def test_dbscan_rerank_labels_regroups_dense_patterns_and_keeps_noise():
    from gantrace.fusion import build_rule, dbscan_rerank_labels

    truth = np.repeat([1, 2, 3], 10)
    a, b, c = truth.copy(), np.array([5, 6, 7])[truth - 1], truth.copy()
    a[:2], b[:2] = 4, 8  # two of three runs split rows 0-1 off as a 4th cluster
    runs = np.stack([a, b, c])
    voted = majority_vote(runs)
    assert voted[0] == 4
    # eps 1.5: rows 0-1 differ from their cluster in two runs (distance 2) -> a group of
    # their own below min_samples, i.e. noise: they keep the vote
    np.testing.assert_array_equal(dbscan_rerank_labels(runs), voted)
    # eps 2.2 links them to cluster 1's dense group (2 apart), which votes 1 for them; the
    # clusters stay apart (they differ in all three runs: sqrt(6) apart)
    np.testing.assert_array_equal(dbscan_rerank_labels(runs, eps=2.2), truth)
    # min_samples above every group: all noise, the vote stands
    np.testing.assert_array_equal(dbscan_rerank_labels(runs, eps=2.2, min_samples=31), voted)
    rule = build_rule("attribution", {"methods": ["a", "b"], "rule": "dbscan_rerank", "eps": 2.2})
    assert rule.get_params() == {"eps": 2.2, "min_samples": 5}
    np.testing.assert_array_equal(rule.fuse_labels(runs), truth)


def test_fusion_rules_are_a_registry_per_task():
    from pathlib import Path

    import yaml

    from gantrace.errors import ConfigError
    from gantrace.fusion import RULES, build_rule

    assert RULES["attribution"].names() == ["dbscan_rerank", "majority", "rerank"]
    schema = yaml.safe_load((Path(__file__).parents[1] / "config" / "schema.yaml").read_text())
    enum = schema["$defs"]["fusion"]["properties"]["rule"]["enum"]
    assert sorted(enum) == sorted(set(RULES["membership"]) | set(RULES["attribution"]))
    spec = {"methods": ["a", "b"], "rule": "rerank", "n_clusters": 3, "linkage": "average"}
    rule = build_rule("membership", spec, n_folds=4, random_state=1)
    assert rule.get_params() == {"n_clusters": 3, "linkage": "average"}
    # every rule takes only its own parameters: the schema's linkage default is ignored
    assert build_rule("membership", {"methods": ["a"], "linkage": "ward"}).name == "majority"
    stacked = build_rule("membership", {"methods": ["a"], "rule": "stacked"}, n_folds=4)
    assert stacked.get_params() == {"n_folds": 4, "random_state": 0}
    with pytest.raises(ConfigError, match="unknown attribution fusion rule 'stacked'"):
        build_rule("attribution", {"methods": ["a"], "rule": "stacked"})
    with pytest.raises(ConfigError, match=r"membership\.fusion\.linkage: expected one of"):
        build_rule("membership", {"methods": ["a"], "rule": "rerank", "linkage": "median"})


def test_rules_fuse_aligned_tables():
    import pandas as pd

    from gantrace.errors import GantraceError
    from gantrace.fusion import build_rule, check_aligned

    ids = [f"i{k}" for k in range(8)]
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    tables = [
        pd.DataFrame(
            {
                "image_id": ids,
                "role": "real_used",
                "label": labels,
                "score": labels + 0.1 * m * np.arange(8),
                "decision": labels if m else 1 - labels,
                "fold": np.arange(8) % 2,
            }
        )
        for m in range(3)
    ]
    check_aligned(tables, ["a", "b", "c"])
    fused = build_rule("membership", {"rule": "majority"}).fuse(tables)
    assert list(fused.columns) == ["image_id", "role", "label", "score", "decision", "fold"]
    np.testing.assert_array_equal(fused.decision, labels)  # 2 of 3 methods are right
    np.testing.assert_array_equal(fused.fold, np.arange(8) % 2)  # the first method's folds
    rule = build_rule("membership", {"rule": "mean_rank"}, n_folds=2)
    fused = rule.fuse(tables)
    assert rule.note_.startswith("oof_f1: 2 stratified folds")
    assert set(fused.fold) == {0, 1} and set(fused.decision) <= {0, 1}  # its own folds
    clusters = [
        pd.DataFrame({"image_id": ids, "cluster": labels + m, "generator": ""}) for m in range(2)
    ]
    fused = build_rule("attribution", {"rule": "majority"}).fuse(clusters)
    assert list(fused.columns) == ["image_id", "generator", "cluster"]
    np.testing.assert_array_equal(fused.cluster, labels)  # aligned to the first method's ids
    with pytest.raises(GantraceError, match="b: its images differ from a; cannot fuse them"):
        check_aligned([tables[0], tables[1].iloc[::-1]], ["a", "b"])
