"""Calibrated black-box membership attacks, mixture thresholds and stacked fusion."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gantrace import fusion
from gantrace.errors import ConfigError
from gantrace.membership.method import MembershipMethod, mixture_threshold
from gantrace.membership.scorers import SCORERS


def dense_and_sparse(seed=0, d=5):
    """Real images: a dense cluster (never used) and sparse images, half of them used.

    The generator memorised the used sparse images and covers the dense cluster, so plain
    nearest-generated distance also flags every dense (unused) image; a reference pool
    of real images explains the dense images away.
    """
    rng = np.random.default_rng(seed)
    dense = rng.normal(0, 0.05, (60, d))
    sparse = rng.normal(0, 3.0, (40, d))
    used = sparse[:20]
    generated = np.vstack([used + rng.normal(0, 0.1, used.shape), rng.normal(0, 0.05, (100, d))])
    real = np.vstack([dense, sparse])
    labels = np.r_[np.zeros(60), np.ones(20), np.zeros(20)].astype(int)
    return generated, real, labels


def auc_of(spec, generated, real, labels):
    scores = MembershipMethod(scorer=spec).score(generated, real)
    return roc_auc_score(labels, scores)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "calibrated_knn"},
        {"name": "calibrated_knn", "calibration": "ratio"},
        {"name": "calibrated_knn", "metric": "manhattan"},
        {"name": "domias"},
    ],
)
def test_calibration_ranks_planted_members_first_where_plain_knn_is_fooled(spec):
    generated, real, labels = dense_and_sparse()
    plain = auc_of({"name": "knn"}, generated, real, labels)
    calibrated = auc_of(spec, generated, real, labels)
    assert plain < 0.75  # the dense unused cluster sits on generated samples
    assert calibrated > 0.95


def test_reference_leaves_the_query_out():
    generated, real, labels = dense_and_sparse()
    scorer = SCORERS.create({"name": "calibrated_knn"}).fit(generated)
    scores = scorer.fit_reference(real).score(real)
    # Without leave-one-out every d_ref would be 0 and every score <= 0.
    assert (scores > 0).sum() >= 15


def test_not_used_reference_is_supervised_and_cross_fitted():
    generated, real, labels = dense_and_sparse()
    method = MembershipMethod(scorer={"name": "calibrated_knn", "reference": "not_used"})
    assert method.supervised_ and method.rule_ == "natural"
    result = method.run(generated, real, labels)
    assert roc_auc_score(labels, result.score) > 0.95
    # A row's own label never reaches its score: flip one and its score stays.
    flipped = labels.copy()
    flipped[65] = 1 - flipped[65]
    again = method.run(generated, real, flipped, folds=result.fold.to_numpy())
    assert again.score[65] == pytest.approx(result.score[65])


def test_eps_ball_counts_generated_images_within_epsilon():
    generated = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
    real = np.array([[0.0, 0.05], [5.0, 5.1], [20.0, 20.0]])
    scorer = SCORERS.create({"name": "eps_ball", "epsilon": 0.2}).fit(generated)
    np.testing.assert_allclose(scorer.fit_reference(real).score(real), [2 / 3, 1 / 3, 0])


def test_eps_ball_quantile_is_tuned_out_of_fold():
    rng = np.random.default_rng(0)
    real = rng.random((80, 4))
    labels = np.r_[np.ones(40), np.zeros(40)].astype(int)
    generated = np.repeat(real[:40], 3, axis=0) + rng.normal(0, 0.02, (120, 4))
    method = MembershipMethod(scorer={"name": "eps_ball", "quantile": [0.01, 0.5]})
    result = method.run(generated, real, labels)
    assert (
        "quantile=0.5" in method.threshold_note_ and "quantile=0.01" not in method.threshold_note_
    )
    assert roc_auc_score(labels, result.score) > 0.95


def test_knn_takes_ssim_on_pixel_images():
    rng = np.random.default_rng(0)
    real = rng.random((6, 64))
    generated = real[:3] + rng.normal(0, 0.01, (3, 64))
    scores = SCORERS.create({"name": "knn", "metric": "ssim"}).fit(generated).score(real)
    assert scores[:3].min() > scores[3:].max()


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "calibrated_knn", "calibration": "log"},
        {"name": "calibrated_knn", "reference": "everyone"},
        {"name": "domias", "bandwidth": -1},
        {"name": "eps_ball", "quantile": 0},
    ],
)
def test_bad_parameters_name_the_key(spec):
    key = next(k for k in spec if k != "name")
    with pytest.raises(ConfigError, match=f"{spec['name']}.{key}"):
        SCORERS.create(spec)


def test_mixture_threshold_finds_the_gap_and_the_used_share():
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0, 1, 300), rng.normal(8, 1, 100)]
    cut, share = mixture_threshold(scores)
    assert 2 < cut < 6
    assert share == pytest.approx(0.25, abs=0.03)
    assert mixture_threshold(np.ones(10)) == (np.inf, 0.0)


def test_mixture_rule_needs_no_labels():
    generated, real, labels = dense_and_sparse()
    method = MembershipMethod(scorer={"name": "calibrated_knn"}, threshold="mixture")
    result = method.run(generated, real, np.full(len(real), -1))
    assert "estimates" in method.threshold_note_
    called = result.decision.to_numpy().astype(bool)
    assert labels[called].mean() > 0.8 and called.sum() >= 10


def test_stacked_fusion_learns_which_method_carries_the_signal():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50), np.zeros(50), -np.ones(20)].astype(int)
    truth = np.r_[np.ones(50), np.zeros(50), rng.integers(0, 2, 20)]
    signal = truth + rng.normal(0, 0.3, 120)
    inverted = -truth + rng.normal(0, 0.3, 120)  # informative but with the wrong sign
    noise = rng.normal(0, 1, (3, 120))
    scores = np.vstack([inverted, noise, signal])
    logit, folds = fusion.stacked_scores(scores, labels, n_folds=5)
    assert roc_auc_score(truth, logit) > 0.95
    assert roc_auc_score(truth, fusion.mean_rank_scores(scores)) < 0.8
    assert (folds[labels < 0] == -1).all() and set(folds[labels >= 0]) == set(range(5))
    # Cross-fitted: with the split fixed, a labelled row's own label never moves its logit.
    flipped = labels.copy()
    flipped[3] = 0
    again, _ = fusion.stacked_scores(scores, flipped, folds=folds)
    assert again[3] == pytest.approx(logit[3])
    assert not np.allclose(again[folds != folds[3]], logit[folds != folds[3]])
