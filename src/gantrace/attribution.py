"""Attribution: cluster generated images by the generator that made them."""

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

from gantrace.errors import ConfigError
from gantrace.reduce import as_matrix, build_from_spec, build_reducer, check_choice, check_int

METRICS = ("euclidean", "cosine", "manhattan")
LINKAGES = ("ward", "average", "complete", "single")


class KMeansClusterer:
    def __init__(self, n_clusters=8, n_init=10, max_iter=300, random_state=0):
        check_int("kmeans.n_init", n_init)
        check_int("kmeans.max_iter", max_iter)
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit_predict(self, X):
        km = KMeans(
            self.n_clusters,
            n_init=self.n_init,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        return km.fit_predict(X)


class AgglomerativeClusterer:
    """Hierarchical clustering; refuses more than `max_samples` rows (memory is quadratic)."""

    def __init__(self, n_clusters=8, linkage="ward", metric="euclidean", max_samples=20000):
        check_choice("agglomerative.linkage", linkage, LINKAGES)
        check_choice("agglomerative.metric", metric, METRICS)
        check_int("agglomerative.max_samples", max_samples)
        if linkage == "ward" and metric != "euclidean":
            raise ConfigError("agglomerative.metric: ward linkage needs metric 'euclidean'")
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.metric = metric
        self.max_samples = max_samples

    def fit_predict(self, X):
        if len(X) > self.max_samples:
            raise ConfigError(
                f"clusterer: agglomerative on {len(X)} images exceeds max_samples="
                f"{self.max_samples} (memory grows with the square of the count); use "
                "{name: kmeans} or raise clusterer.max_samples"
            )
        model = AgglomerativeClustering(self.n_clusters, linkage=self.linkage, metric=self.metric)
        return model.fit_predict(X)


CLUSTERERS = {"kmeans": KMeansClusterer, "agglomerative": AgglomerativeClusterer}


def build_clusterer(spec, **injected):
    return build_from_spec(spec, CLUSTERERS, "clusterer", **injected)


def canonical_labels(labels):
    """Renumber clusters 1..k in order of first appearance, so equal partitions give equal ids."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(1, len(first) + 1)
    return rank[inverse.ravel()]


class AttributionMethod:
    """Optional reducer, then a clusterer with `n_clusters` (the dataset's n_generators)."""

    def __init__(self, n_clusters, clusterer="kmeans", reducer=None, random_state=0):
        check_int("n_generators", n_clusters)
        self.n_clusters = n_clusters
        self.clusterer = clusterer
        self.reducer = reducer
        self.random_state = random_state
        self._build()  # a bad spec fails here, before any feature is read

    def _build(self):
        reducer = build_reducer(self.reducer, random_state=self.random_state)
        clusterer = build_clusterer(
            self.clusterer, n_clusters=self.n_clusters, random_state=self.random_state
        )
        return reducer, clusterer

    def fit_predict(self, X):
        X = as_matrix(X, "generated features")
        if self.n_clusters > len(X):
            raise ConfigError(
                f"n_generators={self.n_clusters} exceeds the {len(X)} generated images to cluster"
            )
        reducer, clusterer = self._build()
        self.labels_ = canonical_labels(clusterer.fit_predict(reducer.fit_transform(X)))
        return self.labels_

    def fit(self, X):
        self.fit_predict(X)
        return self
