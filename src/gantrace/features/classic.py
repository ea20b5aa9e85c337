"""Weight-free extractors: downsampled pixels, local binary patterns, noise-residual spectra."""

import numpy as np

from gantrace.errors import ConfigError
from gantrace.features.base import FEATURES, FeatureExtractor, as_batch
from gantrace.params import InstanceOf, Interval, ListOf, Options, check_value


@FEATURES.register
class PixelsExtractor(FeatureExtractor):
    """Area-downsample to `size` x `size`, flatten, scale to [0, 1]."""

    name = "pixels"
    _parameter_constraints = {"size": [Interval(int, 1)]}

    def __init__(self, size=32, batch_size=256, preprocess=None, *, config_key=None):
        super().__init__(config_key, size=size, batch_size=batch_size, preprocess=preprocess)

    def extract(self, images):
        images = as_batch(images)
        n, h, w = images.shape
        s = self.params["size"]
        if h % s == 0 and w % s == 0:
            x = images.reshape(n, s, h // s, s, w // s).mean(axis=(2, 4), dtype=np.float32)
        else:
            import torch
            import torch.nn.functional as F

            t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
            x = F.adaptive_avg_pool2d(t, s)[:, 0].numpy()
        return (x.reshape(n, s * s) / np.float32(255)).astype(np.float32, copy=False)


@FEATURES.register
class LBPExtractor(FeatureExtractor):
    """Normalised histograms of uniform local binary patterns, one per (P, R) scale."""

    name = "lbp"
    versions_of = ("numpy", "scikit-image")
    _parameter_constraints = {
        "P": [Interval(int, 1)],
        "R": [Interval(float, 0, closed="neither")],
        "scales": [None, ListOf(InstanceOf(list, tuple, what="a [P, R] pair"))],
    }

    def __init__(self, P=8, R=1, scales=None, batch_size=64, preprocess=None, *, config_key=None):
        super().__init__(
            config_key, P=P, R=R, scales=scales, batch_size=batch_size, preprocess=preprocess
        )
        self._scales = []
        for i, pair in enumerate(scales if scales is not None else [[P, R]]):
            key = f"{self.config_key}.scales[{i}]"
            if len(pair) != 2:
                raise ConfigError(f"{key}: expected a [P, R] pair, got {pair!r}")
            p = check_value(f"{key}.P", pair[0], self._parameter_constraints["P"])
            r = check_value(f"{key}.R", pair[1], self._parameter_constraints["R"])
            self._scales.append((int(p), float(r)))

    @property
    def n_features(self):
        return sum(p + 2 for p, _ in self._scales)

    def extract(self, images):
        from skimage.feature import local_binary_pattern

        images = as_batch(images)
        out = np.empty((len(images), self.n_features), dtype=np.float32)
        for i, image in enumerate(images):
            col = 0
            for p, r in self._scales:
                codes = local_binary_pattern(image, p, r, method="uniform").astype(np.intp)
                hist = np.bincount(codes.ravel(), minlength=p + 2)[: p + 2]
                out[i, col : col + p + 2] = hist / codes.size
                col += p + 2
        return out


DENOISERS = ("gaussian", "median", "wavelet", "nlmeans")
# the `denoise` and `sigma` keys that every noise-residual extractor takes
RESIDUAL_CONSTRAINTS = {
    "denoise": [Options(*DENOISERS)],
    "sigma": [Interval(float, 0, closed="neither")],
}


def distinct_list(key, values, what="each value"):
    """`values` (one string or a list) as a list; a ConfigError naming `key` when one
    repeats (a repeated statistic or period would only duplicate feature columns)."""
    values = [values] if isinstance(values, str) else list(values)
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}: {what} at most once, got {values}")
    return values


def _edge_preserving(x, denoise, strength):
    """Wavelet (BayesShrink, soft) or non-local-means denoising of each [0, 1] image, at
    `strength` times its estimated noise level: edges stay in the denoised image, so the
    residual holds less of the scene and more of what the generator added."""
    # scikit-image (and PyWavelets for its noise estimate): only these two denoisers need them
    from skimage.restoration import denoise_nl_means, denoise_wavelet, estimate_sigma

    try:
        import pywt  # noqa: F401 - reason: scikit-image's wavelet code imports it late
    except ImportError as err:
        raise ConfigError(
            f"denoise: {denoise} needs PyWavelets, a gantrace dependency missing here; "
            "reinstall gantrace (pip install -e . -c constraints.txt) or use denoise: gaussian"
        ) from err

    out = np.empty_like(x)
    for i, image in enumerate(x):
        noise = float(estimate_sigma(image)) * strength if np.ptp(image) > 0 else 0.0
        if not noise > 0:  # a noise-free (e.g. constant) image: nothing to remove
            out[i] = image
        elif denoise == "wavelet":
            out[i] = denoise_wavelet(image, sigma=noise, mode="soft", method="BayesShrink")
        else:
            out[i] = denoise_nl_means(
                image, h=0.8 * noise, sigma=noise, patch_size=5, patch_distance=6, fast_mode=True
            )
    return out


def noise_residual(images, denoise="gaussian", sigma=1.0):
    """Image minus its denoised version, in units of the [0, 1] grey range (float32 N×H×W).

    `denoise`: gaussian (blur of `sigma` pixels), median (3x3), or the edge-preserving wavelet
    and nlmeans, whose `sigma` scales the image's estimated noise level.
    """
    from scipy import ndimage

    x = as_batch(images).astype(np.float32) / np.float32(255)
    if denoise == "gaussian":
        smooth = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="reflect")
    elif denoise == "median":
        smooth = ndimage.median_filter(x, size=(1, 3, 3), mode="reflect")
    elif denoise in ("wavelet", "nlmeans"):
        smooth = _edge_preserving(x, denoise, sigma)
    else:
        raise ConfigError(
            f"noise residual: 'denoise' must be one of {', '.join(DENOISERS)}, got {denoise!r}"
        )
    x -= smooth
    return x


@FEATURES.register
class SpectrumExtractor(FeatureExtractor):
    """Frequency fingerprint of the noise residual.

    Features: the power spectrum of (image - denoised image) averaged over `n_bins` rings of
    radial frequency (0 to the corner, sqrt(2)/2 cycles/pixel), then optionally averaged over
    a `grid` x `grid` partition of the (half-plane) spectrum; the log of each average. Taking
    the log after averaging keeps narrow peaks (upsampling checkerboards) visible.
    """

    name = "spectrum"
    versions_of = ("numpy", "scipy")
    eps = 1e-10
    _parameter_constraints = {
        **RESIDUAL_CONSTRAINTS,
        "n_bins": [Interval(int, 1)],
        "grid": [Interval(int, 0)],
    }

    def __init__(
        self,
        denoise="gaussian",
        sigma=1.0,
        n_bins=64,
        grid=0,
        batch_size=64,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            denoise=denoise,
            sigma=sigma,
            n_bins=n_bins,
            grid=grid,
            batch_size=batch_size,
            preprocess=preprocess,
        )
        self._pool = {}

    def _pooling(self, h, w):
        """(H*(W//2+1), D) matrix that averages the flattened half-plane spectrum into features."""
        key = (h, w)
        if key not in self._pool:
            fy = np.fft.fftfreq(h)[:, None]
            fx = np.fft.rfftfreq(w)[None, :]
            radius = np.sqrt(fy**2 + fx**2) / np.sqrt(0.5)
            n_bins = self.params["n_bins"]
            labels = [np.minimum((radius * n_bins).astype(int), n_bins - 1)]
            sizes = [n_bins]
            g = self.params["grid"]
            if g:
                row = np.minimum(((fy + 0.5) * g).astype(int), g - 1)
                col = np.minimum((fx / 0.5 * g).astype(int), g - 1)
                labels.append(row * g + col)
                sizes.append(g * g)
            blocks = []
            for lab, k in zip(labels, sizes, strict=True):
                lab = np.broadcast_to(lab, (h, w // 2 + 1)).ravel()
                onehot = np.zeros((lab.size, k), dtype=np.float32)
                onehot[np.arange(lab.size), lab] = 1
                count = onehot.sum(axis=0)
                blocks.append(onehot / np.maximum(count, 1))
            self._pool[key] = np.concatenate(blocks, axis=1)
        return self._pool[key]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pool"] = {}
        return state

    def extract(self, images):
        images = as_batch(images)
        n, h, w = images.shape
        residual = noise_residual(images, self.params["denoise"], self.params["sigma"])
        spec = np.fft.rfft2(residual, axes=(1, 2))
        power = spec.real**2 + spec.imag**2
        power /= h * w
        pooled = power.reshape(n, h * (w // 2 + 1)) @ self._pooling(h, w)
        return np.log(pooled + np.float32(self.eps)).astype(np.float32, copy=False)
