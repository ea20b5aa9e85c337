"""Seeded, vectorised bootstrap: confidence intervals of every metric, and paired
differences of all methods against the best one on the same resamples.

A resample is a row of image weights (how often each image is drawn), so one matrix
product scores every method on every resample: `weights` (n_boot, n_images). Images are
drawn within strata (membership: the label; attribution: the generator), or, where the
dataset names groups (a patient, a series), whole groups are drawn within the stratum of
their majority label, so near-copies of one group never count as independent evidence.
"""

import warnings

import numpy as np

from gantrace.evaluation.metrics import (
    from_contingency,
    from_counts,
    roc_summary_t,
    tpr_column,
)


def resample_weights(strata, n_boot, rng, groups=None):
    """(n_boot, n) float32 weights of `n_boot` stratified resamples of n images.

    `strata` (n,): images are drawn with replacement within each stratum, as many as it
    holds. `groups` (n,) or None: draw whole groups instead (within the stratum of each
    group's most common value), an image weighing as often as its group is drawn.
    """
    strata = np.asarray(strata)
    if groups is None:
        unit = np.arange(len(strata))
        unit_stratum = strata
    else:
        _, unit = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        unit_stratum = np.empty(unit.max() + 1 if len(unit) else 0, dtype=strata.dtype)
        for u in range(len(unit_stratum)):
            values, counts = np.unique(strata[unit == u], return_counts=True)
            unit_stratum[u] = values[np.argmax(counts)]  # ties: the smallest value
    drawn = np.zeros((n_boot, len(unit_stratum)), dtype=np.float32)
    rows = np.arange(n_boot)[:, None]
    for s in np.unique(unit_stratum):
        members = np.flatnonzero(unit_stratum == s)
        k = len(members)
        picks = rng.integers(0, k, size=(n_boot, k))
        counts = np.bincount((rows * k + picks).ravel(), minlength=n_boot * k)
        drawn[:, members] = counts.reshape(n_boot, k)
    return drawn[:, unit]


def membership_replicates(y, scores, decisions, weights, fprs):
    """Every membership metric (`from_counts`, auc, `tpr_column(rate)`) of m methods on each
    resample: {metric: (n_boot, m)}. `scores`, `decisions`: (m, n); y: (n,) 0/1."""
    y = np.asarray(y)
    pos = (y == 1).astype(np.float32)
    d = np.asarray(decisions, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    tp = (w @ (d * pos).T).astype(float)
    fp = (w @ (d * (1 - pos)).T).astype(float)
    n_pos = (w @ pos).astype(float)[:, None]
    n_neg = (w @ (1 - pos)).astype(float)[:, None]
    out = from_counts(tp, fp, n_neg - fp, n_pos - tp)
    wt = np.ascontiguousarray(w.T)  # image-major: the fast layout of roc_summary_t
    ranked = [_in_blocks(lambda b, s=s: roc_summary_t(y, s, b, fprs), wt) for s in scores]
    out["auc"] = np.stack([auc for auc, _ in ranked], axis=1)
    for j, rate in enumerate(fprs):
        out[tpr_column(rate)] = np.stack([tpr[:, j] for _, tpr in ranked], axis=1)
    return out


def _in_blocks(fn, weights_t, size=1024):
    """fn over blocks of resamples (columns of image-major weights), results stacked:
    bounds the (n, size) temporaries."""
    n_boot = weights_t.shape[1]
    parts = [fn(weights_t[:, i : i + size]) for i in range(0, n_boot, size)]
    return tuple(np.concatenate(p) for p in zip(*parts))


def attribution_replicates(generators, clusters, weights):
    """ari, nmi and matched accuracy of m clusterings on each resample: {metric: (n_boot,
    m)}. `generators` (n,): true labels; `clusters` (m, n)."""
    _, g = np.unique(np.asarray(generators).astype(str), return_inverse=True)
    w = np.asarray(weights, dtype=np.float32)
    per_method = []
    for c in clusters:
        _, c = np.unique(np.asarray(c), return_inverse=True)
        k = c.max() + 1
        onehot = np.zeros((len(g), (g.max() + 1) * k), dtype=np.float32)
        onehot[np.arange(len(g)), g * k + c] = 1
        table = (w @ onehot).astype(float).reshape(len(w), g.max() + 1, k)
        per_method.append(from_contingency(table))
    return {m: np.stack([r[m] for r in per_method], axis=1) for m in per_method[0]}


def interval(replicates, ci):
    """(lo, hi) percentile interval of coverage `ci` over the resamples (axis 0), ignoring
    resamples where the metric is undefined (nan)."""
    tail = 100 * (1 - ci) / 2
    with warnings.catch_warnings():  # all-nan columns (an undefined TPR@FPR): nan is right
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    return lo, hi


def paired_to_best(replicates, best, ci):
    """(lo, hi, tied) of each method's metric minus the best one's (column `best`) on the
    same resamples. `tied`: the interval holds 0, for every method but the best itself."""
    diff = replicates - replicates[:, [best]]
    lo, hi = interval(diff, ci)
    tied = (lo <= 0) & (hi >= 0)
    tied[best] = False
    lo[best] = hi[best] = 0.0
    return lo, hi, tied


def subset_replicates(true, predicted, weights):
    """accuracy and macro F1 of m subset answers on each resample: {metric: (n_boot, m)}.
    `true` (n,): the true subsets; `predicted` (m, n). Macro F1 averages over the subsets
    in either array of the whole sample (a class missing from a resample scores 0)."""
    true = np.asarray(true).astype(str)
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1)
    acc, f1 = [], []
    for p in np.asarray(predicted).astype(str):
        acc.append(w @ (true == p) / total)
        per_class = []
        for c in np.union1d(true, p):
            tp = w @ ((true == c) & (p == c))
            wrong = w @ ((true == c) ^ (p == c))  # false positives + false negatives
            den = 2 * tp + wrong
            per_class.append(np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0))
        f1.append(np.mean(per_class, axis=0))
    return {"accuracy": np.stack(acc, axis=1), "macro_f1": np.stack(f1, axis=1)}
