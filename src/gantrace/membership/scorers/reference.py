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

`reference: real` (default) uses every real image but the query itself and, where the
dataset declares groups (a patient, a series), but the query's whole group (no labels);
the pool still holds the generator's other members, so it calibrates against a
contaminated reference. `reference: clean` uses a pool of same-domain real images known not
to be members (the dataset's `reference_real` folder), each query's group and exact copies
left out (no labels). `reference: generator` uses the samples of a reference generator
trained on that clean pool (GAN-Leaks' calibration: d(x, reference samples) - d(x, target
samples); for DOMIAS p_ref is estimated from the samples), the dataset's
`reference_generator` (no labels). `reference: not_used` uses the labelled not-used images and is then
cross-fitted like the supervised scorers (folds keep groups whole), deciding at its natural
margin 0 (closer to the generator than to known-unused images).
"""

from numbers import Real

import numpy as np
from scipy.special import logsumexp

from gantrace.errors import GantraceError
from gantrace.matrix import as_matrix
from gantrace.membership.scorers.unsupervised import (
    SIMILARITIES,
    distance_matrix,
    mask_own_copies,
    nearest_distances,
    row_index,
)
from gantrace.params import COUNT, POSITIVE, Interval, Options, Part

REFERENCES = ("real", "clean", "generator", "not_used")


def exclusion_index(pool, pool_groups=None, queries=None, query_groups=None):
    """{query row bytes: pool rows that query is never compared with}, or the pool's
    `row_index` (leave-one-out, the query's own copy) where no groups are given.

    `queries` None: the queries are the pool's own rows (`reference: real`), each leaving
    out its own row and, with `pool_groups`, every row of its group. Otherwise (a separate
    clean pool) each query leaves out its exact copies in the pool and, with both groups,
    the pool rows of its group. Identical queries of different groups share one entry:
    the union of what each leaves out (never less than either).
    """
    pool = np.ascontiguousarray(pool)
    if queries is None and pool_groups is None:
        return row_index(pool)
    members = {}
    if pool_groups is not None:
        for j, g in enumerate(np.asarray(pool_groups)):
            members.setdefault(g, []).append(j)
    if queries is None:
        queries, query_groups = pool, pool_groups
        copies = {row.tobytes(): [i] for i, row in enumerate(pool)}
    else:
        copies = {}
        for j, row in enumerate(pool):
            copies.setdefault(row.tobytes(), []).append(j)
    index = {}
    for i, row in enumerate(np.ascontiguousarray(queries)):
        key = row.tobytes()
        rows = list(copies.get(key, ()))
        if query_groups is not None:
            rows += members.get(np.asarray(query_groups)[i], [])
        if rows:
            index[key] = np.union1d(index.get(key, []), rows).astype(np.int64)
    return index


def _left_out(exclude):
    """The most pool rows any query leaves out (0 without an exclusion)."""
    if exclude is None or not exclude:
        return 0
    return max(1 if isinstance(v, (int, np.integer)) else len(v) for v in exclude.values())


def _left_out_of(queries, exclude):
    """How many pool rows each query leaves out."""
    if exclude is None:
        return np.zeros(len(queries), dtype=np.int64)
    counts = []
    for row in np.ascontiguousarray(queries):
        v = exclude.get(row.tobytes())
        counts.append(0 if v is None else 1 if isinstance(v, (int, np.integer)) else len(v))
    return np.asarray(counts, dtype=np.int64)


class _ReferenceScorer(Part):
    """Holds the generated set and a real reference pool; subclasses compare the two.

    Subclasses set their own parameters, then call this `__init__`, which checks them all.
    """

    _parameter_constraints = {"reference": [Options(*REFERENCES)], "block_size": [COUNT]}
    calibrated = True  # compares each query with a reference pool (`fit_reference`)

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

    def _space(self, X, what):
        """Features as the pool is compared in them (subclasses may rescale)."""
        return as_matrix(X, what).astype(np.float64)

    def fit_reference(self, real_X, groups=None, pool_X=None, pool_groups=None, samples_X=None):
        """No labels. `reference: real`: the real images `real_X` are the pool, each query
        leaving out itself and, with `groups` (one per row), its whole group.
        `reference: clean`: `pool_X` (real images known not to be members, groups
        `pool_groups`) is the pool; a query of `real_X` (groups `groups`) leaves out its
        exact copies and its group's rows. `reference: generator`: `samples_X` (samples of a
        generator trained on the clean pool) is the pool, whole (no real image is in it).
        `reference: not_used`: nothing (`fit_labels`)."""
        self.grouped_ = groups is not None
        if self.reference == "generator":
            self._set_pool(self._given_pool(samples_X), None)
        elif self.reference == "real":
            pool = self._space(real_X, "real features")
            self._set_pool(pool, exclusion_index(pool, _groups(groups, len(pool))))
        elif self.reference == "clean":
            pool = self._given_pool(pool_X)
            queries = self._space(real_X, "real features")
            exclude = exclusion_index(
                pool,
                _groups(pool_groups, len(pool)),
                queries,
                _groups(groups, len(queries)),
            )
            self._set_pool(pool, exclude)
        if self.reference != "not_used" and len(self.pool_) - _left_out(self._exclude) < 1:
            raise GantraceError(
                f"{self.name}: a query's group holds the whole reference pool; "
                "name finer groups (a patient or series) or give a larger pool"
            )
        return self

    _GIVEN = {  # reference -> what its pool is, where it comes from
        "clean": ("a pool of real images known not to be members", "reference_real folder"),
        "generator": ("the samples of a reference generator", "reference_generator"),
    }

    def _given_pool(self, X):
        """The pool handed to `fit_reference` for `clean` / `generator`, checked."""
        what, source = self._GIVEN[self.reference]
        if X is None:
            raise GantraceError(
                f"{self.name}: reference {self.reference!r} needs {what} (the dataset's {source})"
            )
        pool = self._space(X, f"reference ({self.reference}) features")
        if len(pool) < 2:
            raise GantraceError(
                f"{self.name}: reference {self.reference!r} needs 2 or more of {what}"
            )
        return pool

    def fit_labels(self, real_X, labels):
        """Labelled rows of the training folds: the not-used ones form the pool."""
        real_X, labels = as_matrix(real_X, "real features"), np.asarray(labels)
        pool = self._space(real_X[labels == 0], "real features")
        if len(pool) < 2:
            raise ValueError(f"{self.name}: needs at least 2 labelled not-used images")
        self._set_pool(pool, None)
        return self

    def _set_pool(self, pool, exclude):
        self.pool_, self._exclude = pool, exclude

    def _check_fitted(self):
        if not hasattr(self, "pool_"):
            step = "fit_labels" if self.reference == "not_used" else "fit_reference"
            raise RuntimeError(f"{self.name}: call {step} before score")

    def reference_note(self):
        """What the pool may hold that a clean one would not (a job-log line), or ''."""
        if self.reference != "real":
            return ""
        held = "the generator's other members"
        if not self.grouped_:
            held += (
                " and the query's own patient's neighbouring slices (no "
                "datasets.<ds>.groups declared)"
            )
        return (
            f"reference real: the pool holds {held}; calibration against it can fall below "
            "plain distance. A clean pool: reference clean with the dataset's reference_real"
        )


def _groups(groups, n):
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups: expected {n} values, got {groups.shape}")
    return groups


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
        k = min(self.k, len(pool) - _left_out(exclude))
        d = nearest_distances(X, pool, k, self.metric, exclude, self.block_size)
        return d.mean(axis=1)

    def score(self, real_X):
        self._check_fitted()
        real_X = self._space(real_X, "real features")
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

    def _space(self, X, what):
        return super()._space(X, what) / self.scale_

    def _log_density(self, X, pool, exclude=None):
        # the pool each query sees: all of it but the rows it leaves out
        n, d = len(pool) - _left_out_of(X, exclude), pool.shape[1]
        h = np.broadcast_to(_bandwidth(self.bandwidth, n, d), n.shape)
        out = np.empty(len(X))
        for s in range(0, len(X), self.block_size):
            blk, hb = X[s : s + self.block_size], h[s : s + self.block_size, None]
            # An excluded row sits at +inf, i.e. weight 0.
            dist = mask_own_copies(distance_matrix(blk, pool, "euclidean"), blk, exclude, np.inf)
            out[s : s + len(blk)] = logsumexp(-(dist**2) / (2 * hb * hb), axis=1)
        return out - np.log(n) - d * np.log(h)

    def score(self, real_X):
        self._check_fitted()
        X = self._space(real_X, "real features")
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
