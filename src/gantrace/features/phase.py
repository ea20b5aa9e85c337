"""Grid-phase statistics of the noise residual: the periodic imprint of a generator's upsampling.

A generator that upsamples by a factor of 2 per layer (transposed convolution, nearest or
bilinear interpolation followed by convolutions) produces pixels whose value depends on their
position modulo 2, 4, 8, ... in the image grid: each output phase is computed by another part
of the learned kernels, so the per-phase amplitudes are a property of the trained weights
(Odena et al. 2016, "Deconvolution and checkerboard artifacts", Distill; Yu et al., ICCV 2019,
"Attributing Fake Images to GANs": even GANs that differ only in their random seed leave
distinct fingerprints). Averaging each image's noise residual over the blocks of a candidate
period p gives a p x p map per image in which the scene averages out and that imprint stays.
"""

import numpy as np

from gantrace.errors import ConfigError
from gantrace.features.base import FEATURES, FeatureExtractor, as_batch
from gantrace.features.classic import RESIDUAL_CONSTRAINTS, distinct_list, noise_residual
from gantrace.params import Interval, ListOf, Options

PHASE_STATS = ("mean", "abs")
EPS = 1e-8  # below any residual of an 8-bit image (its step is 1/255)


def phase_maps(residual, period):
    """(N, p, p) means of `residual` (N, H, W) over the p x p blocks that tile it from the
    top-left corner (the generator's grid origin); a partial last row / column is left out."""
    n, h, w = residual.shape
    hp, wp = h // period * period, w // period * period
    blocks = residual[:, :hp, :wp].reshape(n, hp // period, period, wp // period, period)
    return blocks.mean(axis=(1, 3))


@FEATURES.register
class PhaseResidualExtractor(FeatureExtractor):
    """Noise residual averaged over the grid phases (i mod p, j mod p) of each `periods` p.

    Per image and period, `stats` gives p*p features each (period-major, then stat):
    - mean: the residual's phase means minus their average, over the residual's RMS (the
      signed periodic pattern, e.g. a checkerboard's sign and shape);
    - abs: the phase means of |residual| over their average, minus 1 (how much more the
      generator varies at some phases than at others).
    Both are ratios within one image, so brightness and contrast drop out. The default
    periods (2, 4, 8, 16) cover the upsampling layers of a generator that doubles the size
    four times; a period larger than the image is refused.
    """

    name = "phase_residual"
    versions_of = ("numpy", "scipy", "scikit-image")
    _parameter_constraints = {
        "periods": [ListOf(Interval(int, 2))],
        "stats": [Options(*PHASE_STATS), ListOf(Options(*PHASE_STATS))],
        **RESIDUAL_CONSTRAINTS,
    }

    def __init__(
        self,
        periods=(2, 4, 8, 16),
        stats=("mean", "abs"),
        denoise="gaussian",
        sigma=1.0,
        batch_size=64,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            periods=periods,
            stats=stats,
            denoise=denoise,
            sigma=sigma,
            batch_size=batch_size,
            preprocess=preprocess,
        )
        periods = distinct_list(f"{self.config_key}.periods", periods)
        self.params["stats"] = distinct_list(f"{self.config_key}.stats", stats)
        self.params["periods"] = [int(p) for p in periods]

    @property
    def n_features(self):
        return len(self.params["stats"]) * sum(p * p for p in self.params["periods"])

    def extract(self, images):
        images = as_batch(images)
        n, h, w = images.shape
        p = self.params
        if max(p["periods"]) > min(h, w):
            raise ConfigError(
                f"{self.config_key} (extractor 'phase_residual'): period {max(p['periods'])} "
                f"exceeds the image size {h}x{w}; use periods of at most {min(h, w)}"
            )
        r = noise_residual(images, p["denoise"], p["sigma"]).astype(np.float64)
        rms = np.sqrt((r**2).mean(axis=(1, 2)))[:, None]
        parts = []
        for period in p["periods"]:
            for stat in p["stats"]:
                if stat == "mean":
                    m = phase_maps(r, period).reshape(n, -1)
                    m = m - m.mean(axis=1, keepdims=True)
                    parts.append(np.divide(m, rms, out=np.zeros_like(m), where=rms > EPS))
                else:
                    a = phase_maps(np.abs(r), period).reshape(n, -1)
                    level = a.mean(axis=1, keepdims=True)  # 0: a residual-free image, all 0
                    parts.append(np.divide(a, level, out=np.ones_like(a), where=level > EPS) - 1)
        return np.concatenate(parts, axis=1).astype(np.float32)
