"""Scores: F1, Cohen's kappa, AUC and TPR at low FPR for membership, ARI, NMI and matched
accuracy for attribution, accuracy and macro F1 for subset attribution, Dice for masks.

`METRICS` names what each task's scores hold (the leaderboard's columns, the choices of
`datasets.<ds>.metric` in config/schema.yaml); `PRIMARY` is the default ranking metric.
The count- and contingency-based formulas take arrays (one value per bootstrap resample and
method, `gantrace.evaluation.bootstrap`) as well as scalars: one definition for both.
"""

import numpy as np

METRICS = {
    "membership": (
        "f1",
        "kappa",
        "auc",
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "specificity",
    ),
    # accuracy: share of images whose cluster, matched one-to-one to the generators
    # (Hungarian), is their generator
    "attribution": ("ari", "nmi", "accuracy"),
    "subset_attribution": ("accuracy", "macro_f1"),
}
COUNTS = ("k_found", "k_true")  # attribution: clusters predicted vs. true generators
PRIMARY = {"membership": "f1", "attribution": "ari", "subset_attribution": "accuracy"}
FPRS = (0.1, 0.01, 0.001)  # default `evaluation.fpr`: TPR at 10 %, 1 %, 0.1 % FPR


def tpr_column(fpr):
    """The column of TPR at false-positive rate `fpr`: 0.01 -> `tpr_at_fpr_1pct`."""
    return f"tpr_at_fpr_{100 * float(fpr):g}pct"


def _ratio(num, den):
    # Zero division (no predicted / no actual positives, ...) scores 0.0 rather than nan.
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)


def from_counts(tp, fp, tn, fn):
    """f1, accuracy, balanced_accuracy, precision, recall, specificity and kappa of
    confusion counts (scalars, or arrays of any shape: weighted counts of resamples).
    Every ratio with a zero denominator is 0.0, kappa included."""
    tp, fp, tn, fn = (np.asarray(v, dtype=float) for v in (tp, fp, tn, fn))
    n = tp + tn + fp + fn
    observed = _ratio(tp + tn, n)
    chance = _ratio((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp), n**2)
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": observed,
        "balanced_accuracy": (recall + specificity) / 2,
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        "specificity": specificity,
        "kappa": _ratio(observed - chance, 1 - chance),
    }


def roc_summary(y, scores, weights, fprs=()):
    """ROC AUC (ties count one half) and TPR at each false-positive rate of `fprs` of one
    score per image (higher = used) under image `weights` (B, n): (auc (B,), tpr (B,
    len(fprs))), one row per resample.

    TPR at a rate is the highest TPR of a threshold whose FPR is at most the rate, as
    privacy audits report it; nan where fewer than 1 / rate not-used images (by weight)
    are there to resolve it. AUC is nan where a row weighs no used or no not-used image.
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float32))
    return roc_summary_t(y, scores, np.ascontiguousarray(w.T), fprs)


def _prefix(w):
    """Exclusive prefix sums along images of (n, B) weights: (n + 1, B), row 0 zero."""
    out = np.zeros((len(w) + 1, w.shape[1]), dtype=np.float32)  # sums of counts: exact
    # Row by row: np.cumsum(axis=0) walks each column with a stride, ~6x slower here.
    for i, row in enumerate(w):
        np.add(out[i], row, out=out[i + 1])
    return out


def _count_below(sorted_cols, limit):
    """Per column of (m, B) column-wise ascending values: how many lie below `limit` (B,),
    by a binary search run on every column at once (log2(m) gathers of B values)."""
    cols = np.arange(sorted_cols.shape[1])
    lo, hi = np.zeros(len(cols), dtype=np.intp), np.full(len(cols), len(sorted_cols))
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        below = sorted_cols[np.minimum(mid, len(sorted_cols) - 1), cols] < limit
        lo = np.where(active & below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)
    return lo


def roc_summary_t(y, scores, weights_t, fprs=()):
    """`roc_summary` of weights given image-major, (n, B): the layout whose cumulative
    sums over images numpy runs fastest (whole rows of resamples at a time). The images
    are split by class once; where a used image lies among the sorted not-used ones, and
    which used images pass each cut, are searches on the scores alone, so each resample
    costs a cumulative sum per class and a few gathers."""
    y, scores = np.asarray(y), np.asarray(scores, dtype=float)
    neg_idx, pos_idx = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    neg_idx = neg_idx[np.argsort(scores[neg_idx], kind="stable")]
    pos_idx = pos_idx[np.argsort(scores[pos_idx], kind="stable")]
    s_neg, s_pos = scores[neg_idx], scores[pos_idx]
    cn = _prefix(weights_t[neg_idx])  # not-used weight below each sorted not-used image
    wp = weights_t[pos_idx]
    n_neg, n_pos = cn[-1].astype(float), wp.sum(axis=0, dtype=float)
    # AUC: each used image against the not-used weight below it, plus half the tied one
    below, upto = np.searchsorted(s_neg, s_pos, "left"), np.searchsorted(s_neg, s_pos, "right")
    beaten = cn[below] if (below == upto).all() else 0.5 * (cn[below] + cn[upto])
    num = np.einsum("ib,ib->b", wp, beaten, dtype=float)  # float64: sums reach n_pos * n_neg
    den = n_pos * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    # TPR at FPR: cut c calls "used" every image scoring above the c-th lowest not-used one
    # (c = 0: all), so FPR = 1 - cn[c] / n_neg; cuts only between distinct not-used scores.
    # The lowest cut with FPR <= rate has the highest TPR; cn grows with c: count the cuts
    # that fail. Used images above cut c: those past searchsorted(s_pos, s_neg[c - 1]).
    last = np.r_[s_neg[1:] != s_neg[:-1], True] if len(s_neg) else np.zeros(0, bool)
    cuts = np.r_[0, np.flatnonzero(last) + 1]
    passed = np.r_[0, np.searchsorted(s_pos, s_neg[cuts[1:] - 1], "right")]
    cp = _prefix(wp)
    at_cuts = cn if len(cuts) == len(cn) else cn[cuts]
    tpr = np.full((weights_t.shape[1], len(fprs)), np.nan)
    for j, rate in enumerate(fprs):
        k = _count_below(at_cuts, ((1 - rate) * n_neg - 1e-3).astype(np.float32))
        tp = n_pos - np.take_along_axis(cp, passed[k][None], axis=0)[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr[:, j] = np.where(n_neg * rate >= 1 - 1e-9, tp / n_pos, np.nan)
    return auc, tpr


def weighted_auc(y, scores, weights):
    """ROC AUC of one score per image under image `weights` (B, n): `roc_summary`'s."""
    return roc_summary(y, scores, weights)[0]


def tpr_at_fpr(y, scores, fprs, weights=None):
    """TPR at each false-positive rate of `fprs` (`roc_summary`): (len(fprs),), or with
    `weights` (B, n) one row per resample, (B, len(fprs))."""
    w = np.ones((1, len(y)), np.float32) if weights is None else weights
    tpr = roc_summary(y, scores, w, fprs)[1]
    return tpr[0] if weights is None else tpr


def membership_metrics(y_true, y_pred, scores=None, fprs=FPRS):
    """f1, accuracy, balanced_accuracy, precision, recall, specificity, kappa, auc of 0/1
    decisions (1 = used) and, with scores, TPR at each FPR of `fprs` (`tpr_column`).

    Every ratio with a zero denominator is 0.0, kappa included (all rows in one class on both
    sides); auc is nan without scores or without both classes in `y_true`; TPR at a rate is
    nan without scores or with fewer than 1 / rate not-used images.
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
    out = {k: float(v) for k, v in from_counts(tp, fp, tn, fn).items()}
    auc = float("nan")
    both = 0 < y_true.sum() < len(y_true)
    if scores is not None and both:
        # sklearn.metrics takes ~1 s to import: only the jobs that score pay for it
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y_true, np.asarray(scores)))
    out["auc"] = auc
    tprs = tpr_at_fpr(y_true, scores, fprs) if scores is not None and both else None
    for j, rate in enumerate(fprs):
        out[tpr_column(rate)] = float("nan") if tprs is None else float(tprs[j])
    return out


def _comb2(x):
    return x * (x - 1) / 2


def from_contingency(table):
    """ari, nmi (arithmetic mean) and Hungarian-matched accuracy of contingency tables
    (..., generators, clusters) of (weighted) image counts, as arrays of the leading shape.
    Single-cluster-on-both-sides tables score 1.0, as sklearn's ARI and NMI do."""
    from scipy.optimize import linear_sum_assignment  # scipy: only the jobs that score

    t = np.asarray(table, dtype=float)
    n = t.sum(axis=(-2, -1))
    rows, cols = t.sum(axis=-1), t.sum(axis=-2)
    index = _comb2(t).sum(axis=(-2, -1))
    sa, sb = _comb2(rows).sum(-1), _comb2(cols).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = sa * sb / _comb2(n)
        top = 0.5 * (sa + sb) - expected
        ari = np.where(top != 0, (index - expected) / np.where(top != 0, top, 1), 1.0)
        p, pr, pc = t / n[..., None, None], rows / n[..., None], cols / n[..., None]
        outer = pr[..., :, None] * pc[..., None, :]
        mi = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(p > 0, outer, 1)), 0)
        mi = mi.sum(axis=(-2, -1))
        hu = -np.where(pr > 0, pr * np.log(np.where(pr > 0, pr, 1)), 0).sum(-1)
        hv = -np.where(pc > 0, pc * np.log(np.where(pc > 0, pc, 1)), 0).sum(-1)
        trivial = ((rows > 0).sum(-1) <= 1) & ((cols > 0).sum(-1) <= 1)
        nmi = np.where(trivial, 1.0, mi / np.maximum((hu + hv) / 2, np.finfo(float).eps))
    flat = t.reshape(-1, *t.shape[-2:])
    matched = np.array([f[linear_sum_assignment(f, maximize=True)].sum() for f in flat])
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = matched.reshape(t.shape[:-2]) / n
    return {"ari": ari, "nmi": nmi, "accuracy": accuracy}


def contingency(y_true, y_pred):
    """(table, generators, clusters): image counts per true generator (rows) and predicted
    cluster (columns), both in sorted order."""
    gens, g = np.unique(np.asarray(y_true).astype(str), return_inverse=True)
    clusters, c = np.unique(np.asarray(y_pred), return_inverse=True)
    table = np.zeros((len(gens), len(clusters)))
    np.add.at(table, (g, c), 1)
    return table, gens, clusters


def attribution_metrics(y_true, y_pred):
    """Adjusted Rand index, normalised mutual information (arithmetic mean), accuracy after
    matching clusters one-to-one to generators (Hungarian; unmatched clusters count as
    wrong), and the number of distinct predicted clusters (k_found) and true generators
    (k_true)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # ~1 s: see above

    table, _, _ = contingency(y_true, y_pred)
    return {
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "accuracy": float(from_contingency(table)["accuracy"]),
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
