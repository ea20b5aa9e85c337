"""Open-set attribution: known generators from labelled dev images, new clusters for the rest.

A test image goes to the nearest known generator's centroid (or to the generator a linear
classifier trained on the labelled images predicts) when it lies within that generator's
rejection radius; the rejected images are clustered into new generators.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import pairwise_distances

from gantrace.attribution.method import CLUSTERERS, canonical_labels
from gantrace.attribution.nclusters import build_estimator
from gantrace.classifiers import CLASSIFIERS, linear_classifier
from gantrace.errors import ConfigError, GantraceError
from gantrace.matrix import METRICS, as_matrix
from gantrace.membership.method import stratified_folds
from gantrace.params import COUNT, POSITIVE, SEED, Interval, Options, Part, trained_parts
from gantrace.reduce import build_reducer
from gantrace.registry import KEY, SPEC
from gantrace.runlog import say

N_FOLDS = 5


class OpenSetAttribution(Part):
    """Nearest known centroid with a per-generator radius; k-means on the rejected images.

    The radius of a generator is the `reject_quantile` quantile of its known images'
    distances to their own generator's centroid, each computed out of fold (5 stratified
    folds; the centroid leaves out the image's fold), so it is not optimistically tight.
    `n_new` new generators for the rejected images; None estimates it there with
    `n_clusters_estimator` (gantrace.attribution.nclusters, default `{name: silhouette}`, k_min 1).
    `classifier` (`logistic` or `linear_svm`, regularised by `C`) assigns known generators
    by a standardised linear model fitted on the labelled images instead of the nearest
    centroid: Yu et al. (ICCV 2019) attribute images to GANs that differ only in their seed
    with a classifier trained on each GAN's images; the radius test stays the same.
    The rejected images are clustered (`clusterer`, k-means by default), then each goes to
    the nearest of the known and new centroids (a rejected straggler of a known generator
    returns to it); a new cluster left with fewer than `min_new` images is dropped, and
    with fewer than `min_new` rejected images no new generator is made.
    Labels: 0..n_known-1 are the known generators in sorted-name order (`known_names_`),
    then n_known.. the new ones; `is_unknown_` flags the rejected images.
    """

    name = "open_set"
    _parameter_constraints = {
        "reducer": [SPEC, None],
        "clusterer": [SPEC],
        "reject_quantile": [Interval(float, 0, 1, closed="right")],
        "n_new": [Interval(int, 0), None],
        "min_new": [COUNT],
        "n_clusters_estimator": [SPEC, None],
        "metric": [Options(*METRICS)],
        "classifier": [None, Options(*CLASSIFIERS)],
        "C": [POSITIVE],
        "random_state": [SEED],
    }

    @classmethod
    def from_spec(cls, spec, n_new, random_state):
        """The method an open-set entry (`known_from`) of `attribution.methods` describes;
        `n_new` None estimates the number of new generators."""
        return cls(
            reducer=spec.get("reducer"),
            clusterer=spec["clusterer"],
            n_new=n_new,
            n_clusters_estimator=spec.get("estimate_k"),
            random_state=random_state,
            **spec.get("open_set", {}),
        )

    def __init__(
        self,
        reducer=None,
        clusterer="kmeans",
        reject_quantile=0.95,
        n_new=None,
        min_new=10,
        n_clusters_estimator=None,
        metric="euclidean",
        classifier=None,
        C=1.0,
        random_state=0,
    ):
        self.reducer = reducer
        self.clusterer = clusterer
        self.reject_quantile = reject_quantile
        self.n_new = n_new
        self.min_new = min_new
        self.n_clusters_estimator = n_clusters_estimator
        self.metric = metric
        self.classifier = classifier
        self.C = C
        self.random_state = random_state
        self._validate_params()
        # bad specs fail here, before any feature is read
        reducer_ = build_reducer(reducer, random_state=random_state)
        if not getattr(reducer_, "transforms_unseen", hasattr(reducer_, "transform")):
            raise ConfigError(
                f"reducer: {reducer!r} cannot map new images (no transform); an open-set "
                "method needs one that can (pca, autoencoder, none)"
            )
        self._clusterer(2)
        self._estimator()

    def _estimator(self):
        spec = self.n_clusters_estimator or "silhouette"
        spec = {KEY: spec} if isinstance(spec, str) else spec
        # k_min 1 unless set: the rejected images may well come from one new generator
        return build_estimator({"k_min": 1, **spec}, random_state=self.random_state)

    def _clusterer(self, k):
        return CLUSTERERS.create(self.clusterer, n_clusters=k, random_state=self.random_state)

    def _dist(self, X, centroids):
        return pairwise_distances(X, centroids, metric=self.metric)

    def fit(self, known_X, known_generator, groups=None):
        """Centroids and radii of the known generators; `groups` (one per row, or None)
        keeps a group's images in one of the out-of-fold radius folds."""
        X = as_matrix(known_X, "known generators' features").astype(np.float64)
        names = np.asarray(known_generator).astype(str)
        if len(names) != len(X):
            raise ValueError(f"{len(X)} known feature rows for {len(names)} generator labels")
        self.known_names_, y, counts = np.unique(names, return_inverse=True, return_counts=True)
        if len(self.known_names_) < 2 or counts.min() < 2:
            raise ConfigError(
                "known_from: needs at least two generators with two labelled images each; "
                f"got {dict(zip(self.known_names_, counts.tolist()))}"
            )
        self.reducer_ = build_reducer(self.reducer, random_state=self.random_state)
        Z = self.reducer_.fit_transform(X)
        self.centroids_ = self._centroids(Z, y)
        self.classifier_ = None
        if self.classifier:
            self.classifier_ = linear_classifier(self.classifier, self.C, self.random_state)
            self.classifier_.fit(Z, y)
        oof = np.empty(len(Z))
        folds = stratified_folds(y, min(N_FOLDS, counts.min()), self.random_state, groups)
        for fold in range(folds.max() + 1):
            train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            cents = self._centroids(Z[train], y[train])
            oof[test] = self._dist(Z[test], cents)[np.arange(len(test)), y[test]]
        self.radius_ = np.array(
            [np.quantile(oof[y == g], self.reject_quantile) for g in range(len(counts))]
        )
        return self

    def _centroids(self, Z, y):
        return np.stack([Z[y == g].mean(axis=0) for g in range(len(self.known_names_))])

    def predict(self, X):
        X = as_matrix(X, "generated features").astype(np.float64)
        Z = self.reducer_.transform(X)
        dist = self._dist(Z, self.centroids_)
        if self.classifier_ is None:
            nearest = dist.argmin(axis=1)
        else:
            nearest = np.asarray(self.classifier_.predict(Z), dtype=int)
        self.is_unknown_ = dist[np.arange(len(Z)), nearest] > self.radius_[nearest]
        labels = nearest.copy()
        n_known, rejected = len(self.known_names_), int(self.is_unknown_.sum())
        self.n_new_, self.k_scores_ = 0, None
        if rejected >= self.min_new:
            n_new = self.n_new
            if n_new is None:
                est = self._estimator().fit(Z[self.is_unknown_])
                n_new, self.k_scores_ = est.n_clusters_, est.scores_
            if n_new:
                labels[self.is_unknown_] = self._new_generators(Z[self.is_unknown_], n_new)
        self.labels_ = labels
        self.n_new_ = len(set(labels.tolist()) - set(range(n_known)))
        return labels

    def _new_generators(self, Z, n_new):
        """Cluster rejected rows, then one pass to the nearest of known + new centroids, so a
        rejected straggler of a known generator goes back to it; new clusters smaller than
        `min_new` are dropped (their rows go to the nearest remaining centroid)."""
        n_known = len(self.known_names_)
        new = np.asarray(self._clusterer(min(n_new, len(Z))).fit_predict(Z))
        cents = [Z[new == c].mean(axis=0) for c in np.unique(new)]
        while True:  # drop too-small new clusters and reassign
            labels = self._dist(Z, np.vstack([self.centroids_, *cents])).argmin(axis=1)
            small = np.bincount(labels, minlength=n_known + len(cents))[n_known:] < self.min_new
            if not small.any():
                break
            cents = [c for c, s in zip(cents, small) if not s]
        ids = np.unique(labels[labels >= n_known])
        labels[labels >= n_known] = n_known + np.searchsorted(ids, labels[labels >= n_known])
        return labels

    def fit_predict(self, known_X, known_generator, X, groups=None):
        return self.fit(known_X, known_generator, groups).predict(X)

    def trained_parts(self):
        """{role: fitted part} for the parts that trained a network (to save)."""
        return trained_parts({"reducer": self.reducer_})


def open_set_labels(
    spec, known_X, known_generator, X, n_generators, random_state=0, log=None, known_groups=None
):
    """(method, run-file labels 1..k) of the open-set method `spec` (a config mapping with
    `name`, `known_from`, `clusterer`, ...) for the generated images `X`.

    The known generators are those of `known_X` (`known_generator`: each row's generator;
    rows without one are left out). k is `n_generators`, so n_generators minus the known
    ones are new; where n_generators is None or the method sets `n_clusters: auto`, the new
    ones are estimated and k is the count found. `known_groups` (one per known row, or None)
    keeps a group in one fold of the radius estimate.
    """
    where = f"attribution.methods.{spec['name']}"
    auto = spec.get("n_clusters") == "auto" or n_generators is None
    known_generator = pd.Series(known_generator)
    named = known_generator.fillna("").astype(str).to_numpy() != ""
    if named.sum() < len(named):
        say(
            f"{spec['known_from']}: {len(named) - named.sum()} images without a generator left out",
            log,
        )
    n_known = len(set(known_generator[named]))
    n_new = None if auto else max(int(n_generators) - n_known, 0)
    try:
        method = OpenSetAttribution.from_spec(spec, n_new, random_state)
        groups = None if known_groups is None else np.asarray(known_groups)[named]
        labels = method.fit_predict(known_X[named], known_generator[named].to_numpy(), X, groups)
        labels = labels + 1
    except ConfigError as err:  # its keys are the method's: name them in full
        raise ConfigError(f"{where}.{err}") from None
    names = ", ".join(f"{i}={g}" for i, g in enumerate(method.known_names_, start=1))
    say(
        f"open set from {spec['known_from']}: known generators {names}; "
        f"{int(method.is_unknown_.sum())} of {len(X)} images beyond every known radius, "
        f"{method.n_new_} new generator(s)" + ("" if n_new is not None else " (estimated)"),
        log,
    )
    if method.k_scores_ is not None:
        say(method.k_scores_.to_string(index=False), log)
    return method, run_file_labels(labels, n_generators, auto, where)


def run_file_labels(labels, n_generators, auto, where):
    """`labels` as a run file takes them: 1..n_generators, or 1..k found when `auto`;
    renumbered 1..k in order of appearance when they are not. More generators than
    n_generators cannot be written: a GantraceError naming the method (`where`)."""
    found = set(labels.tolist())
    limit = len(found) if auto else n_generators
    if not found <= set(range(1, limit + 1)):
        labels = canonical_labels(labels)
    if len(found) > limit:
        raise GantraceError(
            f"{where}: images went to {len(found)} generators but the dataset has "
            f"n_generators: {n_generators}; raise it or set n_clusters: auto"
        )
    return labels
