import math
from pathlib import Path

import numpy as np
import pytest
import yaml
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

from gantrace.evaluation.metrics import (
    COUNTS,
    FPRS,
    METRICS,
    PRIMARY,
    attribution_metrics,
    dice,
    membership_metrics,
    subset_metrics,
    tpr_column,
)


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
    assert perfect == {
        "ari": 1.0,
        "nmi": pytest.approx(1.0),
        "accuracy": 1.0,
        "k_found": k,
        "k_true": k,
    }


def test_metric_names_are_the_scores_and_the_config_choices():
    """`METRICS` names what the metric functions return and what `datasets.<ds>.metric`
    may choose (config/schema.yaml), task by task; `PRIMARY` is one of them."""
    got = membership_metrics([0, 1, 1], [0, 1, 0], [0.1, 0.9, 0.4])
    assert set(got) == {*METRICS["membership"], *(tpr_column(r) for r in FPRS)}
    assert set(attribution_metrics([1, 2], [1, 2])) == {*METRICS["attribution"], *COUNTS}
    schema = yaml.safe_load((Path(__file__).parents[1] / "config" / "schema.yaml").read_text())
    metric = schema["properties"]["datasets"]["additionalProperties"]
    choices = {
        branch["if"]["properties"]["task"]["const"]: branch["then"]["properties"]["metric"]["enum"]
        for branch in metric["allOf"]
    }
    assert choices == {task: list(names) for task, names in METRICS.items()}
    assert set(subset_metrics(["a"], ["a"])) == set(METRICS["subset_attribution"])
    assert all(PRIMARY[task] in METRICS[task] for task in METRICS)


def test_dice_of_a_pair_and_of_stacks():
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2], b[0, 1:3] = True, True  # 8 and 8 pixels, 4 shared
    assert dice(a[0], b[0]) == 0.5 and isinstance(dice(a[0], b[0]), float)
    np.testing.assert_array_equal(dice(a, b), [0.5, 1.0])  # two empty masks: 1.0
