"""Black-box membership attacks that see only generated samples, calibrated by real images.

A memorised training image is close to generated samples; so is any image in a dense part
of the data. Calibrating by a reference pool of real images separates the two:

- `calibrated_knn`: d_ref(x) - d_gen(x) (or log d_ref / d_gen), d = mean distance to the
  k nearest images (GAN-Leaks' calibrated attack, Chen et al., CCS 2020).
- `domias`: log p_gen(x) - log p_ref(x), Gaussian kernel densities in the (reduced) feature
  space (DOMIAS, van Breugel et al., AISTATS 2023).
- `eps_ball`: share of generated images within epsilon of x (Monte-Carlo attack, Hilprecht
  et al., PETS 2019); epsilon is a quantile of the real images' nearest-generated
  distances, so a list of quantiles is tuned on dev labels out of fold.

`reference: real` (default) uses every real image but the query itself (no labels);
`reference: not_used` uses the labelled not-used images and is then cross-fitted like the
supervised scorers, deciding at its natural margin 0 (closer to the generator than to
known-unused images).
"""

from numbers import Real

import numpy as np
from scipy.special import logsumexp

from gantrace.matrix import as_matrix
from gantrace.membership.scorers.unsupervised import (
    SIMILARITIES,
    distance_matrix,
    mask_own_copies,
    nearest_distances,
    row_index,
)
from gantrace.params import COUNT, POSITIVE, Interval, Options, Part

REFERENCES = ("real", "not_used")


class _ReferenceScorer(Part):
    """Holds the generated set and a real reference pool; subclasses compare the two.

    Subclasses set their own parameters, then call this `__init__`, which checks them all.
    """

    _parameter_constraints = {"reference": [Options(*REFERENCES)], "block_size": [COUNT]}

    def __init__(self, reference="real", block_size=1024):
        self.reference = reference
        self.block_size = block_size
        self._validate_params()
        # With labelled not-used images as the pool the scorer learns from labels.
        self.supervised = self.margin = reference == "not_used"

    def fit(self, generated_X):
        self.generated_ = as_matrix(generated_X, "generated features").astype(np.float64)
        self._fit_generated()
        return self

    fit_generated = fit

    def _fit_generated(self):
        pass

    def fit_reference(self, real_X):
        """All real images, no labels; each query is left out of its own reference."""
        if self.reference == "real":
            pool = as_matrix(real_X, "real features").astype(np.float64)
            self._set_pool(pool, row_index(pool))
        return self

    def fit_labels(self, real_X, labels):
        """Labelled rows of the training folds: the not-used ones form the pool."""
        real_X, labels = as_matrix(real_X, "real features"), np.asarray(labels)
        pool = real_X[labels == 0].astype(np.float64)
        if len(pool) < 2:
            raise ValueError(f"{self.name}: needs at least 2 labelled not-used images")
        self._set_pool(pool, None)
        return self

    def _set_pool(self, pool, exclude):
        self.pool_, self._exclude = pool, exclude

    def _check_fitted(self):
        if not hasattr(self, "pool_"):
            step = "fit_reference" if self.reference == "real" else "fit_labels"
            raise RuntimeError(f"{self.name}: call {step} before score")


class CalibratedKNNScorer(_ReferenceScorer):
    """d_ref(x) - d_gen(x) (`calibration: difference`) or log(d_ref / d_gen) (`ratio`)."""

    name = "calibrated_knn"
    _parameter_constraints = {
        "k": [COUNT],
        "metric": [SIMILARITIES],
        "calibration": [Options("difference", "ratio")],
    }

    def __init__(
        self, k=1, metric="euclidean", calibration="difference", reference="real", block_size=1024
    ):
        self.k = k
        self.metric = metric
        self.calibration = calibration
        super().__init__(reference, block_size)

    def _mean_knn(self, X, pool, exclude=None):
        k = min(self.k, len(pool) - (exclude is not None))
        d = nearest_distances(X, pool, k, self.metric, exclude, self.block_size)
        return d.mean(axis=1)

    def score(self, real_X):
        self._check_fitted()
        real_X = as_matrix(real_X, "real features").astype(np.float64)
        d_gen = self._mean_knn(real_X, self.generated_)
        d_ref = self._mean_knn(real_X, self.pool_, self._exclude)
        if self.calibration == "difference":
            return d_ref - d_gen
        tiny = 1e-12  # identical images: keep the log finite
        return np.log(d_ref + tiny) - np.log(d_gen + tiny)


def _bandwidth(rule, n, d):
    if isinstance(rule, Real) and not isinstance(rule, bool):
        return float(rule)
    if rule == "scott":
        return n ** (-1.0 / (d + 4))
    return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))  # silverman


class DensityRatioScorer(_ReferenceScorer):
    """DOMIAS: log p_gen(x) - log p_ref(x) with Gaussian KDEs on standardised features.

    Features are standardised by the generated images' spread; `bandwidth` is scott,
    silverman (per-pool rule of thumb in standard units) or a number. Kernel densities
    need few dimensions: put a reducer (e.g. pca with 10 components) in front.
    """

    name = "domias"
    _parameter_constraints = {"bandwidth": [Options("scott", "silverman"), POSITIVE]}

    def __init__(self, bandwidth="scott", reference="real", block_size=1024):
        self.bandwidth = bandwidth
        super().__init__(reference, block_size)

    def _fit_generated(self):
        scale = self.generated_.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self.generated_ = self.generated_ / self.scale_

    def _set_pool(self, pool, exclude):
        pool = pool / self.scale_
        super()._set_pool(pool, row_index(pool) if exclude is not None else None)

    def _log_density(self, X, pool, exclude=None):
        n, d = len(pool) - (exclude is not None), pool.shape[1]
        h = _bandwidth(self.bandwidth, n, d)
        out = np.empty(len(X))
        for s in range(0, len(X), self.block_size):
            blk = X[s : s + self.block_size]
            # An excluded self-match sits at +inf, i.e. weight 0.
            dist = mask_own_copies(distance_matrix(blk, pool, "euclidean"), blk, exclude, np.inf)
            out[s : s + len(blk)] = logsumexp(-(dist**2) / (2 * h * h), axis=1)
        return out - np.log(n) - d * np.log(h)

    def score(self, real_X):
        self._check_fitted()
        X = as_matrix(real_X, "real features").astype(np.float64) / self.scale_
        log_gen = self._log_density(X, self.generated_)
        return log_gen - self._log_density(X, self.pool_, self._exclude)


class EpsilonBallScorer(Part):
    """Share of generated images within epsilon of each real image (Monte-Carlo attack).

    epsilon = the `quantile` of the real images' nearest-generated distances (from
    `fit_reference`, no labels), or `epsilon` when given. A list of quantiles in the config
    is tuned by out-of-fold AUC on dev labels.
    """

    name = "eps_ball"
    _parameter_constraints = {
        "quantile": [Interval(float, 0, 1, closed="right")],
        "epsilon": [POSITIVE, None],
        "metric": [SIMILARITIES],
        "block_size": [COUNT],
    }

    def __init__(self, quantile=0.5, epsilon=None, metric="euclidean", block_size=1024):
        self.quantile = quantile
        self.epsilon = epsilon
        self.metric = metric
        self.block_size = block_size
        self._validate_params()

    def fit(self, generated_X):
        self.generated_ = as_matrix(generated_X, "generated features").astype(np.float64)
        return self

    def fit_reference(self, real_X):
        real_X = as_matrix(real_X, "real features").astype(np.float64)
        nearest = nearest_distances(
            real_X, self.generated_, 1, self.metric, block_size=self.block_size
        )[:, 0]
        self.epsilon_ = self.epsilon or float(np.quantile(nearest, self.quantile))
        return self

    def score(self, real_X):
        if not hasattr(self, "epsilon_"):
            raise RuntimeError("eps_ball: call fit_reference(real_X) before score")
        real_X = as_matrix(real_X, "real features").astype(np.float64)
        out = np.empty(len(real_X))
        for s in range(0, len(real_X), self.block_size):
            dist = distance_matrix(real_X[s : s + self.block_size], self.generated_, self.metric)
            out[s : s + len(dist)] = (dist <= self.epsilon_).mean(axis=1)
        return out
