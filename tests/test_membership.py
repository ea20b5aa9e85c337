import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from gantrace.errors import ConfigError
from gantrace.membership.method import (
    MembershipMethod,
    best_f1_threshold,
    out_of_fold_thresholds,
)
from gantrace.membership.scorers import SCORERS, ClusterDistanceScorer, KNNScorer

G = np.array([[0.0, 0], [3, 4], [6, 8]])
R = np.array([[0.0, 0], [0, 1]])


def test_knn_hand_values():
    np.testing.assert_allclose(KNNScorer(k=1).fit(G).score(R), [0, -1], atol=1e-7)
    want = [-(0 + 5) / 2, -(1 + np.hypot(3, 3)) / 2]
    np.testing.assert_allclose(KNNScorer(k=2).fit(G).score(R), want, atol=1e-7)
    cos = KNNScorer(metric="cosine").fit([[1.0, 0], [0, 1]]).score([[2.0, 0], [1, 1]])
    np.testing.assert_allclose(cos, [0, -(1 - 1 / np.sqrt(2))], atol=1e-7)
    man = KNNScorer(k=2, metric="manhattan").fit([[0.0, 0], [3, 4]]).score([[1.0, 1]])
    np.testing.assert_allclose(man, [-(2 + 5) / 2])


def test_exact_copy_scores_top():
    rng = np.random.default_rng(1)
    gen = rng.standard_normal((100, 8))
    real = np.vstack([rng.standard_normal((20, 8)), gen[[17]]])
    assert np.argmax(KNNScorer(k=1).fit(gen).score(real)) == 20


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
@pytest.mark.parametrize("k", [1, 3])
def test_blocked_knn_equals_brute_force(metric, k):
    rng = np.random.default_rng(2)
    gen = rng.standard_normal((300, 16)).astype(np.float32)
    real = rng.standard_normal((53, 16)).astype(np.float32)
    brute = -np.sort(
        cdist(real.astype(float), gen.astype(float), metric.replace("manhattan", "cityblock")),
        axis=1,
    )[:, :k].mean(axis=1)
    got = KNNScorer(k=k, metric=metric, block_size=7).fit(gen).score(real)
    np.testing.assert_allclose(got, brute, rtol=1e-5, atol=1e-5)


def test_cluster_distance_min_vs_mean_by_hand():
    gen = [[0.0, 0], [0, 0], [10, 0], [10, 0]]
    kw = {"n_clusters": 2, "n_init": 1}
    got_min = ClusterDistanceScorer(reduce="min", **kw).fit(gen).score([[3.0, 4]])
    got_mean = ClusterDistanceScorer(reduce="mean", **kw).fit(gen).score([[3.0, 4]])
    np.testing.assert_allclose(got_min, [-5.0])
    np.testing.assert_allclose(got_mean, [-(5 + np.sqrt(65)) / 2])
    man = ClusterDistanceScorer(reduce="mean", metric="manhattan", **kw).fit(gen)
    np.testing.assert_allclose(man.score([[3.0, 4]]), [-(7 + 11) / 2])


def _planted(seed=0, n_gen=400, n_used=40, n_not=40, n_unknown=30, dim=24):
    rng = np.random.default_rng(seed)
    gen = rng.standard_normal((n_gen, dim))
    used = gen[: n_used + n_unknown // 2] + 1e-3 * rng.standard_normal(
        (n_used + n_unknown // 2, dim)
    )
    fresh = rng.standard_normal((n_not + n_unknown - n_unknown // 2, dim))
    real = np.vstack([used[:n_used], fresh[:n_not], used[n_used:], fresh[n_not:]])
    labels = np.r_[np.ones(n_used), np.zeros(n_not), -np.ones(n_unknown)].astype(int)
    truth = np.r_[
        np.ones(n_used),
        np.zeros(n_not),
        np.ones(n_unknown // 2),
        np.zeros(n_unknown - n_unknown // 2),
    ]
    return gen.astype(np.float32), real.astype(np.float32), labels, truth


@pytest.mark.parametrize("scorer", [{"name": "knn"}, {"name": "knn", "k": 2, "metric": "cosine"}])
def test_planted_members_rank_first_and_are_found(scorer):
    gen, real, labels, truth = _planted()
    frame = MembershipMethod(scorer=scorer).run(gen, real, labels)
    order = np.argsort(-frame["score"].to_numpy())
    assert truth[order[: int(truth.sum())]].all()
    np.testing.assert_array_equal(frame["decision"], truth)
    assert list(frame.columns) == ["score", "decision", "fold", "threshold"]


def test_out_of_fold_thresholds_never_see_own_label():
    rng = np.random.default_rng(3)
    gen = rng.standard_normal((200, 6))
    real = np.vstack([gen[:30] + 0.3 * rng.standard_normal((30, 6)), rng.standard_normal((40, 6))])
    labels = np.r_[np.ones(15), np.zeros(20), np.ones(15), -np.ones(20)].astype(int)
    rng.shuffle(labels[:50])
    frame = MembershipMethod(n_folds=4, random_state=7).run(gen, real, labels)
    scores, folds, thr = (
        frame["score"].to_numpy(),
        frame["fold"].to_numpy(),
        frame["threshold"].to_numpy(),
    )
    known = labels >= 0
    assert (folds[~known] == -1).all() and set(folds[known]) == {0, 1, 2, 3}
    for fold in range(4):
        train = known & (folds != fold)
        np.testing.assert_array_equal(
            thr[folds == fold], best_f1_threshold(scores[train], labels[train])
        )
    assert (thr[~known] == best_f1_threshold(scores[known], labels[known])).all()
    np.testing.assert_array_equal(frame["decision"], (scores > thr).astype(int))
    # With folds fixed, flipping any row's label leaves its own threshold unchanged.
    changed_elsewhere = False
    for row in np.flatnonzero(known):
        flipped = labels[known].copy()
        i = np.flatnonzero(known).tolist().index(row)
        flipped[i] = 1 - flipped[i]
        new = out_of_fold_thresholds(scores[known], flipped, folds[known])
        assert new[i] == thr[row]
        changed_elsewhere |= bool((new != thr[known]).any())
    assert changed_elsewhere  # the check above is not vacuous


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.7])
def test_fraction_threshold(fraction):
    gen, real, _, _ = _planted(n_unknown=200)
    unknown = -np.ones(len(real), dtype=int)
    method = MembershipMethod(used_fraction=fraction)
    frame = method.run(gen, real, unknown)
    assert abs(frame["decision"].mean() - fraction) <= 1 / len(real)
    assert (frame["fold"] == -1).all() and frame["threshold"].nunique() == 1
    assert "fraction" in method.threshold_note_
    labels = np.r_[np.ones(10), np.zeros(10), -np.ones(len(real) - 20)].astype(int)
    forced = MembershipMethod(threshold="fraction", used_fraction=fraction).run(gen, real, labels)
    np.testing.assert_array_equal(forced["decision"], frame["decision"])


def test_too_few_labels_fall_back():
    gen, real, _, _ = _planted()
    labels = -np.ones(len(real), dtype=int)
    labels[:3], labels[40:41] = 1, 0  # one not-used row: no 2-fold split possible
    method = MembershipMethod()
    frame = method.run(gen, real, labels)
    assert "too few" in method.threshold_note_ and (frame["fold"] == -1).all()
    labels[40:43] = 0  # three per class: 3 folds instead of 5
    frame = method.run(gen, real, labels)
    assert (
        set(frame["fold"][labels >= 0]) == {0, 1, 2}
        and "3 stratified folds" in frame.attrs["threshold_note"]
    )


def test_reducer_and_determinism():
    gen, real, labels, _ = _planted()
    kw = {
        "scorer": {"name": "cluster_distance", "n_clusters": 5, "n_init": 2},
        "reducer": {"name": "pca", "n_components": 0.9},
    }
    a = MembershipMethod(**kw, random_state=4).run(gen, real, labels)
    b = MembershipMethod(**kw, random_state=4).run(gen, real, labels)
    assert a.equals(b)


def test_best_f1_threshold_by_hand():
    assert best_f1_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.225)
    assert best_f1_threshold([4, 3, 2, 1], [1, 0, 0, 1]) == 3.5  # ties -> highest threshold
    assert best_f1_threshold([1, 1, 2], [1, 0, 1]) == -np.inf  # calling all used wins
    assert best_f1_threshold([1, 2], [0, 0]) == np.inf


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=25))
def test_best_f1_threshold_is_optimal(rows):
    scores = np.array([r[0] for r in rows], dtype=float)
    labels = np.array([r[1] for r in rows], dtype=int)
    t = best_f1_threshold(scores, labels)

    def f1(cut):
        called = scores > cut
        tp = (called & (labels == 1)).sum()
        return 2 * tp / (called.sum() + labels.sum()) if called.sum() + labels.sum() else 0.0

    best = max(f1(c) for c in np.r_[scores - 0.5, np.inf])
    assert f1(t) == pytest.approx(best)
    assert all(f1(c) < best - 1e-12 for c in np.r_[scores + 0.5, np.inf] if c > t)


def test_config_errors():
    assert {"knn", "cluster_distance", "similarity", "class_centroids", "column"} <= set(SCORERS)
    with pytest.raises(ConfigError, match=r"scorer\.name.*cluster_distance, column"):
        SCORERS.create({"name": "lira"})
    with pytest.raises(ConfigError, match=r"scorer\.n_neighbors.*block_size, k, metric"):
        SCORERS.create({"name": "knn", "n_neighbors": 3})
    with pytest.raises(ConfigError, match="knn.metric"):
        SCORERS.create({"name": "knn", "metric": "hamming"})
    with pytest.raises(ConfigError, match="knn.k=5"):
        KNNScorer(k=5).fit(G)
    with pytest.raises(ConfigError, match="reduce"):
        SCORERS.create({"name": "cluster_distance", "reduce": "max"})
    with pytest.raises(ConfigError, match="used_fraction"):
        MembershipMethod(used_fraction=1.0)
    with pytest.raises(ConfigError, match="threshold"):
        MembershipMethod(threshold="youden")
    with pytest.raises(ValueError, match="labels"):
        MembershipMethod().run(G, R, [1, 2])
