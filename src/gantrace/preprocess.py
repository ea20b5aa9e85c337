"""Image preprocessing before feature extraction: uint8 (N, H, W) -> uint8 (N, H, W).

Seed-paper inputs: grey opening (CSMorgan 2024); binarised, histogram-equalised,
Laplacian and contrast-adjusted images (Inoue Koki 2024). A spec is a name, a mapping
`{name: ..., <params>}`, or a list of those applied in order:

    from gantrace.preprocess import build_preprocessor
    prep = build_preprocessor(["opening", {"name": "contrast", "low": 1, "high": 99}])
    out = prep.transform(images)
"""

import copy
import difflib

import numpy as np

from gantrace.errors import ConfigError

PREPROCESSORS: dict[str, type] = {}


def _register(cls):
    PREPROCESSORS[cls.name] = cls
    return cls


def _number(key, name, param, value, low=None, high=None, integer=False):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = f" in [{low}, {high}]" if high is not None else f" >= {low}"
        raise ConfigError(f"{key}: {name} '{param}' must be {kind}{bounds}, got {value!r}")
    return int(value) if integer else float(value)


class Preprocessor:
    """One step. Parameters are constructor keywords listed in `defaults`."""

    name = "base"
    defaults: dict = {}

    def __init__(self, key="preprocess", **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(f"{key}: {self.name} has no parameter '{unknown[0]}'; valid: {valid}")
        self.params = {**copy.deepcopy(self.defaults), **params}
        self.check_params(key)

    def check_params(self, key):
        """Validate (and normalise) `self.params`."""

    def get_params(self):
        return copy.deepcopy(self.params)

    def transform(self, images):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{type(self).__name__}({args})"


def _batch(images):
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"preprocess: expected uint8 (N, H, W), got {images.dtype} {images.shape}")
    return images


@_register
class Identity(Preprocessor):
    """Leave the images as they are."""

    name = "none"

    def transform(self, images):
        return _batch(images)


@_register
class Opening(Preprocessor):
    """Grey-level morphological opening: removes bright details smaller than the element."""

    name = "opening"
    defaults = {"size": 3, "shape": "square"}

    def check_params(self, key):
        self.params["size"] = _number(key, self.name, "size", self.params["size"], 1, integer=True)
        if self.params["shape"] not in ("square", "disk"):
            raise ConfigError(
                f"{key}: opening 'shape' must be square or disk, got {self.params['shape']!r}"
            )

    def transform(self, images):
        from scipy import ndimage

        images = _batch(images)
        size = self.params["size"]
        if self.params["shape"] == "square":
            return ndimage.grey_opening(images, size=(1, size, size))
        r = (size - 1) / 2
        yy, xx = np.mgrid[:size, :size] - r
        disk = (yy**2 + xx**2 <= r**2 + 1e-9)[None]
        return ndimage.grey_opening(images, footprint=disk)


def otsu_threshold(image):
    """Otsu's threshold of one uint8 image: pixels > t are foreground."""
    hist = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return int(np.argmax(between))


@_register
class Binarise(Preprocessor):
    """0 / 255 image: above Otsu's per-image threshold, or above a fixed grey level."""

    name = "binarise"
    defaults = {"threshold": "otsu"}

    def check_params(self, key):
        t = self.params["threshold"]
        if t != "otsu":
            self.params["threshold"] = _number(key, self.name, "threshold", t, 0, 255, integer=True)

    def transform(self, images):
        images = _batch(images)
        t = self.params["threshold"]
        out = np.empty_like(images)
        for i, image in enumerate(images):
            level = otsu_threshold(image) if t == "otsu" else t
            out[i] = np.where(image > level, 255, 0)
        return out


@_register
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


@_register
class Laplacian(Preprocessor):
    """|Laplacian| (of Gaussian when sigma > 0), rescaled to uint8.

    rescale "fixed" divides by 4 (the largest 4-neighbour response of a uint8 image is
    4 * 255), so images stay comparable; "max" stretches each image's maximum to 255.
    """

    name = "laplacian"
    defaults = {"sigma": 0.0, "rescale": "fixed"}

    def check_params(self, key):
        self.params["sigma"] = _number(key, self.name, "sigma", self.params["sigma"], 0)
        if self.params["rescale"] not in ("fixed", "max"):
            raise ConfigError(
                f"{key}: laplacian 'rescale' must be fixed or max, got {self.params['rescale']!r}"
            )

    def transform(self, images):
        from scipy import ndimage

        images = _batch(images)
        out = np.empty_like(images)
        sigma = self.params["sigma"]
        for i, image in enumerate(images):
            x = image.astype(np.float32)
            lap = ndimage.gaussian_laplace(x, sigma) if sigma > 0 else ndimage.laplace(x)
            lap = np.abs(lap)
            if self.params["rescale"] == "max":
                peak = lap.max()
                lap = lap * (255.0 / peak) if peak > 0 else lap
            else:
                lap = lap / 4.0
            out[i] = np.clip(np.round(lap), 0, 255).astype(np.uint8)
        return out


@_register
class Contrast(Preprocessor):
    """Linear stretch of the [low, high] percentiles to [0, 255], then gamma.

    low/high null skips the stretch; gamma 1 skips the power curve (out = 255 (x/255)^gamma).
    """

    name = "contrast"
    defaults = {"low": 1.0, "high": 99.0, "gamma": 1.0}

    def check_params(self, key):
        p = self.params
        if (p["low"] is None) != (p["high"] is None):
            raise ConfigError(f"{key}: contrast needs both 'low' and 'high', or neither")
        if p["low"] is not None:
            p["low"] = _number(key, self.name, "low", p["low"], 0, 100)
            p["high"] = _number(key, self.name, "high", p["high"], 0, 100)
            if p["low"] >= p["high"]:
                raise ConfigError(f"{key}: contrast 'low' must be below 'high', got {p}")
        p["gamma"] = _number(key, self.name, "gamma", p["gamma"], 1e-3, 100)

    def transform(self, images):
        images = _batch(images)
        p = self.params
        out = np.empty_like(images)
        for i, image in enumerate(images):
            x = image.astype(np.float32)
            if p["low"] is not None:
                lo, hi = np.percentile(x, [p["low"], p["high"]])
                if hi > lo:
                    x = np.clip((x - lo) * (255.0 / (hi - lo)), 0, 255)
            if p["gamma"] != 1.0:
                x = 255.0 * (x / 255.0) ** p["gamma"]
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
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    steps = []
    valid = ", ".join(PREPROCESSORS)
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(spec, (list, tuple)) else key
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and "name" in item:
            params = dict(item)
            name = params.pop("name")
        else:
            raise ConfigError(
                f"{where}: a step must be a name or a mapping with 'name', got {item!r}; "
                f"valid names: {valid}"
            )
        if name not in PREPROCESSORS:
            close = difflib.get_close_matches(str(name), list(PREPROCESSORS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown step {name!r}{hint}; valid names: {valid}")
        steps.append(PREPROCESSORS[name](key=where, **params))
    return Pipeline(steps)
