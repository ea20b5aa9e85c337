"""Task scores: F1 and Cohen's kappa for membership, ARI and NMI for attribution."""

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score


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
    return {
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "k_found": len(np.unique(np.asarray(y_pred))),
        "k_true": len(np.unique(np.asarray(y_true))),
    }
