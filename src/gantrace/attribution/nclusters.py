"""Estimate the number of generators (clusters) when it is not given.

Five criteria, each scoring every candidate k in [k_min, k_max]:
- silhouette: mean silhouette of a k-means partition (higher is better). k = 1 scores the
  fixed `min_silhouette` (0.25, below which Kaufman & Rousseeuw 1990 see "no substantial
  structure"), so one cluster wins when no split reaches it.
- bic: Bayesian information criterion of a diagonal Gaussian mixture (lower is better).
- eigengap: eigenvalues of the symmetric normalised Laplacian of a k-NN graph; the score of k
  is the gap between its (k+1)-th and k-th smallest eigenvalue (higher is better); a graph
  of k well-separated groups has k near-zero eigenvalues (von Luxburg 2007).
- gap: the gap statistic against uniform reference sets (GapCriterion).
- stability: agreement (adjusted Rand index) of k-means partitions of resampled subsets on
  the rows they share; the largest k near the most stable one (StabilityCriterion).
"""

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import laplacian
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import kneighbors_graph

from gantrace.errors import ConfigError
from gantrace.matrix import as_matrix
from gantrace.params import COUNT, POSITIVE, SEED, Interval, Part
from gantrace.registry import KEY, Registry


class SilhouetteCriterion(Part):
    name = "silhouette"
    higher_is_better = True
    _parameter_constraints = {
        "min_silhouette": [Interval(float, -1, 1)],  # a silhouette's own range
        "n_init": [COUNT],
        "random_state": [SEED],
    }

    def __init__(self, min_silhouette=0.25, n_init=4, random_state=0):
        self.min_silhouette = min_silhouette
        self.n_init = n_init
        self.random_state = random_state
        self._validate_params()

    def scores(self, X, ks):
        out = []
        for k in ks:
            if k == 1:
                out.append(self.min_silhouette)
                continue
            km = KMeans(k, n_init=self.n_init, random_state=self.random_state)
            labels = km.fit_predict(X)
            ok = len(set(labels)) > 1
            out.append(silhouette_score(X, labels) if ok else -1.0)
        return np.array(out, dtype=float)


class BICCriterion(Part):
    name = "bic"
    higher_is_better = False
    _parameter_constraints = {
        "reg_covar": [POSITIVE],
        "random_state": [SEED],
    }

    def __init__(self, reg_covar=1e-6, random_state=0):
        self.reg_covar = reg_covar
        self.random_state = random_state
        self._validate_params()

    def scores(self, X, ks):
        out = []
        for k in ks:
            gmm = GaussianMixture(
                k, covariance_type="diag", reg_covar=self.reg_covar, random_state=self.random_state
            )
            out.append(gmm.fit(X).bic(X))
        return np.array(out, dtype=float)


class EigengapCriterion(Part):
    name = "eigengap"
    higher_is_better = True
    _parameter_constraints = {"n_neighbors": [COUNT], "random_state": [SEED]}

    def __init__(self, n_neighbors=10, random_state=0):
        self.n_neighbors = n_neighbors
        self.random_state = random_state  # unused: the eigenvalues are deterministic
        self._validate_params()

    def scores(self, X, ks):
        k_nn = min(self.n_neighbors, len(X) - 1)
        graph = kneighbors_graph(X, k_nn, mode="connectivity", include_self=False)
        affinity = graph.maximum(graph.T)  # symmetric: an edge if either is a neighbour
        lap = laplacian(affinity.toarray(), normed=True)
        eig = np.sort(np.linalg.eigvalsh(lap))
        return np.array([eig[k] - eig[k - 1] for k in ks], dtype=float)


class StabilityCriterion(Part):
    """How reproducible a k-means partition into k clusters is under resampling.

    Ben-Hur, Elisseeff & Guyon (PSB 2002, "A stability based method for discovering structure
    in clustered data") and Lange, Roth, Braun & Buhmann (Neural Computation 2004, "Stability-
    based validation of clustering solutions"): a k that matches the data's structure gives
    the same partition on different subsamples, a k that splits a group in two (or merges
    two) does not. Per resample, two seeded subsamples of `subsample` x n rows are clustered
    apart and the score is the adjusted Rand index of their labels on the rows both hold
    (chance-corrected: 0 for unrelated partitions); k's score is the mean over
    `n_resamples` draws (k = 1: 1, a single cluster is always reproduced).

    Choice: the largest k whose score is within `tolerance` of the best one's (more groups
    that are all reproducible beat fewer: two well-separated pairs of groups give k = 2 a
    top score too, while splitting a true group in two is less reproducible). With k_min = 1
    the best score is k = 1's 1.0, so a split must reach 1 - tolerance to count.
    """

    name = "stability"
    higher_is_better = True
    _parameter_constraints = {
        "n_resamples": [COUNT],
        "subsample": [Interval(float, 0, 1, closed="neither")],
        "tolerance": [Interval(float, 0, 2)],  # on an adjusted Rand index (at most 1, chance 0)
        "n_init": [COUNT],
        "random_state": [SEED],
    }

    def __init__(self, n_resamples=10, subsample=0.8, tolerance=0.05, n_init=2, random_state=0):
        self.n_resamples = n_resamples
        self.subsample = subsample
        self.tolerance = tolerance
        self.n_init = n_init
        self.random_state = random_state
        self._validate_params()

    def scores(self, X, ks):
        n = len(X)
        m = max(int(round(self.subsample * n)), 2)
        rng = np.random.default_rng(self.random_state)
        # the same draws for every k, so the scores of two k differ by k alone
        draws = [
            (np.sort(rng.choice(n, m, replace=False)), np.sort(rng.choice(n, m, replace=False)))
            for _ in range(self.n_resamples)
        ]
        seeds = rng.integers(0, 2**31 - 1, size=(self.n_resamples, 2))
        out = []
        for k in ks:
            if k == 1:
                out.append(1.0)
                continue
            agree = []
            for (a, b), (sa, sb) in zip(draws, seeds, strict=True):
                if k >= min(len(a), len(b)):
                    agree.append(-1.0)  # more clusters than rows: no partition to compare
                    continue
                la = KMeans(k, n_init=self.n_init, random_state=int(sa)).fit_predict(X[a])
                lb = KMeans(k, n_init=self.n_init, random_state=int(sb)).fit_predict(X[b])
                shared, ia, ib = np.intersect1d(a, b, assume_unique=True, return_indices=True)
                agree.append(adjusted_rand_score(la[ia], lb[ib]) if len(shared) > 1 else 0.0)
            out.append(float(np.mean(agree)))
        return np.array(out, dtype=float)

    def choose(self, ks, values):
        """Index of the chosen k: the largest k within `tolerance` of the most stable."""
        values = np.asarray(values, dtype=float)
        return int(np.flatnonzero(values >= values.max() - self.tolerance).max())


class GapCriterion(Part):
    """The gap statistic (Tibshirani, Walther & Hastie, J. R. Stat. Soc. B 2001, "Estimating
    the number of clusters in a data set via the gap statistic").

    Gap(k) = mean over `n_references` reference sets of log W_k*, minus log W_k, where W_k is
    the within-cluster sum of squares of a k-means partition and the references are drawn
    uniformly over the box of the data's principal axes (the paper's second choice, which
    follows the data's shape). Choice: the smallest k with Gap(k) >= Gap(k+1) - s(k+1),
    s = the references' standard deviation of log W* times sqrt(1 + 1/n_references); the
    largest gap when no k passes.
    """

    name = "gap"
    higher_is_better = True
    _parameter_constraints = {"n_references": [COUNT], "n_init": [COUNT], "random_state": [SEED]}

    def __init__(self, n_references=10, n_init=2, random_state=0):
        self.n_references = n_references
        self.n_init = n_init
        self.random_state = random_state
        self._validate_params()

    def _log_w(self, X, k, seed):
        inertia = KMeans(k, n_init=self.n_init, random_state=seed).fit(X).inertia_
        return float(np.log(max(inertia, 1e-300)))

    def scores(self, X, ks):
        rng = np.random.default_rng(self.random_state)
        mean = X.mean(axis=0)
        _, _, axes = np.linalg.svd(X - mean, full_matrices=False)
        Z = (X - mean) @ axes.T
        refs = [
            rng.uniform(Z.min(axis=0), Z.max(axis=0), size=Z.shape) @ axes + mean
            for _ in range(self.n_references)
        ]
        seed = int(rng.integers(0, 2**31 - 1))
        gaps, self.sd_ = [], []
        for k in ks:
            ref = np.array([self._log_w(R, k, seed) for R in refs])
            gaps.append(ref.mean() - self._log_w(X, k, seed))
            self.sd_.append(ref.std() * np.sqrt(1 + 1 / self.n_references))
        return np.array(gaps, dtype=float)

    def choose(self, ks, values):
        """Index of the smallest k whose gap is within one s of the next k's."""
        for i in range(len(ks) - 1):
            if values[i] >= values[i + 1] - self.sd_[i + 1]:
                return i
        return int(np.argmax(values))


CRITERIA = Registry(
    "criterion",
    (BICCriterion, EigengapCriterion, GapCriterion, SilhouetteCriterion, StabilityCriterion),
)


class NClustersEstimator(Part):
    """Pick k in [k_min, k_max] by `criterion` on at most `max_samples` rows (seeded draw).

    k_max is capped at n - 1 (n = rows used). Extra keyword parameters go to the criterion
    class (silhouette: min_silhouette, n_init; bic: reg_covar; eigengap: n_neighbors;
    gap: n_references, n_init; stability: n_resamples, subsample, tolerance, n_init).
    """

    name = "estimate_k"
    _parameter_constraints = {
        "criterion": [str],  # CRITERIA names an unknown one, with the valid choices
        "k_min": [COUNT],
        "k_max": [COUNT],
        "max_samples": [Interval(int, 3)],
        "random_state": [SEED],
    }

    def __init__(
        self, criterion="silhouette", k_min=2, k_max=10, max_samples=2000, random_state=0, **params
    ):
        self.criterion = criterion
        self.k_min = k_min
        self.k_max = k_max
        self.max_samples = max_samples
        self.random_state = random_state
        self.params = params
        self._validate_params()
        if k_max < k_min:
            raise ConfigError(f"estimate_k.k_max: {k_max} is below k_min {k_min}; raise k_max")
        self.criterion_ = CRITERIA.create(
            {KEY: criterion, **params}, where=self.name, random_state=random_state
        )

    def get_params(self):
        """The estimator's parameters and its criterion's (`params`), so clone keeps both."""
        return {**super().get_params(), **self.params}

    def fit(self, X):
        X = as_matrix(X, "features to count clusters in").astype(np.float64)
        if len(X) > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            X = X[np.sort(rng.choice(len(X), self.max_samples, replace=False))]
        k_max = min(self.k_max, len(X) - 1)
        if k_max < self.k_min:
            raise ConfigError(
                f"estimate_k: {len(X)} images are too few to try k >= {self.k_min}; "
                "set the number of generators (n_generators) instead"
            )
        ks = np.arange(self.k_min, k_max + 1)
        values = self.criterion_.scores(X, ks)
        if hasattr(self.criterion_, "choose"):  # a rule of its own (stability's threshold)
            best = self.criterion_.choose(ks, values)
        else:
            best = np.argmax(values) if self.criterion_.higher_is_better else np.argmin(values)
        self.n_clusters_ = int(ks[best])
        self.scores_ = pd.DataFrame({"k": ks, self.criterion: values})
        return self


def build_estimator(spec, random_state=0):
    """`{name: silhouette|bic|eigengap|gap|stability, k_min, k_max, ...}` (or a bare name) -> estimator.

    The criterion is built from CRITERIA; this adds the default (silhouette) and the
    estimator's own keys (k_min, k_max, max_samples) around it.
    """
    spec = {KEY: spec} if isinstance(spec, str) else dict(spec or {KEY: "silhouette"})
    CRITERIA.resolve(spec, where=NClustersEstimator.name)  # an unknown name, before the rest
    if "random_state" in spec:
        raise ConfigError("estimate_k.random_state: set by the method's seed; remove it")
    return NClustersEstimator(spec.pop(KEY), random_state=random_state, **spec)


def estimate_n_clusters(X, criterion="silhouette", k_min=2, k_max=10, random_state=0):
    """(k, table): the chosen number of clusters and each candidate k's criterion value."""
    est = build_estimator(
        {"name": criterion, "k_min": k_min, "k_max": k_max}, random_state=random_state
    ).fit(X)
    return est.n_clusters_, est.scores_
