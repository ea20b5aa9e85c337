"""Attribution: cluster generated images by the generator that made them."""

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from gantrace.attribution.marra import FingerprintClusterer
from gantrace.attribution.nclusters import build_estimator
from gantrace.errors import ConfigError
from gantrace.matrix import LINKAGES, METRICS, as_matrix
from gantrace.params import (
    COUNT,
    POSITIVE,
    SEED,
    Interval,
    Options,
    Part,
    check_value,
    is_stochastic,
    trained_parts,
)
from gantrace.reduce import build_reducer
from gantrace.registry import SPEC, Registry, spec_name

GMM_INITS = ("kmeans", "k-means++", "random", "random_from_data")
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class KMeansClusterer(Part):
    name = "kmeans"
    stochastic = True  # k-means++ initialisation
    _parameter_constraints = {
        "n_clusters": [COUNT],
        "n_init": [COUNT],
        "max_iter": [COUNT],
        "random_state": [SEED],
    }

    def __init__(self, n_clusters=8, n_init=10, max_iter=300, random_state=0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state
        self._validate_params()

    def fit_predict(self, X):
        km = KMeans(
            self.n_clusters,
            n_init=self.n_init,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        return km.fit_predict(X)


class AgglomerativeClusterer(Part):
    """Hierarchical clustering; refuses more than `max_samples` rows (memory is quadratic)."""

    name = "agglomerative"
    _parameter_constraints = {
        "n_clusters": [COUNT],
        "linkage": [Options(*LINKAGES)],
        "metric": [Options(*METRICS)],
        "max_samples": [COUNT],
    }

    def __init__(self, n_clusters=8, linkage="ward", metric="euclidean", max_samples=20000):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.metric = metric
        self.max_samples = max_samples
        self._validate_params()
        if linkage == "ward" and metric != "euclidean":
            raise ConfigError("agglomerative.metric: ward linkage needs metric 'euclidean'")

    def fit_predict(self, X):
        if len(X) > self.max_samples:
            raise ConfigError(
                f"clusterer: agglomerative on {len(X)} images exceeds max_samples="
                f"{self.max_samples} (memory grows with the square of the count); use "
                "{name: kmeans} or raise clusterer.max_samples"
            )
        model = AgglomerativeClustering(self.n_clusters, linkage=self.linkage, metric=self.metric)
        return model.fit_predict(X)


class GMMClusterer(Part):
    """Gaussian mixture, labels by highest posterior (Biomedical Imaging Goa 2024).

    `init` is one of sklearn's four initialisations: kmeans, k-means++, random,
    random_from_data; `covariance_type` full, tied, diag or spherical.
    """

    name = "gmm"
    stochastic = True  # k-means initialisation of the mixture
    _parameter_constraints = {
        "n_clusters": [COUNT],
        "init": [Options(*GMM_INITS)],
        "covariance_type": [Options(*COVARIANCE_TYPES)],
        "n_init": [COUNT],
        "max_iter": [COUNT],
        "reg_covar": [POSITIVE],
        "random_state": [SEED],
    }

    def __init__(
        self,
        n_clusters=8,
        init="kmeans",
        covariance_type="full",
        n_init=1,
        max_iter=100,
        reg_covar=1e-6,
        random_state=0,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.random_state = random_state
        self._validate_params()

    def fit_predict(self, X):
        model = GaussianMixture(
            self.n_clusters,
            covariance_type=self.covariance_type,
            init_params=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            reg_covar=self.reg_covar,
            random_state=self.random_state,
        )
        return model.fit_predict(X)


class ArgmaxClusterer(Part):
    """Classification, not clustering: each image goes to its largest feature column, i.e.
    the class a trained net predicts from class-probability features (`finetuned` with
    `output: probabilities`; SDVAHCS 2024 submitted their ResNets' predictions).

    At most `n_clusters` classes: when more columns win somewhere, the `n_clusters` columns
    that win most often are kept (ties: the lower column) and every image goes to its
    largest kept column.
    """

    name = "argmax"
    _parameter_constraints = {"n_clusters": [COUNT]}

    def __init__(self, n_clusters=8):
        self.n_clusters = n_clusters
        self._validate_params()

    def fit_predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        wins = np.bincount(X.argmax(axis=1), minlength=X.shape[1])
        kept = np.sort(np.argsort(-wins, kind="stable")[: self.n_clusters])
        return kept[X[:, kept].argmax(axis=1)]


def density_rerank(X, labels, density_labels, min_share=0.2, n_neighbors=5):
    """Re-assign base `labels` using a density clustering of the same rows.

    A row is *trusted* when its density cluster is not noise (id -1) and its base label
    holds at least `min_share` of that density cluster's rows. Every other row (density
    noise, or a minority label inside a density cluster dominated by another label) takes
    the most common base label among its `n_neighbors` nearest trusted rows (Euclidean;
    ties go to the label of the nearest). With no trusted row the labels are returned as is.
    """
    X, labels, density_labels = np.asarray(X), np.asarray(labels), np.asarray(density_labels)
    trusted = density_labels >= 0
    for c in np.unique(density_labels[trusted]):
        members = density_labels == c
        ids, counts = np.unique(labels[members], return_counts=True)
        minor = ids[counts < min_share * members.sum()]
        trusted &= ~(members & np.isin(labels, minor))
    out = labels.copy()
    if trusted.all() or not trusted.any():
        return out
    k = min(n_neighbors, int(trusted.sum()))
    nn = NearestNeighbors(n_neighbors=k).fit(X[trusted])
    _, idx = nn.kneighbors(X[~trusted])
    votes = labels[trusted][idx]  # nearest first
    for row, vote in zip(np.flatnonzero(~trusted), votes):
        ids, counts = np.unique(vote, return_counts=True)
        tied = ids[counts == counts.max()]
        out[row] = next(v for v in vote if v in tied)  # the nearest among the tied labels
    return out


class DensityRerank(Part):
    """Base clustering, then `density_rerank` with DBSCAN or HDBSCAN (CSMorgan 2024).

    Subclasses set their own parameters, then call this `__init__`, which checks them all.
    """

    _parameter_constraints = {
        "base": [SPEC],
        "n_clusters": [COUNT],
        "random_state": [SEED],
        "min_share": [Interval(float, 0, 1, closed="right")],
        "n_neighbors": [COUNT],
    }

    def __init__(self, base, n_clusters, random_state, min_share, n_neighbors):
        self.base = base
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.min_share = min_share
        self.n_neighbors = n_neighbors
        self._validate_params()
        if spec_name(base) in ("dbscan_rerank", "hdbscan_rerank"):
            raise ConfigError(f"clusterer.base: a re-ranker cannot be its own base; got {base!r}")
        self.base_ = CLUSTERERS.create(base, n_clusters=n_clusters, random_state=random_state)

    @property
    def stochastic(self):
        return is_stochastic(self.base_)  # DBSCAN / HDBSCAN themselves are deterministic

    def fit_predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.base_labels_ = np.asarray(self.base_.fit_predict(X))
        self.density_labels_ = self._density(X)
        return density_rerank(
            X, self.base_labels_, self.density_labels_, self.min_share, self.n_neighbors
        )


class DBSCANRerank(DensityRerank):
    """DBSCAN re-ranking of a base clustering (see `density_rerank`).

    `eps` None picks the `eps_quantile` quantile of each row's distance to its
    `min_samples`-th nearest neighbour, so the default adapts to the feature scale.
    """

    name = "dbscan_rerank"
    _parameter_constraints = {
        "eps": [POSITIVE, None],
        "eps_quantile": [Interval(float, 0, 1, closed="right")],
        "min_samples": [COUNT],
    }

    def __init__(
        self,
        n_clusters=8,
        base="kmeans",
        eps=None,
        eps_quantile=0.9,
        min_samples=5,
        min_share=0.2,
        n_neighbors=5,
        random_state=0,
    ):
        self.eps = eps
        self.eps_quantile = eps_quantile
        self.min_samples = min_samples
        super().__init__(base, n_clusters, random_state, min_share, n_neighbors)

    def _density(self, X):
        eps = self.eps
        if eps is None:
            k = min(self.min_samples, len(X) - 1)
            dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
            eps = float(np.quantile(dist[:, k], self.eps_quantile)) or 1e-12
        self.eps_ = eps
        return DBSCAN(eps=eps, min_samples=self.min_samples).fit_predict(X)


class HDBSCANRerank(DensityRerank):
    """HDBSCAN re-ranking of a base clustering (see `density_rerank`)."""

    name = "hdbscan_rerank"
    _parameter_constraints = {
        "min_cluster_size": [Interval(int, 2)],
        "min_samples": [COUNT, None],
    }

    def __init__(
        self,
        n_clusters=8,
        base="kmeans",
        min_cluster_size=5,
        min_samples=None,
        min_share=0.2,
        n_neighbors=5,
        random_state=0,
    ):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        super().__init__(base, n_clusters, random_state, min_share, n_neighbors)

    def _density(self, X):
        model = HDBSCAN(
            min_cluster_size=self.min_cluster_size, min_samples=self.min_samples, copy=True
        )
        return model.fit_predict(X)


CLUSTERERS = Registry(
    "clusterer",
    (
        AgglomerativeClusterer,
        DBSCANRerank,
        GMMClusterer,
        HDBSCANRerank,
        KMeansClusterer,
        ArgmaxClusterer,
        FingerprintClusterer,
    ),
)


def canonical_labels(labels):
    """Renumber clusters 1..k in order of first appearance, so equal partitions give equal ids."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(1, len(first) + 1)
    return rank[inverse.ravel()]


class AttributionMethod:
    """Optional reducer, then a clusterer with `n_clusters` (the dataset's n_generators).

    `n_clusters` None estimates the count on the reduced features with the
    `n_clusters_estimator` spec (gantrace.attribution.nclusters; default `{name: silhouette}`);
    `n_clusters_` holds the count used either way.
    """

    @classmethod
    def from_spec(cls, spec, n_clusters, random_state):
        """The method a config entry `attribution.methods.<name>` describes; `n_clusters`
        None estimates the count."""
        return cls(
            n_clusters=n_clusters,
            clusterer=spec["clusterer"],
            reducer=spec.get("reducer"),
            n_clusters_estimator=spec.get("estimate_k"),
            random_state=random_state,
        )

    def __init__(
        self,
        n_clusters,
        clusterer="kmeans",
        reducer=None,
        n_clusters_estimator=None,
        random_state=0,
    ):
        check_value("n_generators", n_clusters, [COUNT, None])
        self.n_clusters = n_clusters
        self.clusterer = clusterer
        self.reducer = reducer
        self.n_clusters_estimator = n_clusters_estimator
        self.random_state = random_state
        self._build(n_clusters or 2)  # a bad spec fails here, before any feature is read
        self._estimator()

    def _estimator(self):
        return build_estimator(self.n_clusters_estimator, random_state=self.random_state)

    def _build(self, n_clusters):
        reducer = build_reducer(self.reducer, random_state=self.random_state)
        clusterer = CLUSTERERS.create(
            self.clusterer, n_clusters=n_clusters, random_state=self.random_state
        )
        return reducer, clusterer

    def fit_predict(self, X):
        X = as_matrix(X, "generated features")
        if self.n_clusters is not None and self.n_clusters > len(X):
            raise ConfigError(
                f"n_generators={self.n_clusters} exceeds the {len(X)} generated images to cluster"
            )
        self.reducer_, _ = self._build(self.n_clusters or 2)
        reduced = self.reducer_.fit_transform(X)
        self.n_clusters_, self.k_scores_ = self.n_clusters, None
        if self.n_clusters is None:
            est = self._estimator().fit(reduced)
            self.n_clusters_, self.k_scores_ = est.n_clusters_, est.scores_
        _, self.clusterer_ = self._build(self.n_clusters_)
        self.labels_ = canonical_labels(self.clusterer_.fit_predict(reduced))
        return self.labels_

    def trained_parts(self):
        """{role: fitted part} for the parts that trained a network (to save)."""
        return trained_parts({"reducer": self.reducer_, "clusterer": self.clusterer_})

    def fit(self, X):
        self.fit_predict(X)
        return self
