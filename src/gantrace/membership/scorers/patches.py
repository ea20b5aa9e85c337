"""A patch-level membership scorer: a generator may copy parts of slices, not whole ones."""

import numpy as np

from gantrace.errors import ConfigError
from gantrace.matrix import as_matrix
from gantrace.params import COUNT, Interval, Part


def square_side(n_columns):
    """The side of the square image a feature row of `n_columns` values is, or a ConfigError."""
    side = int(round(np.sqrt(n_columns)))
    if side * side != n_columns:
        raise ConfigError(
            f"patch_match: feature vectors of length {n_columns} are not square images; use "
            "the pixels extractor (no reducer)"
        )
    return side


def image_patches(X, patch, stride):
    """(N, n_patches, patch * patch) float32 patches of the square images in the rows of X,
    top-left corners every `stride` pixels."""
    side = square_side(X.shape[1])
    if patch > side:
        raise ConfigError(f"patch_match.patch={patch} exceeds the image side {side}")
    images = np.asarray(X, np.float32).reshape(len(X), side, side)
    windows = np.lib.stride_tricks.sliding_window_view(images, (patch, patch), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]
    return windows.reshape(len(X), -1, patch * patch)


class PatchMatchScorer(Part):
    """Minus the mean distance of a real image's `top` best-matching patches to their
    nearest patch in any generated image (higher = more likely used).

    Each image (a square feature row: the `pixels` extractor) is cut into `patch` x
    `patch` patches every `stride` pixels; patches whose pixel sd is below `min_std`
    (background, flat lung) are left out of both sides, as they match anything. A
    generator that pastes part of a training slice into its output leaves a few patches
    of that slice with a near-exact match, which a whole-image distance dilutes.
    Distances are Euclidean, computed `block_size` query patches at a time against all
    generated patches (memory: block_size x generated patches floats).
    """

    name = "patch_match"
    _parameter_constraints = {
        "patch": [Interval(int, 2)],
        "stride": [COUNT],
        "top": [COUNT],
        "min_std": [Interval(float, 0)],
        "block_size": [COUNT],
    }

    def __init__(self, patch=8, stride=4, top=4, min_std=0.02, block_size=1024):
        self.patch = patch
        self.stride = stride
        self.top = top
        self.min_std = min_std
        self.block_size = block_size
        self._validate_params()

    def _informative(self, patches):
        return patches.std(axis=-1) >= self.min_std

    def fit(self, generated_X):
        generated_X = as_matrix(generated_X, "generated features")
        patches = image_patches(generated_X, self.patch, self.stride)
        pool = patches[self._informative(patches)]
        if not len(pool):
            raise ConfigError(
                f"patch_match.min_std={self.min_std}: no generated patch varies that much; "
                "lower min_std"
            )
        self.pool_ = pool
        self.pool_sq_ = (pool.astype(np.float64) ** 2).sum(1)
        return self

    def _nearest(self, queries):
        """Distance of each query patch (rows) to its nearest generated patch."""
        out = np.empty(len(queries))
        pool_t = self.pool_.T
        for s in range(0, len(queries), self.block_size):
            q = queries[s : s + self.block_size]
            d2 = (
                (q.astype(np.float64) ** 2).sum(1)[:, None] + self.pool_sq_[None] - 2 * (q @ pool_t)
            )
            out[s : s + len(q)] = np.sqrt(np.maximum(d2.min(1), 0))
        return out

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        patches = image_patches(real_X, self.patch, self.stride)
        n, k = patches.shape[:2]
        keep = self._informative(patches)
        dist = np.full((n, k), np.inf)
        dist[keep] = self._nearest(patches[keep])
        best = np.sort(dist, axis=1)[:, : self.top]
        worst = float(self.patch)  # the largest distance of two patches on a [0, 1] scale
        best = np.where(np.isfinite(best), best, np.nan)
        mean = np.nanmean(np.where(np.isnan(best).all(1, keepdims=True), worst, best), axis=1)
        return -mean
