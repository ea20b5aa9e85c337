"""Label-free membership scorers: `fit(generated_X)`, then `score(real_X)`."""

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import pairwise_distances

from gantrace.errors import ConfigError
from gantrace.matrix import LINKAGES, METRICS, as_matrix
from gantrace.params import COUNT, POSITIVE, SEED, Interval, Options, Part

SIMILARITIES = Options(*METRICS, "ssim")  # ssim: the feature vector is a square image


def ssim_matrix(A, B, window=8, data_range=1.0, block_size=64):
    """SSIM of every row of A against every row of B, each row a square image.

    Windows are the non-overlapping `window` x `window` tiles (a cheap stand-in for SSIM's
    sliding window; window = side gives the global SSIM); the score is the mean over tiles
    of the usual SSIM with C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = `data_range`.
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    side = int(round(np.sqrt(A.shape[1])))
    if side * side != A.shape[1] or A.shape[1] != B.shape[1]:
        raise ValueError(
            f"ssim: feature vectors of length {A.shape[1]} are not square images; use the "
            "pixels extractor (no reducer) with metric ssim"
        )
    if side % window:
        raise ValueError(f"ssim.window={window} does not divide the image side {side}")
    t = side // window

    def tiles(X):
        X = X.reshape(len(X), t, window, t, window).transpose(0, 1, 3, 2, 4)
        return X.reshape(len(X), t * t, window * window)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ta, tb = tiles(A), tiles(B)
    mu_a, mu_b = ta.mean(axis=2), tb.mean(axis=2)
    var_a, var_b = ta.var(axis=2), tb.var(axis=2)
    out = np.empty((len(A), len(B)))
    for s in range(0, len(A), block_size):
        blk = slice(s, s + block_size)
        cross = np.einsum("iwp,jwp->ijw", ta[blk], tb) / ta.shape[2]
        ma, mb = mu_a[blk, None, :], mu_b[None]
        cov = cross - ma * mb
        num = (2 * ma * mb + c1) * (2 * cov + c2)
        den = (ma**2 + mb**2 + c1) * (var_a[blk, None, :] + var_b[None] + c2)
        out[blk] = (num / den).mean(axis=2)
    return out


def similarity_matrix(A, B, metric, window=8, data_range=1.0):
    """Pairwise similarity (higher = closer): cosine similarity, SSIM, or minus a distance."""
    if metric == "ssim":
        return ssim_matrix(A, B, window, data_range)
    if metric == "cosine":
        return 1.0 - pairwise_distances(A, B, metric="cosine")
    return -pairwise_distances(A, B, metric=metric)


def distance_matrix(A, B, metric, window=8, data_range=1.0):
    """Pairwise distances; for ssim, 1 - SSIM (so 0 is identical and smaller is closer)."""
    if metric == "ssim":
        return 1.0 - ssim_matrix(A, B, window, data_range)
    return pairwise_distances(A, B, metric=metric)


def row_index(X):
    """{row bytes: first row index}: finds a query's own copy in a pool (leave-one-out)."""
    index = {}
    for i, row in enumerate(np.ascontiguousarray(X)):
        index.setdefault(row.tobytes(), i)
    return index


def mask_own_copies(matrix, queries, exclude, fill):
    """Set each query's entry for its own copy in the pool (`exclude`, a `row_index` of
    the pool, or an `exclusion_index` whose values are arrays of pool rows: its group; None:
    nothing) to `fill`, in place: +inf for distances, -inf for similarities."""
    if exclude is not None:
        for i, row in enumerate(np.ascontiguousarray(queries)):
            j = exclude.get(row.tobytes())
            if j is not None:
                matrix[i, j] = fill
    return matrix


def nearest_distances(X, pool, k, metric, exclude=None, block_size=1024, window=8):
    """(len(X), k) ascending distances of each row of X to its `k` nearest rows of `pool`.

    `exclude` (a `row_index` of `pool`) leaves one exact copy of each query out of its own
    neighbours. Row blocks bound memory to block_size x len(pool) distances.
    """
    X = np.ascontiguousarray(X)
    out = np.empty((len(X), k))
    for s in range(0, len(X), block_size):
        blk = X[s : s + block_size]
        dist = mask_own_copies(distance_matrix(blk, pool, metric, window), blk, exclude, np.inf)
        part = np.partition(dist, k - 1, axis=1)[:, :k] if k < dist.shape[1] else dist
        out[s : s + len(blk)] = np.sort(part, axis=1)[:, :k]
    return out


class KNNScorer(Part):
    """Minus the mean distance to the `k` nearest generated images (GAN-Leaks full
    black-box attack, Chen et al., CCS 2020), in any metric incl. ssim (1 - SSIM).

    With k=1 this is Robot's (ImageCLEF 2024) nearest-neighbour similarity with
    euclidean / cosine / manhattan distance.
    """

    name = "knn"
    _parameter_constraints = {"k": [COUNT], "metric": [SIMILARITIES], "block_size": [COUNT]}

    def __init__(self, k=1, metric="euclidean", block_size=1024):
        self.k = k
        self.metric = metric
        self.block_size = block_size
        self._validate_params()

    def fit(self, generated_X):
        generated_X = as_matrix(generated_X, "generated features")
        if self.k > len(generated_X):
            raise ConfigError(f"knn.k={self.k} exceeds the {len(generated_X)} generated images")
        self.generated_ = generated_X
        return self

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        dist = nearest_distances(
            real_X, self.generated_, self.k, self.metric, block_size=self.block_size
        )
        return -dist.mean(axis=1)


class ClusterDistanceScorer(Part):
    """Minus the min (or mean) distance to the centres of k clusters of generated images.

    `algorithm` kmeans or agglomerative (`linkage`; a centre is its cluster's mean), as in
    AI Multimedia Lab 2024.
    """

    name = "cluster_distance"
    stochastic = True  # k-means initialisation
    _parameter_constraints = {
        "n_clusters": [COUNT],
        "reduce": [Options("min", "mean")],
        "metric": [Options(*METRICS)],
        "algorithm": [Options("kmeans", "agglomerative")],
        "linkage": [Options(*LINKAGES)],
        "n_init": [COUNT],
        "random_state": [SEED],
    }

    def __init__(
        self,
        n_clusters=10,
        reduce="min",
        metric="euclidean",
        algorithm="kmeans",
        linkage="ward",
        n_init=10,
        random_state=0,
    ):
        self.n_clusters = n_clusters
        self.reduce = reduce
        self.metric = metric
        self.algorithm = algorithm
        self.linkage = linkage
        self.n_init = n_init
        self.random_state = random_state
        self._validate_params()

    def fit(self, generated_X):
        generated_X = as_matrix(generated_X, "generated features")
        if self.n_clusters > len(generated_X):
            raise ConfigError(
                f"cluster_distance.n_clusters={self.n_clusters} exceeds the "
                f"{len(generated_X)} generated images"
            )
        if self.algorithm == "kmeans":
            km = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.random_state)
            self.centers_ = km.fit(generated_X).cluster_centers_
        else:
            labels = AgglomerativeClustering(self.n_clusters, linkage=self.linkage).fit_predict(
                generated_X
            )
            self.centers_ = np.stack(
                [generated_X[labels == c].mean(axis=0) for c in range(self.n_clusters)]
            )
        return self

    def score(self, real_X):
        dist = pairwise_distances(
            as_matrix(real_X, "real features"), self.centers_, metric=self.metric
        )
        return -(dist.min(axis=1) if self.reduce == "min" else dist.mean(axis=1))


class SimilarityScorer(Part):
    """Best similarity to any generated image (Shitongcao / Robot 2024).

    `metric`: cosine (similarity), euclidean or manhattan (minus the distance), or ssim
    (`ssim_matrix`; the feature vector must be a square image, e.g. the `pixels` extractor).

    Noise (Shitongcao 2024: Gaussian and salt-and-pepper noise on the generated images,
    which are then compared with the real ones) is seeded and applied to the generated
    vectors only: `noise_std` is the Gaussian's standard deviation in grey levels of the
    0-255 images, converted to the features' scale, where 255 grey levels are `data_range`
    (pixel features lie in [0, 1]); `salt_pepper` is the fraction of values set to 0 or
    `data_range`, half each. Noisy vectors are clipped to [0, data_range], as images are.
    """

    name = "similarity"
    _parameter_constraints = {
        "metric": [SIMILARITIES],
        "noise_std": [Interval(float, 0, 255, unit="grey levels")],
        "salt_pepper": [Interval(float, 0, 1, unit="fraction of pixels")],
        "window": [COUNT],
        "data_range": [POSITIVE],
        "block_size": [COUNT],
        "random_state": [SEED],
    }

    def __init__(
        self,
        metric="cosine",
        noise_std=0.0,
        salt_pepper=0.0,
        window=8,
        data_range=1.0,
        block_size=512,
        random_state=0,
    ):
        self.metric = metric
        self.noise_std = noise_std
        self.salt_pepper = salt_pepper
        self.window = window
        self.data_range = data_range
        self.block_size = block_size
        self.random_state = random_state
        self._validate_params()

    @property
    def stochastic(self):
        return self.noise_std > 0  # seeded noise

    def _noisy(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.noise_std == 0 and self.salt_pepper == 0:
            return X
        rng = np.random.default_rng(self.random_state)
        sigma = self.noise_std / 255.0 * self.data_range  # grey levels -> feature scale
        X = X + rng.normal(0.0, sigma, X.shape) if sigma else X.copy()
        hit = rng.random(X.shape) < self.salt_pepper
        X[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0.0, self.data_range)
        return np.clip(X, 0.0, self.data_range)

    def fit(self, generated_X):
        self.generated_ = self._noisy(as_matrix(generated_X, "generated features"))
        return self

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        out = np.empty(len(real_X))
        for s in range(0, len(real_X), self.block_size):
            sim = similarity_matrix(
                real_X[s : s + self.block_size],
                self.generated_,
                self.metric,
                self.window,
                self.data_range,
            )
            out[s : s + len(sim)] = sim.max(axis=1)
        return out


def histogram_mode(values, bins):
    """Midpoint of the fullest of `bins` equal-width bins of `values` (the first on ties)."""
    counts, edges = np.histogram(values, bins=bins)
    peak = int(np.argmax(counts))
    return float((edges[peak] + edges[peak + 1]) / 2)


class AdditiveScorer(Part):
    """Additive mode / average thresholding (CSMorgan 2024, Emon et al., CEUR-WS Vol-3740,
    Sec. 4.2), meant for PCA components; label-free.

    s(x) = sum_j w_j x_j, each component weighted by its share of the total variance of
    the generated images (the paper "combined all the features and weighted them by the
    total"). The cut c is the mode (`statistic: mode`, `histogram_mode` with `bins`) or the
    mean (`statistic: mean`) of s over all real images, fitted without their labels
    (`fit_reference`); the score is the margin s(x) - c, so `threshold: natural` decides
    used where s(x) lies above the cut, as in the paper.
    """

    name = "additive"
    margin = True
    _parameter_constraints = {"statistic": [Options("mode", "mean")], "bins": [COUNT]}

    def __init__(self, statistic="mode", bins=50):
        self.statistic = statistic
        self.bins = bins
        self._validate_params()

    def fit(self, generated_X):
        variance = as_matrix(generated_X, "generated features").astype(np.float64).var(axis=0)
        total = variance.sum()
        self.weights_ = variance / total if total > 0 else np.full(len(variance), 1 / len(variance))
        return self

    def _sums(self, X):
        return as_matrix(X, "real features").astype(np.float64) @ self.weights_

    def fit_reference(self, real_X):
        sums = self._sums(real_X)
        self.cut_ = histogram_mode(sums, self.bins) if self.statistic == "mode" else sums.mean()
        return self

    def score(self, real_X):
        return self._sums(real_X) - self.cut_


class TwoMeansScorer(Part):
    """k-means with two clusters on the real images' features (KDE-med-lab 2024: CNN
    features "processed using k-means clustering to classify the images into two
    categories"). No labels: the cluster whose centre lies nearer the generated images'
    mean is the used one (our reading; the overview does not say how the clusters are
    named). Margin: distance to the other centre minus distance to the used centre."""

    name = "two_means"
    margin = True
    _parameter_constraints = {"n_init": [COUNT], "random_state": [SEED]}

    def __init__(self, n_init=10, random_state=0):
        self.n_init = n_init
        self.random_state = random_state
        self._validate_params()

    def fit(self, generated_X):
        self.generated_mean_ = as_matrix(generated_X, "generated features").mean(axis=0)
        return self

    def fit_reference(self, real_X):
        """Cluster every real image (no labels) into two groups."""
        real_X = as_matrix(real_X, "real features")
        km = KMeans(2, n_init=self.n_init, random_state=self.random_state).fit(real_X)
        near = np.linalg.norm(km.cluster_centers_ - self.generated_mean_, axis=1)
        self.centres_ = km.cluster_centers_[np.argsort(near)]  # used centre first
        return self

    def score(self, real_X):
        if not hasattr(self, "centres_"):
            raise RuntimeError("two_means: call fit_reference(real_X) before score")
        d = pairwise_distances(as_matrix(real_X, "real features"), self.centres_)
        return d[:, 1] - d[:, 0]


class ModeThresholdScorer(Part):
    """Per-component agreement count around a mode or mean, meant for PCA components (a
    variant of CSMorgan 2024's thresholding; theirs is `additive`).

    Per component j, a centre c_j is fitted on the generated images: the histogram peak
    (`statistic: mode`, midpoint of the fullest of `bins` bins, the first on ties) or the
    mean; s_j is the generated images' standard deviation. A real image's score is the
    number of components with |x_j - c_j| <= tolerance * s_j.
    """

    name = "mode_threshold"
    _parameter_constraints = {
        "statistic": [Options("mode", "mean")],
        "tolerance": [POSITIVE],
        "bins": [COUNT],
    }

    def __init__(self, statistic="mode", tolerance=0.5, bins=50):
        self.statistic = statistic
        self.tolerance = tolerance
        self.bins = bins
        self._validate_params()

    def fit(self, generated_X):
        G = as_matrix(generated_X, "generated features").astype(np.float64)
        if self.statistic == "mean":
            self.centres_ = G.mean(axis=0)
        else:
            self.centres_ = np.array([histogram_mode(col, self.bins) for col in G.T])
        self.widths_ = self.tolerance * G.std(axis=0)
        return self

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        return (np.abs(real_X - self.centres_) <= self.widths_).sum(axis=1).astype(np.float64)


class ColumnScorer(Part):
    """Score = one feature column as is, e.g. an out-of-fold logit another stage computed.

    Its natural threshold is 0 (`threshold: natural`).
    """

    name = "column"
    margin = True
    _parameter_constraints = {"index": [Interval(int, 0)]}

    def __init__(self, index=0):
        self.index = index
        self._validate_params()

    def fit(self, generated_X):
        return self

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        if self.index >= real_X.shape[1]:
            raise ConfigError(
                f"column.index={self.index}: the features have only {real_X.shape[1]} columns"
            )
        return real_X[:, self.index].astype(np.float64)
