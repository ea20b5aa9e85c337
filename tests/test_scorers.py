"""The membership scorers beyond knn / cluster_distance, each checked by hand or on planted data."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gantrace.errors import ConfigError
from gantrace.membership.method import MembershipMethod
from gantrace.membership.scorers import SCORERS
from gantrace.membership.scorers.unsupervised import ssim_matrix


def _ssim_by_hand(a, b, L):
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    cov = ((a - a.mean()) * (b - b.mean())).mean()
    num = (2 * a.mean() * b.mean() + c1) * (2 * cov + c2)
    return num / ((a.mean() ** 2 + b.mean() ** 2 + c1) * (a.var() + b.var() + c2))


def test_ssim_matrix_by_hand():
    rng = np.random.default_rng(0)
    A, B = rng.random((3, 16)), rng.random((2, 16))
    glob = ssim_matrix(A, B, window=4, data_range=1.0)
    want = [[_ssim_by_hand(a, b, 1.0) for b in B] for a in A]
    np.testing.assert_allclose(glob, want)
    tiles = ssim_matrix(A[:1], B[:1], window=2, data_range=1.0)[0, 0]
    a, b = A[0].reshape(4, 4), B[0].reshape(4, 4)
    parts = [
        _ssim_by_hand(a[i : i + 2, j : j + 2], b[i : i + 2, j : j + 2], 1.0)
        for i in (0, 2)
        for j in (0, 2)
    ]
    assert tiles == pytest.approx(np.mean(parts))
    np.testing.assert_allclose(ssim_matrix(A, A, window=2).diagonal(), 1.0)
    with pytest.raises(ValueError, match="square"):
        ssim_matrix(rng.random((2, 15)), rng.random((2, 15)))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan", "ssim"])
def test_similarity_finds_copies_and_noise_is_seeded(metric):
    rng = np.random.default_rng(1)
    gen = rng.random((60, 64))
    real = np.vstack([rng.random((10, 64)), gen[[7, 30]]])
    spec = {"name": "similarity", "metric": metric, "window": 4}
    scores = SCORERS.create(spec).fit(gen).score(real)
    assert set(np.argsort(-scores)[:2]) == {10, 11}
    noisy = {**spec, "noise_std": 12.75}  # grey levels: 0.05 of the [0, 1] pixel range
    a = SCORERS.create(noisy, random_state=3).fit(gen).score(real)
    b = SCORERS.create(noisy, random_state=3).fit(gen).score(real)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, scores)
    assert not np.allclose(a, SCORERS.create(noisy, random_state=4).fit(gen).score(real))
    assert set(np.argsort(-a)[:2]) == {10, 11}


def test_noise_is_in_grey_levels_whatever_the_feature_scale():
    """noise_std is a standard deviation in grey levels (0-255): on pixel features in
    [0, 1] it is divided by 255, on features in [0, 255] (data_range 255) it is not; the
    same seed gives the same image either way. salt_pepper sets that fraction to 0 / max."""
    gen = np.full((40, 64), 0.5)
    unit = SCORERS.create({"name": "similarity", "noise_std": 10.0}).fit(gen).generated_
    assert np.std(unit - 0.5) == pytest.approx(10.0 / 255, rel=0.05)
    grey = SCORERS.create({"name": "similarity", "noise_std": 10.0, "data_range": 255.0})
    np.testing.assert_allclose(grey.fit(gen * 255).generated_, unit * 255)
    sp = SCORERS.create({"name": "similarity", "salt_pepper": 0.1}).fit(gen).generated_
    assert np.mean(sp == 0.0) == pytest.approx(0.05, abs=0.02)
    assert np.mean(sp == 1.0) == pytest.approx(0.05, abs=0.02)
    assert np.mean(sp == 0.5) == pytest.approx(0.9, abs=0.02)
    assert SCORERS["similarity"].units() == {
        "noise_std": "grey levels",
        "salt_pepper": "fraction of pixels",
    }
    with pytest.raises(ConfigError, match=r"noise_std: expected a number in \[0, 255\] \(grey"):
        SCORERS.create({"name": "similarity", "noise_std": 300.0})


def test_mode_threshold_by_hand():
    gen = np.array([[0.0, 10], [0.1, 10], [0.2, 12], [3.0, 14]])
    real = np.array([[0.1, 11.0], [3.0, 14.0], [0.0, 10.0]])
    # mean: centres (0.825, 11.5), widths 1.0 * std
    std = gen.std(axis=0)
    within = np.abs(real - gen.mean(axis=0)) <= std
    got = SCORERS.create({"name": "mode_threshold", "statistic": "mean", "tolerance": 1.0})
    np.testing.assert_array_equal(got.fit(gen).score(real), within.sum(axis=1))
    # mode with 2 bins: column 0 bins [0, 1.5), [1.5, 3] -> peak centre 0.75;
    # column 1 bins [10, 12), [12, 14] -> two each, first wins -> centre 11.
    mode = SCORERS.create({"name": "mode_threshold", "bins": 2, "tolerance": 0.5}).fit(gen)
    np.testing.assert_allclose(mode.centres_, [0.75, 11.0])
    within = np.abs(real - [0.75, 11.0]) <= 0.5 * std
    np.testing.assert_array_equal(mode.score(real), within.sum(axis=1))
    assert list(mode.score(real)) != [0, 0, 0]


def test_additive_by_hand():
    """CSMorgan's additive thresholding: variance-share weights from the generated images,
    the cut at the mode or mean of the real images' weighted sums."""
    gen = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0]])  # variances 1 and 0.25
    real = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [1.0, 1.0]])
    sums = real @ np.array([0.8, 0.2])  # 0.8, 0.2, 3.0, 1.0
    mean = SCORERS.create({"name": "additive", "statistic": "mean"}).fit(gen)
    np.testing.assert_allclose(mean.fit_reference(real).score(real), sums - sums.mean())
    # mode with 2 bins over [0.2, 3.0]: [0.2, 1.6) holds three sums -> cut 0.9
    mode = SCORERS.create({"name": "additive", "bins": 2}).fit(gen).fit_reference(real)
    np.testing.assert_allclose(mode.score(real), sums - 0.9)
    other = SCORERS.create({"name": "additive", "bins": 3}).fit(gen).fit_reference(real)
    assert other.cut_ != mode.cut_  # bins is used
    with pytest.raises(ConfigError, match="statistic"):
        SCORERS.create({"name": "additive", "statistic": "median"})


def test_additive_thresholding_is_label_free():
    """The decision never reads the dev labels: permuting them changes no score or cut."""
    rng = np.random.default_rng(0)
    gen, real = rng.normal(size=(80, 12)), rng.normal(size=(40, 12))
    labels = np.r_[np.ones(15, int), np.zeros(15, int), -np.ones(10, int)]
    method = MembershipMethod(
        scorer={"name": "additive", "statistic": "mode"},
        reducer={"name": "pca", "n_components": 4},
    )
    assert method.rule_ == "natural" and not method.supervised_
    a = method.run(gen, real, labels)
    b = method.run(gen, real, rng.permutation(labels))
    np.testing.assert_array_equal(a.decision, b.decision)
    np.testing.assert_array_equal(a.score, b.score)
    assert 0 < a.decision.sum() < len(real)  # a cut inside the real images' sums
    # the input matters: other real images, other sums and decisions
    c = method.run(gen, real[::-1], labels)
    assert not np.allclose(c.score, a.score)


def test_cluster_distance_agglomerative_centres():
    gen = np.array([[0.0, 0], [0, 2], [10, 0], [10, 2]])
    scorer = SCORERS.create(
        {"name": "cluster_distance", "n_clusters": 2, "algorithm": "agglomerative"}
    )
    np.testing.assert_allclose(scorer.fit(gen).score([[0.0, 1], [4, 1]]), [0.0, -4.0])


def test_vcmi_variants_by_hand():
    real = np.array([[0.0], [10.0], [10.5]])
    gen = np.array([[0.1], [20.0]])

    def margins(name, **kw):
        s = SCORERS.create({"name": name, "metric": "euclidean", **kw}).fit(gen)
        return s.fit_reference(real).score(real)

    # g = best sim to generated (-0.1, -9.9, -9.5); r = best sim to another real (-10, -.5, -.5)
    # threshold_max: g minus the closest real-real pair (-0.5); `own`: minus r(x)
    np.testing.assert_allclose(margins("vcmi_threshold_max"), [0.4, -9.4, -9.0])
    np.testing.assert_allclose(margins("vcmi_threshold_max", reference="own"), [9.9, -9.4, -9.0])
    np.testing.assert_allclose(margins("vcmi_retrieval"), [0.5, -0.5, 0.5])
    # ranking: generated 0.1 ranks the real images (least similar 0) 2, 1, 0; 20 ranks
    # them 0, 1, 2: every mean rank is the middle, so none is used
    np.testing.assert_allclose(margins("vcmi_ranking"), [0.0, 0.0, 0.0])
    # retrieval and (ranking or threshold_max): only the first row is used; within each
    # side the mean of the rank-normalised g (1, 0, .5), retrieval counts (.75, 0, .75)
    # and mean ranks (.5, .5, .5) orders the rows
    want = [1 + 0.75 - 0.5, -1 + 1 / 6 - 0.5, -1 + 1.75 / 3 - 0.5]
    np.testing.assert_allclose(margins("vcmi_ensemble"), want)
    near = SCORERS.create({"name": "vcmi_ranking", "metric": "euclidean"})
    near = near.fit(np.array([[0.1], [0.2]])).fit_reference(real)
    np.testing.assert_allclose(near.score(real), [0.5, 0.0, -0.5])  # ranks 2, 1, 0 of 2
    frame = MembershipMethod({"name": "vcmi_threshold_max", "metric": "euclidean"}).run(
        gen, real, [-1, -1, -1]
    )
    np.testing.assert_array_equal(frame["decision"], [1, 0, 0])  # natural threshold: 0


def test_column_scorer_and_natural_threshold():
    real = np.array([[1.0, -2.0], [0.0, 3.0], [5.0, 0.5]])
    frame = MembershipMethod({"name": "column", "index": 1}).run(real, real, [-1, -1, -1])
    np.testing.assert_array_equal(frame["score"], real[:, 1])
    np.testing.assert_array_equal(frame["decision"], [0, 1, 1])
    with pytest.raises(ConfigError, match="column.index=2"):
        SCORERS.create({"name": "column", "index": 2}).score(real)


def _shifted(seed=0, n_gen=120, n_used=30, n_not=30, n_unknown=10, d=16):
    """Generated images follow the used images' distribution; not-used ones are shifted."""
    rng = np.random.default_rng(seed)
    shift = np.r_[np.full(d // 2, 1.2), np.zeros(d - d // 2)]
    gen = rng.standard_normal((n_gen, d))
    used = gen[: n_used + n_unknown] + 0.3 * rng.standard_normal((n_used + n_unknown, d))
    fresh = rng.standard_normal((n_not, d)) + shift
    real = np.vstack([used[:n_used], fresh, used[n_used:]])
    labels = np.r_[np.ones(n_used), np.zeros(n_not), -np.ones(n_unknown)].astype(int)
    return gen, real, labels


SUPERVISED = [
    {"name": "class_centroids", "n_clusters": 3, "n_init": 2},
    {"name": "hierarchical_distance", "n_clusters": [2, 4, 8, 16]},
    {"name": "centroid_autoencoder", "hidden": 16, "code_size": 4, "epochs": 8},
    {
        "name": "centroid_autoencoder",
        "hidden": 16,
        "code_size": 4,
        "epochs": 8,
        "error": "ssim",
        "window": 4,
    },
    {"name": "pair_classifier"},
    {"name": "pair_classifier", "classifier": "gradient_boosting"},
]


@pytest.mark.parametrize("spec", SUPERVISED, ids=lambda s: f"{s['name']}-{len(s)}")
def test_supervised_scorers_beat_chance_out_of_fold(spec):
    gen, real, labels = _shifted()
    assert getattr(SCORERS[spec["name"]], "supervised", False)
    frame = MembershipMethod(spec, n_folds=3).run(gen, real, labels)
    known = labels >= 0
    # AI Multimedia Lab's "mse" rule ranks by one number per image, the reconstruction MSE,
    # which separates the planted classes less well than whole error images do
    scalar = spec["name"] == "centroid_autoencoder" and spec.get("error", "mse") == "mse"
    assert roc_auc_score(labels[known], frame["score"][known]) > (0.6 if scalar else 0.8)
    assert (frame["threshold"] == 0).all() and (frame["fold"][~known] == -1).all()
    assert frame["decision"][known].mean() not in (0.0, 1.0)


@pytest.mark.parametrize("spec", [SUPERVISED[0], SUPERVISED[4]], ids=["centroids", "pairs"])
def test_supervised_row_never_sees_its_own_label(spec):
    gen, real, labels = _shifted(seed=1)
    method = MembershipMethod(spec, n_folds=3)
    frame = method.run(gen, real, labels)
    folds = frame["fold"].to_numpy()
    moved = False
    for row in (0, 35):
        flipped = labels.copy()
        flipped[row] = 1 - flipped[row]
        again = method.run(gen, real, flipped, folds=folds)
        assert again["score"][row] == frame["score"][row]
        assert again["decision"][row] == frame["decision"][row]
        moved |= not np.allclose(again["score"], frame["score"])
    assert moved  # other rows' scores do depend on the flipped label


def test_tuning_picks_per_fold_by_other_folds_auc():
    gen, real, labels = _shifted(seed=2)
    spec = {"name": "cluster_distance", "n_clusters": [1, 8], "n_init": 2}
    method = MembershipMethod(spec, n_folds=3)
    frame = method.run(gen, real, labels)
    folds = frame["fold"].to_numpy()
    by_k = {
        k: MembershipMethod({**spec, "n_clusters": k}).score(gen, real) for k in spec["n_clusters"]
    }
    known = labels >= 0
    for group in (0, 1, 2, -1):
        rows = folds == group
        fit = known & (folds != group)
        aucs = {k: roc_auc_score(labels[fit], s[fit]) for k, s in by_k.items()}
        best = max(aucs, key=aucs.get)
        np.testing.assert_allclose(frame["score"][rows], by_k[best][rows])
    assert "tuned by out-of-fold AUC" in method.threshold_note_ and "n_clusters=" in (
        method.threshold_note_
    )


def test_refusals():
    with pytest.raises(ConfigError, match="tsne"):
        MembershipMethod("knn", reducer={"name": "tsne"})
    with pytest.raises(ConfigError, match="natural"):
        MembershipMethod("knn", threshold="natural")
    with pytest.raises(ConfigError, match="supervised"):
        MembershipMethod("class_centroids", threshold="oof_f1")
    with pytest.raises(ConfigError, match="empty list"):
        MembershipMethod({"name": "knn", "k": []})
    gen, real, labels = _shifted()
    few = np.where(np.arange(len(labels)) < 31, labels, -1)  # only one not-used label
    with pytest.raises(Exception, match="at least 2 used and 2 not-used"):
        MembershipMethod("class_centroids").run(gen, real, few)


def test_trained_parts_are_saved(tmp_path):
    gen, real, labels = _shifted()
    spec = {"name": "centroid_autoencoder", "hidden": 8, "code_size": 2, "epochs": 2}
    method = MembershipMethod(spec, reducer={"name": "pca", "n_components": 4}, n_folds=2)
    method.run(gen, real, labels)
    parts = method.trained_parts()
    assert list(parts) == ["scorer"]
    parts["scorer"].save(tmp_path / "scorer.safetensors")
    assert (tmp_path / "scorer.safetensors").stat().st_size > 0


def test_two_means_splits_the_real_images_and_calls_the_group_near_the_generated_used():
    rng = np.random.default_rng(0)
    gen = rng.normal(0.0, 0.3, (40, 4))
    near, far = rng.normal(0.5, 0.3, (10, 4)), rng.normal(6.0, 0.3, (10, 4))
    real = np.vstack([far, near])
    scorer = SCORERS.create({"name": "two_means"}).fit(gen).fit_reference(real)
    scores = scorer.score(real)
    assert (scores[10:] > 0).all() and (scores[:10] < 0).all()
    frame = MembershipMethod({"name": "two_means"}).run(gen, real, [-1] * 20)
    np.testing.assert_array_equal(frame["decision"], [0] * 10 + [1] * 10)  # natural: > 0


def test_hierarchical_distance_by_hand():
    # two generated groups, centres (0, 0) and (10, 0); k=1 puts one centre at (5, 0)
    gen = np.array([[0.0, 1], [0, -1], [10, 1], [10, -1]])
    real = np.array([[0.0, 0], [10, 0], [5, 0], [5, 6], [-3, 0], [13, 0]])
    scorer = SCORERS.create({"name": "hierarchical_distance", "n_clusters": [1, 2, 9]})
    scorer.fit_generated(gen)
    assert sorted(scorer.centres_) == [1, 2]  # k=9 exceeds the 4 generated images: dropped
    np.testing.assert_allclose(scorer.distances(real, 2, "min"), [0, 0, 5, np.hypot(5, 6), 3, 3])
    np.testing.assert_allclose(scorer.distances(real, 2, "avg"), [5, 5, 5, np.hypot(5, 6), 8, 8])
    np.testing.assert_allclose(scorer.distances(real, 1, "min"), [5, 5, 0, 6, 8, 8])
    # used = the images on the clusters: only k=2 with min separates them (F1 = 1)
    used = np.array([1, 1, 0, 0, 0, 0])
    scorer.fit_labels(real, used)
    assert (scorer.k_, scorer.distance_, scorer.f1_) == (2, "min", 1.0)
    assert (scorer.score(real) > 0).tolist() == used.astype(bool).tolist()
    # used = the image between the clusters: k=1 (one centre in the middle) wins
    middle = np.array([0, 0, 1, 0, 0, 0])
    assert scorer.fit_labels(real, middle).k_ == 1
    assert (scorer.score(real) > 0).tolist() == middle.astype(bool).tolist()
    # restricting the grid changes the decision: avg of k=2 cannot single out the first two
    avg = SCORERS.create({"name": "hierarchical_distance", "n_clusters": [2], "distance": ["avg"]})
    avg.fit_generated(gen).fit_labels(real, used)
    assert avg.f1_ < 1.0 and (avg.score(real) > 0).tolist() != used.astype(bool).tolist()
    # the linkage shapes the tree: on a line with one far point, single linkage splits off
    # the point, Ward the halves
    line = np.r_[np.arange(11.0), 12.5][:, None]
    tree = {"name": "hierarchical_distance", "n_clusters": [2]}
    single = SCORERS.create({**tree, "linkage": "single"}).fit_generated(line).centres_[2]
    ward = SCORERS.create(tree).fit_generated(line).centres_[2]
    assert sorted(single.ravel()) == [5.0, 12.5] and sorted(ward.ravel()) != [5.0, 12.5]
    with pytest.raises(ConfigError, match="distance"):
        SCORERS.create({"name": "hierarchical_distance", "distance": ["max"]})
    with pytest.raises(ConfigError, match="exceeds"):
        SCORERS.create({"name": "hierarchical_distance", "n_clusters": [5]}).fit_generated(gen)


def test_hierarchical_distance_grid_is_one_value_not_a_tuning_request():
    gen, real, labels = _shifted(seed=3)
    spec = {"name": "hierarchical_distance", "n_clusters": [2, 4, 8], "distance": ["min", "avg"]}
    method = MembershipMethod(spec, n_folds=3)
    assert len(method.combos_) == 1  # its lists are its parameters
    frame = method.run(gen, real, labels)
    known = labels >= 0
    assert roc_auc_score(labels[known], frame["score"][known]) > 0.8
    assert (frame["threshold"] == 0).all()  # the scorer's own cut: a margin
    for group in ("0", "1", "2", "unlabelled"):  # each group's choice is in the note
        assert f"{group}: k=" in method.threshold_note_


def test_centroid_autoencoder_mse_compares_the_scalar_mse():
    gen, real, labels = _shifted(seed=4)
    known = labels >= 0
    spec = {"name": "centroid_autoencoder", "hidden": 8, "code_size": 2, "epochs": 3}
    scorer = SCORERS.create(spec).fit_generated(gen).fit_labels(real[known], labels[known])
    model = scorer.model_
    mse = (model.reconstruction_error(real) * model.scale_**2).mean(axis=1)  # pixel units
    c_not, c_used = mse[labels == 0].mean(), mse[labels == 1].mean()
    margin = scorer.score(real)
    np.testing.assert_array_equal(margin > 0, np.abs(mse - c_used) < np.abs(mse - c_not))
    np.testing.assert_allclose(np.abs(margin), np.abs(mse - (c_not + c_used) / 2))
