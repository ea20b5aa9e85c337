"""Weight-free generator fingerprints: block-DCT statistics and standardised noise residuals.

`dct` follows Frank et al. (ICML 2020, "Leveraging frequency analysis for deep fake image
recognition"): GAN upsampling leaves grid artefacts that stand out in the log-DCT spectrum.
`residual` is the fingerprint vector of Marra et al. (2019, "Do GANs leave artificial
fingerprints?"): a dot product of two rows is the correlation of their noise residuals.
"""

import numpy as np

from gantrace.attribution.marra import standardise_rows
from gantrace.errors import ConfigError
from gantrace.features.base import FEATURES, FeatureExtractor, as_batch
from gantrace.features.classic import RESIDUAL_CONSTRAINTS, distinct_list, noise_residual
from gantrace.params import Interval, ListOf, Options

DCT_STATS = ("mean", "std")


def _bin_mean(values, bins):
    """Average (N, H, W) into (N, bins, bins) by splitting rows and columns as evenly as possible."""
    n, h, w = values.shape
    rows = np.arange(h) * bins // h
    cols = np.arange(w) * bins // w
    by_row = np.add.reduceat(values, np.flatnonzero(np.diff(rows, prepend=-1)), axis=1)
    summed = np.add.reduceat(by_row, np.flatnonzero(np.diff(cols, prepend=-1)), axis=2)
    counts = np.bincount(rows)[:, None] * np.bincount(cols)[None, :]
    return summed / counts


@FEATURES.register
class DCTExtractor(FeatureExtractor):
    """Statistics of log |block DCT| per coefficient position, over the image's tiles.

    The image (or its noise residual, `source: residual`) in [0, 1] grey units is cut into
    non-overlapping `block` x `block` tiles; each tile gets an orthonormal type-II 2-D DCT;
    per coefficient position the `stats` (mean, std) of log(|coef| + eps) over the tiles are
    the features (block*block per stat, stat-major). Tiles that are all zero in the input
    (outside the kept region after `apply_region`) are left out, so lung / outer features
    describe only that region; an image with no other tile uses all. `global_bins` > 0 adds
    the full-image DCT log magnitude averaged over a bins x bins grid.
    """

    name = "dct"
    versions_of = ("numpy", "scipy")
    eps = 1e-4  # below the uint8 quantisation step (1/255), so noise-free zeros do not dominate
    _parameter_constraints = {
        "source": [Options("residual", "image")],
        "block": [Interval(int, 2)],
        "stats": [Options(*DCT_STATS), ListOf(Options(*DCT_STATS))],
        "global_bins": [Interval(int, 0)],
        **RESIDUAL_CONSTRAINTS,
    }

    def __init__(
        self,
        source="residual",
        block=8,
        stats=("mean", "std"),
        global_bins=0,
        denoise="gaussian",
        sigma=1.0,
        batch_size=64,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            source=source,
            block=block,
            stats=stats,
            global_bins=global_bins,
            denoise=denoise,
            sigma=sigma,
            batch_size=batch_size,
            preprocess=preprocess,
        )
        self.params["stats"] = distinct_list(
            f"{self.config_key}.stats", stats, f"each of {', '.join(DCT_STATS)}"
        )

    def _check_size(self, h, w):
        b, g = self.params["block"], self.params["global_bins"]
        if h % b or w % b:
            raise ConfigError(
                f"{self.config_key} (extractor 'dct'): 'block' {b} does not divide the image "
                f"size {h}x{w}; use a block size that divides both (e.g. 8)"
            )
        if g > min(h, w):
            raise ConfigError(
                f"{self.config_key} (extractor 'dct'): 'global_bins' {g} exceeds the image "
                f"size {h}x{w}; use at most {min(h, w)}"
            )

    def extract(self, images):
        from scipy.fft import dctn

        images = as_batch(images)
        n, h, w = images.shape
        self._check_size(h, w)
        p = self.params
        b = p["block"]
        if p["source"] == "residual":
            x = noise_residual(images, p["denoise"], p["sigma"])
        else:
            x = images.astype(np.float32) / np.float32(255)

        def tiles(a):  # (N, H, W) -> (N, tiles, b*b)
            a = a.reshape(n, h // b, b, w // b, b).transpose(0, 1, 3, 2, 4)
            return a.reshape(n, -1, b, b)

        logmag = np.log(np.abs(dctn(tiles(x), type=2, norm="ortho", axes=(2, 3))) + self.eps)
        logmag = logmag.reshape(n, -1, b * b).astype(np.float64)
        keep = tiles(images).reshape(n, -1, b * b).any(axis=2)
        keep[~keep.any(axis=1)] = True  # nothing left: fall back to every tile
        weight = (keep / keep.sum(axis=1, keepdims=True))[:, :, None]
        mean = (weight * logmag).sum(axis=1)
        parts = []
        for stat in p["stats"]:
            if stat == "mean":
                parts.append(mean)
            else:
                parts.append(np.sqrt((weight * (logmag - mean[:, None]) ** 2).sum(axis=1)))
        if p["global_bins"]:
            full = np.log(np.abs(dctn(x, type=2, norm="ortho", axes=(1, 2))) + self.eps)
            parts.append(_bin_mean(full.astype(np.float64), p["global_bins"]).reshape(n, -1))
        return np.concatenate(parts, axis=1).astype(np.float32)


@FEATURES.register
class ResidualExtractor(FeatureExtractor):
    """The centre `crop` x `crop` of the noise residual, each row zero-mean and unit-L2-norm.

    The residual is taken on the whole image (no artificial edge at the crop border), then
    cropped (the whole image when it is smaller). A constant image gives an all-zero row.
    """

    name = "residual"
    versions_of = ("numpy", "scipy")
    _parameter_constraints = {"crop": [Interval(int, 1)], **RESIDUAL_CONSTRAINTS}

    def __init__(
        self,
        crop=64,
        denoise="gaussian",
        sigma=1.0,
        batch_size=64,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            crop=crop,
            denoise=denoise,
            sigma=sigma,
            batch_size=batch_size,
            preprocess=preprocess,
        )

    def extract(self, images):
        images = as_batch(images)
        n, h, w = images.shape
        ch, cw = min(self.params["crop"], h), min(self.params["crop"], w)
        top, left = (h - ch) // 2, (w - cw) // 2
        residual = noise_residual(images, self.params["denoise"], self.params["sigma"])
        rows = residual[:, top : top + ch, left : left + cw].reshape(n, ch * cw)
        return standardise_rows(rows).astype(np.float32)
