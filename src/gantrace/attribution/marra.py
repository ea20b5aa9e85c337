"""Unsupervised Marra-style generator fingerprints: spherical k-means on noise residuals.

Marra et al. (2019, "Do GANs leave artificial fingerprints?") average the noise residuals of
a generator's images into its fingerprint and attribute an image to the fingerprint its
residual correlates with best. Without generator labels the same model is fitted by spherical
k-means: fingerprint = re-standardised mean of its members, assignment = highest correlation.
"""

import numpy as np

from gantrace.errors import ConfigError
from gantrace.params import COUNT, SEED, Part


def standardise_rows(x):
    """Rows minus their mean, divided by their L2 norm; an all-constant row stays all zero."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)


class FingerprintClusterer(Part):
    """Spherical k-means on row-standardised features (e.g. the `residual` extractor).

    Seeding is k-means++ style on 1 - correlation; `n_init` restarts from `random_state`
    keep the one with the highest total correlation to the assigned fingerprint. After
    `fit_predict`: `fingerprints_` (k x D, zero-mean unit-norm rows), `labels_`, `score_`
    (mean correlation of a row with its fingerprint).
    """

    name = "fingerprint"
    stochastic = True  # seeded k-means++-style initialisation
    _parameter_constraints = {
        "n_clusters": [COUNT],
        "n_init": [COUNT],
        "max_iter": [COUNT],
        "random_state": [SEED],
    }

    def __init__(self, n_clusters=8, n_init=4, max_iter=50, random_state=0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state
        self._validate_params()

    def _seed(self, Z, rng):
        centres = [int(rng.integers(len(Z)))]
        best = Z @ Z[centres[0]]
        for _ in range(1, self.n_clusters):
            gap = np.clip(1 - best, 0, None)
            gap[centres] = 0
            total = gap.sum()
            pick = rng.choice(len(Z), p=gap / total) if total > 0 else int(rng.integers(len(Z)))
            centres.append(int(pick))
            best = np.maximum(best, Z @ Z[pick])
        return Z[centres].copy()

    def _run(self, Z, rng):
        F = self._seed(Z, rng)
        labels = None
        for _ in range(self.max_iter):
            corr = Z @ F.T
            new = corr.argmax(axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            fit = corr[np.arange(len(Z)), labels]
            for j in range(self.n_clusters):
                members = labels == j
                if members.any():
                    F[j] = Z[members].mean(axis=0)
                else:  # an empty cluster takes the worst-fitting row
                    worst = int(fit.argmin())
                    F[j], labels[worst], fit[worst] = Z[worst], j, 1.0
            F = standardise_rows(F)
        corr = Z @ F.T
        labels = corr.argmax(axis=1)
        return labels, F, float(corr[np.arange(len(Z)), labels].sum())

    def fit_predict(self, X):
        Z = standardise_rows(X)
        if self.n_clusters > len(Z):
            raise ConfigError(
                f"clusterer.n_clusters: {self.n_clusters} fingerprints for {len(Z)} images"
            )
        rng = np.random.default_rng(self.random_state)
        best = None
        for _ in range(self.n_init):
            run = self._run(Z, rng)
            if best is None or run[2] > best[2]:
                best = run
        self.labels_, self.fingerprints_, total = best
        self.score_ = total / len(Z)
        return self.labels_

    def fit(self, X):
        self.fit_predict(X)
        return self
