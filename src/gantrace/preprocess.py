"""Image preprocessing before feature extraction: uint8 (N, H, W) -> uint8 (N, H, W).

Seed-paper inputs: grey opening (CSMorgan 2024); binarised, histogram-equalised,
Laplacian and contrast-adjusted images (Inoue Koki 2024). A spec is a name, a mapping
`{name: ..., <params>}`, or a list of those applied in order:

    from gantrace.preprocess import build_preprocessor
    prep = build_preprocessor(["opening", {"name": "contrast", "low": 1, "high": 99}])
    out = prep.transform(images)
"""

import numpy as np

from gantrace.errors import ConfigError
from gantrace.imaging import otsu_threshold
from gantrace.params import Interval, Options, Part
from gantrace.registry import Registry

PREPROCESSORS = Registry("preprocessor")


class Preprocessor(Part):
    """One step: its parameters are its constructor keywords, checked against
    `_parameter_constraints` when built from a spec (`build_preprocessor`)."""

    name = "base"

    def transform(self, images):
        raise NotImplementedError


def _batch(images):
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"preprocess: expected uint8 (N, H, W), got {images.dtype} {images.shape}")
    return images


@PREPROCESSORS.register
class Identity(Preprocessor):
    """Leave the images as they are."""

    name = "none"

    def transform(self, images):
        return _batch(images)


@PREPROCESSORS.register
class Opening(Preprocessor):
    """Grey-level morphological opening: removes bright details smaller than the element."""

    name = "opening"
    _parameter_constraints = {"size": [Interval(int, 1)], "shape": [Options("square", "disk")]}

    def __init__(self, size=3, shape="square"):
        self.size, self.shape = int(size), shape

    def transform(self, images):
        from scipy import ndimage

        images = _batch(images)
        size = self.size
        if self.shape == "square":
            return ndimage.grey_opening(images, size=(1, size, size))
        r = (size - 1) / 2
        yy, xx = np.mgrid[:size, :size] - r
        disk = (yy**2 + xx**2 <= r**2 + 1e-9)[None]
        return ndimage.grey_opening(images, footprint=disk)


@PREPROCESSORS.register
class Binarise(Preprocessor):
    """0 / 255 image: above Otsu's per-image threshold, or above a fixed grey level."""

    name = "binarise"
    _parameter_constraints = {"threshold": [Options("otsu"), Interval(int, 0, 255)]}

    def __init__(self, threshold="otsu"):
        self.threshold = threshold if threshold == "otsu" else int(threshold)

    def transform(self, images):
        images = _batch(images)
        t = self.threshold
        out = np.empty_like(images)
        for i, image in enumerate(images):
            level = otsu_threshold(image) if t == "otsu" else t
            out[i] = np.where(image > level, 255, 0)
        return out


@PREPROCESSORS.register
class HistEq(Preprocessor):
    """Per-image histogram equalisation (grey levels mapped through the rescaled CDF)."""

    name = "histeq"

    def transform(self, images):
        images = _batch(images)
        out = np.empty_like(images)
        for i, image in enumerate(images):
            cdf = np.cumsum(np.bincount(image.ravel(), minlength=256))
            lo = cdf[cdf > 0][0]
            span = cdf[-1] - lo
            if span == 0:  # constant image: nothing to spread
                out[i] = image
                continue
            lut = np.clip(np.round((cdf - lo) / span * 255), 0, 255).astype(np.uint8)
            out[i] = lut[image]
        return out


@PREPROCESSORS.register
class Laplacian(Preprocessor):
    """|Laplacian| (of Gaussian when sigma > 0), rescaled to uint8.

    rescale "fixed" divides by 4 (the largest 4-neighbour response of a uint8 image is
    4 * 255), so images stay comparable; "max" stretches each image's maximum to 255.
    """

    name = "laplacian"
    _parameter_constraints = {"sigma": [Interval(float, 0)], "rescale": [Options("fixed", "max")]}

    def __init__(self, sigma=0.0, rescale="fixed"):
        self.sigma, self.rescale = float(sigma), rescale

    def transform(self, images):
        from scipy import ndimage

        images = _batch(images)
        out = np.empty_like(images)
        sigma = self.sigma
        for i, image in enumerate(images):
            x = image.astype(np.float32)
            lap = ndimage.gaussian_laplace(x, sigma) if sigma > 0 else ndimage.laplace(x)
            lap = np.abs(lap)
            if self.rescale == "max":
                peak = lap.max()
                lap = lap * (255.0 / peak) if peak > 0 else lap
            else:
                lap = lap / 4.0
            out[i] = np.clip(np.round(lap), 0, 255).astype(np.uint8)
        return out


@PREPROCESSORS.register
class Contrast(Preprocessor):
    """Linear stretch of the [low, high] percentiles to [0, 255], then gamma.

    low/high null skips the stretch; gamma 1 skips the power curve (out = 255 (x/255)^gamma).
    """

    name = "contrast"
    _parameter_constraints = {
        "low": [None, Interval(float, 0, 100)],
        "high": [None, Interval(float, 0, 100)],
        "gamma": [Interval(float, 1e-3, 100)],
    }

    def __init__(self, low=1.0, high=99.0, gamma=1.0, *, config_key="contrast"):
        if (low is None) != (high is None):
            raise ConfigError(f"{config_key}: contrast needs both 'low' and 'high', or neither")
        if low is not None:
            low, high = float(low), float(high)
            if low >= high:
                raise ConfigError(
                    f"{config_key}.low: must be below 'high', got low {low}, high {high}"
                )
        self.low, self.high, self.gamma = low, high, float(gamma)

    def transform(self, images):
        images = _batch(images)
        out = np.empty_like(images)
        for i, image in enumerate(images):
            x = image.astype(np.float32)
            if self.low is not None:
                lo, hi = np.percentile(x, [self.low, self.high])
                if hi > lo:
                    x = np.clip((x - lo) * (255.0 / (hi - lo)), 0, 255)
            if self.gamma != 1.0:
                x = 255.0 * (x / 255.0) ** self.gamma
            out[i] = np.clip(np.round(x), 0, 255).astype(np.uint8)
        return out


class Pipeline:
    """Steps applied in order; `spec()` is the canonical list recorded in provenance."""

    def __init__(self, steps):
        self.steps = list(steps)

    def transform(self, images):
        images = _batch(images)
        for step in self.steps:
            images = step.transform(images)
        return images

    def spec(self):
        return [{"name": s.name, **s.get_params()} for s in self.steps if s.name != "none"]

    def __bool__(self):
        return any(s.name != "none" for s in self.steps)

    def __repr__(self):
        return f"Pipeline({self.steps!r})"


def build_preprocessor(spec, key="preprocess"):
    """A `Pipeline` from a name, a `{name: ..., params}` mapping, a list of those, or None.

    `key` is the config key named in errors (e.g. `features.r152_histeq.preprocess`).
    """
    if spec is None:
        return Pipeline([])
    if isinstance(spec, (list, tuple)):
        steps = [
            PREPROCESSORS.create(item, where=f"{key}[{i}]", config_key=f"{key}[{i}]")
            for i, item in enumerate(spec)
        ]
    else:
        steps = [PREPROCESSORS.create(spec, where=key, config_key=key)]
    return Pipeline(steps)
