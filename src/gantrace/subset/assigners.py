"""Assigners: a subset (0..k-1) per generated image, from features of the generated images
and of each subset's real images.

Every assigner has `assign(X, real_X, real_subset, n_subsets, labels=None, train=None)`:
`X` the generated images' features, `real_X`/`real_subset` the real images' features and
subset index, `labels` the known subset index of each generated row (-1 unknown; only a
supervised assigner reads it), `train` (X, y) labelled generated images of another dataset.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from gantrace.attribution.method import CLUSTERERS
from gantrace.classifiers import CLASSIFIERS, linear_classifier
from gantrace.errors import ConfigError
from gantrace.matrix import as_matrix
from gantrace.params import COUNT, POSITIVE, SEED, Interval, Options, Part
from gantrace.registry import SPEC, Registry

METRICS = ("euclidean", "cosine")


def _prepare(X, metric):
    X = as_matrix(X).astype(np.float64)
    if metric == "cosine":  # euclidean on unit vectors ranks like cosine distance
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return X


def _distances(A, B):
    """Euclidean distances (len(A), len(B)), clipped at 0 against rounding."""
    d2 = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2.0 * A @ B.T
    return np.sqrt(np.maximum(d2, 0.0))


def _knn_mean(d, k):
    """Mean of the k smallest entries of each row of a distance matrix."""
    k = min(k, d.shape[1])
    return np.partition(d, k - 1, axis=1)[:, :k].mean(1)


def _check_subsets(real_subset, n_subsets):
    counts = np.bincount(np.asarray(real_subset, dtype=int), minlength=n_subsets)
    if (counts == 0).any():
        empty = ", ".join(str(i) for i in np.flatnonzero(counts == 0))
        raise ConfigError(f"subset(s) {empty} have no real image; every subset needs some")
    return counts


class SubsetAssigner(Part):
    """Base: `assign` returns the subset index (0..k-1) of every generated row."""

    needs_labels = False  # learns from labelled generated images

    def assign(self, X, real_X, real_subset, n_subsets, labels=None, train=None):
        raise NotImplementedError


class NearestSubset(SubsetAssigner):
    """Label-free: each subset scores a generated image by a membership signal against its
    real images; the best-scoring subset wins.

    signal knn: minus the mean distance to the `k` nearest real images of the subset.
    calibrated: that distance over the subset's own typical one (the median leave-one-out
    k-NN distance among its real images), so a dense or large subset does not win by
    being dense. density_ratio: log Gaussian-kernel density of the subset minus that of
    the other subsets (bandwidth: the median leave-one-out k-NN distance of all real images).
    """

    name = "nearest_subset"
    _parameter_constraints = {
        "signal": [Options("knn", "calibrated", "density_ratio")],
        "k": [COUNT],
        "metric": [Options(*METRICS)],
    }

    def __init__(self, signal="knn", k=1, metric="euclidean"):
        self.signal, self.k, self.metric = signal, k, metric
        self._validate_params()

    def scores(self, X, real_X, real_subset, n_subsets):
        """(n_generated, n_subsets) scores, higher = more likely the training subset."""
        real_subset = np.asarray(real_subset, dtype=int)
        _check_subsets(real_subset, n_subsets)
        X, R = _prepare(X, self.metric), _prepare(real_X, self.metric)
        d = _distances(X, R)
        members = [np.flatnonzero(real_subset == s) for s in range(n_subsets)]
        if self.signal == "density_ratio":
            return self._density_ratio(d, R, members)
        near = np.stack([_knn_mean(d[:, m], self.k) for m in members], axis=1)
        if self.signal == "knn":
            return -near
        typical = np.array([np.median(self._loo(R[m])) for m in members])
        return -np.log(np.maximum(near, 1e-12) / np.maximum(typical, 1e-12))

    def _loo(self, R):
        """Each real image's mean distance to its k nearest others (itself left out)."""
        if len(R) < 2:
            return np.ones(len(R))
        d = _distances(R, R)
        np.fill_diagonal(d, np.inf)
        return _knn_mean(d, min(self.k, len(R) - 1))

    def _density_ratio(self, d, R, members):
        h = max(float(np.median(self._loo(R))), 1e-12)
        logk = -0.5 * (d / h) ** 2
        n = np.array([len(m) for m in members], dtype=float)
        own = np.stack([logsumexp(logk[:, m], axis=1) for m in members], axis=1) - np.log(n)
        rest = []
        for s in range(len(members)):
            others = np.concatenate([m for t, m in enumerate(members) if t != s])
            rest.append(logsumexp(logk[:, others], axis=1) - np.log(len(others)))
        return own - np.stack(rest, axis=1)

    def assign(self, X, real_X, real_subset, n_subsets, labels=None, train=None):
        return np.argmax(self.scores(X, real_X, real_subset, n_subsets), axis=1)


class SupervisedSubset(SubsetAssigner):
    """A linear classifier of the subset, on features.

    train_on generated: the labelled generated images (dev labels): each labelled row is
    predicted out of fold (`n_folds`, stratified), every other row by a model fitted on all
    labelled rows (and on `train`, another dataset's labelled images, when given). real:
    the real images of each subset, no generated label used (label-free). both: the two.
    """

    name = "supervised"
    _parameter_constraints = {
        "classifier": [Options(*CLASSIFIERS)],
        "C": [POSITIVE],
        "train_on": [Options("generated", "real", "both")],
        "n_folds": [Interval(int, 2)],
        "random_state": [SEED],
    }

    def __init__(
        self, classifier="linear_svm", C=1.0, train_on="generated", n_folds=5, random_state=0
    ):
        self.classifier, self.C, self.train_on = classifier, C, train_on
        self.n_folds, self.random_state = n_folds, random_state
        self._validate_params()

    @property
    def needs_labels(self):
        return self.train_on != "real"

    def _fit_predict(self, fit_X, fit_y, X):
        if len(np.unique(fit_y)) < 2:
            raise ConfigError(
                "supervised: the training images cover fewer than 2 subsets; label more "
                "generated images (or set train_on: real)"
            )
        model = linear_classifier(self.classifier, self.C, self.random_state)
        return model.fit(fit_X, fit_y).predict(X).astype(int)

    def assign(self, X, real_X, real_subset, n_subsets, labels=None, train=None):
        # scikit-learn's folds: only where the method is fitted
        from sklearn.model_selection import StratifiedKFold

        X = as_matrix(X).astype(np.float64)
        n = len(X)
        labels = np.full(n, -1) if labels is None else np.asarray(labels, dtype=int)
        base_X, base_y = [np.zeros((0, X.shape[1]))], [np.zeros(0, int)]
        if self.train_on in ("real", "both"):
            base_X.append(as_matrix(real_X).astype(np.float64))
            base_y.append(np.asarray(real_subset, dtype=int))
        known = np.flatnonzero(labels >= 0) if self.needs_labels else np.zeros(0, int)
        if train is not None and self.needs_labels:
            base_X.append(as_matrix(train[0]).astype(np.float64))
            base_y.append(np.asarray(train[1], dtype=int))
        base_X, base_y = np.concatenate(base_X), np.concatenate(base_y)
        if self.needs_labels and not len(known) and not len(base_y):
            raise ConfigError(
                "supervised: no labelled generated image to learn from; give the dataset "
                "`generated` as {subset: folder}, set train_from, or set train_on: real"
            )
        pred = np.empty(n, dtype=int)
        rest = np.setdiff1d(np.arange(n), known)
        if len(rest):
            pred[rest] = self._fit_predict(
                np.concatenate([base_X, X[known]]),
                np.concatenate([base_y, labels[known]]),
                X[rest],
            )
        if len(known):
            counts = np.bincount(labels[known])
            folds = min(self.n_folds, int(counts[counts > 0].min()))
            if folds < 2:
                raise ConfigError(
                    "supervised: a labelled subset has a single generated image; cross-fitting "
                    "needs at least 2 per subset"
                )
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
            for fit, held in cv.split(X[known], labels[known]):
                fit, held = known[fit], known[held]
                pred[held] = self._fit_predict(
                    np.concatenate([base_X, X[fit]]),
                    np.concatenate([base_y, labels[fit]]),
                    X[held],
                )
        return pred


class ClusterMatch(SubsetAssigner):
    """Label-free: cluster the generated images into k groups (k = number of subsets), then
    give each group its own subset by Hungarian matching on group-to-subset distances.

    distance centroid: between the group's and the subset's mean features; knn: the mean,
    over the group's images, of each image's distance to its nearest real image of the subset.
    """

    name = "cluster_match"
    _parameter_constraints = {
        "clusterer": [SPEC],
        "distance": [Options("centroid", "knn")],
        "random_state": [SEED],
    }

    def __init__(self, clusterer="kmeans", distance="knn", random_state=0):
        self.clusterer, self.distance, self.random_state = clusterer, distance, random_state
        self._validate_params()

    def build_clusterer(self, n_clusters, where="cluster_match.clusterer"):
        return CLUSTERERS.create(
            self.clusterer, where, n_clusters=n_clusters, random_state=self.random_state
        )

    def assign(self, X, real_X, real_subset, n_subsets, labels=None, train=None):
        real_subset = np.asarray(real_subset, dtype=int)
        _check_subsets(real_subset, n_subsets)
        X, R = _prepare(X, "euclidean"), _prepare(real_X, "euclidean")
        if len(X) < n_subsets:
            raise ConfigError(f"cluster_match: {len(X)} generated images for {n_subsets} subsets")
        groups = np.unique(self.build_clusterer(n_subsets).fit_predict(X), return_inverse=True)[1]
        members = [np.flatnonzero(real_subset == s) for s in range(n_subsets)]
        if self.distance == "centroid":
            centres = np.stack([X[groups == g].mean(0) for g in range(groups.max() + 1)])
            cost = _distances(centres, np.stack([R[m].mean(0) for m in members]))
        else:
            near = np.stack([_distances(X, R[m]).min(1) for m in members], axis=1)
            cost = np.stack([near[groups == g].mean(0) for g in range(groups.max() + 1)])
        rows, cols = linear_sum_assignment(cost)
        subset_of = np.full(cost.shape[0], -1)
        subset_of[rows] = cols
        # more groups than subsets cannot happen (k clusters); fewer leave subsets unused
        return subset_of[groups]


ASSIGNERS = Registry("subset assigner", (NearestSubset, SupervisedSubset, ClusterMatch))
