import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    cohen_kappa_score,
    f1_score,
    normalized_mutual_info_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from gantrace.evaluation.metrics import attribution_metrics, membership_metrics


@pytest.mark.parametrize("seed", range(25))
def test_membership_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n) if seed % 3 else y_true ^ (rng.random(n) < 0.2)
    scores = rng.standard_normal(n)
    got = membership_metrics(y_true, y_pred, scores)
    kw = {"zero_division": 0}
    assert got["f1"] == pytest.approx(f1_score(y_true, y_pred, **kw))
    assert got["precision"] == pytest.approx(precision_score(y_true, y_pred, **kw))
    assert got["recall"] == pytest.approx(recall_score(y_true, y_pred, **kw))
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert got["specificity"] == pytest.approx(recall_score(1 - y_true, 1 - y_pred, **kw))
    kappa = cohen_kappa_score(y_true, y_pred, replace_undefined_by=0.0)
    assert got["kappa"] == pytest.approx(kappa)
    if 0 < y_true.sum() < n:
        assert got["auc"] == pytest.approx(roc_auc_score(y_true, scores))
    else:
        assert math.isnan(got["auc"])


def test_hand_computed_values():
    y_true = [1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 0, 1, 0, 0, 0, 0]  # tp 2, fn 1, fp 1, tn 4
    got = membership_metrics(y_true, y_pred)
    assert got["specificity"] == pytest.approx(4 / 5)
    assert got["precision"] == got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    # po = 6/8; pe = (3*3 + 5*5) / 64
    assert got["kappa"] == pytest.approx((6 / 8 - 34 / 64) / (1 - 34 / 64))
    assert math.isnan(got["auc"])


def test_zero_division_and_one_class():
    got = membership_metrics([0, 0, 0], [0, 0, 0], scores=[0.1, 0.2, 0.3])
    assert got["f1"] == got["precision"] == got["recall"] == got["kappa"] == 0.0
    assert got["accuracy"] == got["specificity"] == 1.0
    assert math.isnan(got["auc"])
    with pytest.raises(ValueError, match="0 or 1"):
        membership_metrics([1, -1], [1, 0])
    with pytest.raises(ValueError):
        membership_metrics([1, 0], [1])


@pytest.mark.parametrize("seed", range(10))
def test_attribution_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, 5, 80), rng.integers(1, 6, 80)
    got = attribution_metrics(a, b)
    assert got["ari"] == pytest.approx(adjusted_rand_score(a, b))
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(a, b))
    perfect = attribution_metrics(a, 10 - a)
    k = len(set(a))
    assert perfect == {"ari": 1.0, "nmi": pytest.approx(1.0), "k_found": k, "k_true": k}
