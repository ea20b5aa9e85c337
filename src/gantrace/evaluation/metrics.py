"""Scores: F1 and Cohen's kappa for membership, ARI and NMI for attribution, accuracy and
macro F1 for subset attribution, Dice for masks.

`METRICS` names what each task's scores hold (the leaderboard's columns, the choices of
`datasets.<ds>.metric` in config/schema.yaml); `PRIMARY` is the default ranking metric.
"""

import numpy as np

METRICS = {
    "membership": ("f1", "kappa", "auc", "accuracy", "precision", "recall", "specificity"),
    "attribution": ("ari", "nmi"),
    "subset_attribution": ("accuracy", "macro_f1"),
}
COUNTS = ("k_found", "k_true")  # attribution: clusters predicted vs. true generators
PRIMARY = {"membership": "f1", "attribution": "ari", "subset_attribution": "accuracy"}


def _ratio(num, den):
    # Zero division (no predicted / no actual positives, ...) scores 0.0 rather than nan.
    return float(num / den) if den else 0.0


def membership_metrics(y_true, y_pred, scores=None):
    """f1, accuracy, precision, recall, specificity, kappa and auc of 0/1 decisions (1 = used).

    Every ratio with a zero denominator is 0.0, kappa included (all rows in one class on both
    sides); auc is nan without scores or without both classes in `y_true`.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or not len(y_true):
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape}: need equal 1-D")
    if not (np.isin(y_true, (0, 1)).all() and np.isin(y_pred, (0, 1)).all()):
        raise ValueError("membership_metrics: labels must be 0 or 1 (drop unknown -1 rows)")
    tp = int(((y_true == 1) & (y_pred == 1)).sum())
    tn = int(((y_true == 0) & (y_pred == 0)).sum())
    fp = int(((y_true == 0) & (y_pred == 1)).sum())
    fn = int(((y_true == 1) & (y_pred == 0)).sum())
    n = len(y_true)
    observed = (tp + tn) / n
    chance = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n**2
    auc = float("nan")
    if scores is not None and 0 < y_true.sum() < n:
        # sklearn.metrics takes ~1 s to import: only the jobs that score pay for it
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y_true, np.asarray(scores)))
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": observed,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "kappa": _ratio(observed - chance, 1 - chance),
        "auc": auc,
    }


def attribution_metrics(y_true, y_pred):
    """Adjusted Rand index, normalised mutual information (arithmetic mean), and the number
    of distinct predicted clusters (k_found) and true generators (k_true)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # ~1 s: see above

    return {
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "k_found": len(np.unique(np.asarray(y_pred))),
        "k_true": len(np.unique(np.asarray(y_true))),
    }


def subset_metrics(y_true, y_pred):
    """Accuracy and macro F1 (over the subsets in either array) of subset answers."""
    from sklearn.metrics import f1_score  # ~1 s: see above

    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or not len(y_true):
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape}: need equal 1-D")
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def confusion_table(y_true, y_pred):
    """Long confusion matrix: one row (true, predicted, count) per pair that occurs, sorted."""
    import pandas as pd  # only the jobs that score subsets build this table

    pairs = pd.DataFrame({"true": np.asarray(y_true).astype(str), "predicted": y_pred})
    pairs["predicted"] = pairs.predicted.astype(str)
    return pairs.value_counts(["true", "predicted"]).rename("count").sort_index().reset_index()


def dice(pred, true):
    """Dice overlap of two bool masks (H, W), a float, or per image of two (N, H, W) stacks,
    an (N,) array. Two empty masks score 1.0."""
    pred = np.asarray(pred, dtype=bool)
    true = np.asarray(true, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"dice: shapes differ, {pred.shape} vs {true.shape}")
    if pred.ndim == 2:
        return float(dice(pred[None], true[None])[0])
    p = pred.reshape(len(pred), -1)
    t = true.reshape(len(true), -1)
    inter = np.count_nonzero(p & t, axis=1).astype(np.float64)
    size = np.count_nonzero(p, axis=1) + np.count_nonzero(t, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(size > 0, 2.0 * inter / np.maximum(size, 1), 1.0)
    return score
