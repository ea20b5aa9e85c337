"""Membership inference: which real images trained the generator?

Scores are higher for images more likely USED. They never see labels; labels only pick the
decision threshold, out of fold, so no labelled row's decision uses its own label.
"""

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors

from gantrace.errors import ConfigError
from gantrace.reduce import as_matrix, build_from_spec, build_reducer, check_choice, check_int

METRICS = ("euclidean", "cosine", "manhattan")


class KNNScorer:
    """Minus the mean distance to the `k` nearest generated images (GAN-Leaks black-box)."""

    def __init__(self, k=1, metric="euclidean", block_size=1024):
        check_int("knn.k", k)
        check_choice("knn.metric", metric, METRICS)
        check_int("knn.block_size", block_size)
        self.k = k
        self.metric = metric
        self.block_size = block_size

    def fit(self, generated_X):
        generated_X = as_matrix(generated_X, "generated features")
        if self.k > len(generated_X):
            raise ConfigError(f"knn.k={self.k} exceeds the {len(generated_X)} generated images")
        self.nn_ = NearestNeighbors(n_neighbors=self.k, metric=self.metric, algorithm="brute")
        self.nn_.fit(generated_X)
        return self

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        out = np.empty(len(real_X))
        # Row blocks bound memory to block_size x n_generated distances.
        for start in range(0, len(real_X), self.block_size):
            dist, _ = self.nn_.kneighbors(real_X[start : start + self.block_size])
            out[start : start + len(dist)] = -dist.mean(axis=1)
        return out


class ClusterDistanceScorer:
    """Minus the min (or mean) distance to k-means centres of the generated images."""

    def __init__(self, n_clusters=10, reduce="min", metric="euclidean", n_init=10, random_state=0):
        check_int("cluster_distance.n_clusters", n_clusters)
        check_choice("cluster_distance.reduce", reduce, ("min", "mean"))
        check_choice("cluster_distance.metric", metric, METRICS)
        check_int("cluster_distance.n_init", n_init)
        self.n_clusters = n_clusters
        self.reduce = reduce
        self.metric = metric
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, generated_X):
        generated_X = as_matrix(generated_X, "generated features")
        if self.n_clusters > len(generated_X):
            raise ConfigError(
                f"cluster_distance.n_clusters={self.n_clusters} exceeds the "
                f"{len(generated_X)} generated images"
            )
        km = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.random_state)
        self.centers_ = km.fit(generated_X).cluster_centers_
        return self

    def score(self, real_X):
        dist = pairwise_distances(
            as_matrix(real_X, "real features"), self.centers_, metric=self.metric
        )
        return -(dist.min(axis=1) if self.reduce == "min" else dist.mean(axis=1))


SCORERS = {"cluster_distance": ClusterDistanceScorer, "knn": KNNScorer}


def build_scorer(spec, **injected):
    return build_from_spec(spec, SCORERS, "scorer", **injected)


def best_f1_threshold(scores, labels):
    """Threshold t maximising F1 of the decision `score > t` against 0/1 `labels`.

    Candidates are +inf (nothing used), midpoints between consecutive distinct scores, and
    -inf (everything used). Ties in F1 go to the highest threshold, i.e. the fewest rows
    called used.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    values, inverse = np.unique(-scores, return_inverse=True)  # distinct scores, descending
    values = -values
    positives = np.bincount(inverse.ravel(), weights=labels == 1, minlength=len(values))
    counts = np.bincount(inverse.ravel(), minlength=len(values))
    tp = np.concatenate([[0.0], np.cumsum(positives)])  # cut j: the top j distinct values
    called = np.concatenate([[0.0], np.cumsum(counts)])
    denom = called + positives.sum()
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    cuts = np.concatenate([[np.inf], (values[:-1] + values[1:]) / 2, [-np.inf]])
    return float(cuts[int(np.argmax(f1))])  # argmax takes the first: the highest threshold


def stratified_folds(labels, n_folds, random_state=0):
    """Fold id per row of 0/1 `labels`, stratified and shuffled with `random_state`."""
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=random_state)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[test] = fold
    return folds


def out_of_fold_thresholds(scores, labels, folds):
    """Per row: the F1-best threshold fitted on the rows of every other fold."""
    scores, labels, folds = map(np.asarray, (scores, labels, folds))
    thresholds = np.empty(len(scores))
    for fold in np.unique(folds):
        train = folds != fold
        thresholds[~train] = best_f1_threshold(scores[train], labels[train])
    return thresholds


class MembershipMethod:
    """Reducer (fitted on generated images) + scorer + threshold rule.

    threshold="oof_f1" picks F1-best thresholds out of fold on labelled rows (and on all
    labelled rows for unknown ones); "fraction" (also the fallback when too few labels)
    calls used every row scoring above the (1 - used_fraction) quantile of all real scores.
    """

    def __init__(
        self,
        scorer="knn",
        reducer=None,
        threshold="oof_f1",
        used_fraction=0.5,
        n_folds=5,
        random_state=0,
    ):
        check_choice("threshold", threshold, ("oof_f1", "fraction"))
        if not 0 < used_fraction < 1:
            raise ConfigError(f"used_fraction: must lie in (0, 1), got {used_fraction!r}")
        check_int("n_folds", n_folds, minimum=2)
        self.scorer = scorer
        self.reducer = reducer
        self.threshold = threshold
        self.used_fraction = used_fraction
        self.n_folds = n_folds
        self.random_state = random_state
        self._build()  # a bad spec fails here, before any feature is read

    def _build(self):
        reducer = build_reducer(self.reducer, random_state=self.random_state)
        return reducer, build_scorer(self.scorer, random_state=self.random_state)

    def score(self, generated_X, real_X):
        reducer, scorer = self._build()
        generated_X = reducer.fit_transform(as_matrix(generated_X, "generated features"))
        return scorer.fit(generated_X).score(reducer.transform(real_X))

    def run(self, generated_X, real_X, labels):
        """Return a frame (one row per real image): score, decision, fold, threshold."""
        labels = np.asarray(labels)
        if labels.shape != (len(real_X),) or not np.isin(labels, (-1, 0, 1)).all():
            raise ValueError(f"labels: expected {len(real_X)} values in {{-1, 0, 1}}")
        scores = self.score(generated_X, real_X)
        thresholds, folds, self.threshold_note_ = self._thresholds(scores, labels)
        frame = pd.DataFrame(
            {
                "score": scores,
                "decision": (scores > thresholds).astype(np.int64),
                "fold": folds,
                "threshold": thresholds,
            }
        )
        frame.attrs["threshold_note"] = self.threshold_note_
        return frame

    def _thresholds(self, scores, labels):
        return decide_thresholds(
            scores, labels, self.threshold, self.used_fraction, self.n_folds, self.random_state
        )


def decide_thresholds(scores, labels, rule="oof_f1", used_fraction=0.5, n_folds=5, random_state=0):
    """(thresholds, folds, note) per real row; a labelled row never sees its own label."""
    n = len(scores)
    known = labels >= 0
    n_used, n_not = int((labels == 1).sum()), int((labels == 0).sum())
    n_folds_asked = n_folds
    n_folds = min(n_folds_asked, n_used, n_not)
    if rule == "fraction" or n_folds < 2:
        reason = f"too few labelled rows for 2 folds ({n_used} used, {n_not} not used)"
        if rule == "fraction":
            reason = "threshold='fraction'"
        cut = float(np.quantile(scores, 1 - used_fraction))
        note = f"fraction: top {used_fraction:g} of real scores called used ({reason})"
        return np.full(n, cut), np.full(n, -1, dtype=np.int64), note
    folds = np.full(n, -1, dtype=np.int64)
    folds[known] = stratified_folds(labels[known], n_folds, random_state)
    thresholds = np.full(n, best_f1_threshold(scores[known], labels[known]))
    thresholds[known] = out_of_fold_thresholds(scores[known], labels[known], folds[known])
    note = f"oof_f1: {n_folds} stratified folds over {n_used + n_not} labelled rows"
    if n_folds < n_folds_asked:
        note += f" (asked {n_folds_asked}; only {min(n_used, n_not)} rows in the smaller class)"
    return thresholds, folds, note
