"""Extractor base class, the registry, spec parsing and region masking."""

import copy
import difflib
import importlib.metadata

import numpy as np

from gantrace import __version__
from gantrace.errors import ConfigError

FEATURES: dict[str, type] = {}
REGIONS = ("full", "lung", "outer")


def register(cls):
    """Class decorator: add an extractor to `FEATURES` under its `name`."""
    FEATURES[cls.name] = cls
    return cls


def suggest(word, choices):
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_extractor(spec):
    """Build an extractor from a config mapping such as {"extractor": "pixels", "size": 32}."""
    if not isinstance(spec, dict):
        raise ConfigError(f"features spec must be a mapping, got {type(spec).__name__}: {spec!r}")
    params = dict(spec)
    name = params.pop("extractor", None)
    valid = ", ".join(sorted(FEATURES))
    if name is None:
        raise ConfigError(
            f"features spec {spec!r} has no 'extractor' key; valid extractors: {valid}"
        )
    if name not in FEATURES:
        raise ConfigError(
            f"features spec: unknown extractor '{name}'{suggest(name, FEATURES)}; "
            f"valid extractors: {valid}"
        )
    return FEATURES[name](**params)


def library_versions(*names):
    """Installed versions of the named distributions (absent ones are left out)."""
    versions = {"gantrace": __version__}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def check_int(owner, key, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{owner}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(owner, key, value, choices):
    if value not in choices:
        raise ConfigError(
            f"{owner}: '{key}' must be one of {', '.join(map(str, choices))}, got {value!r}"
            f"{suggest(value, map(str, choices))}"
        )
    return value


def as_batch(images):
    """Return `images` as an (N, H, W) array; a single (H, W) image becomes a batch of one."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"expected greyscale images of shape (N, H, W), got {images.shape}")
    return images


class FeatureExtractor:
    """Maps a batch of uint8 greyscale images (N, H, W) to float32 features (N, D).

    Every parameter is a constructor keyword listed in `defaults`; an unknown keyword is a
    ConfigError naming it. Subclasses set `name`, `defaults` and implement `transform`.
    """

    name = "base"
    defaults: dict = {"batch_size": 64}
    uses_torch = False
    versions_of: tuple = ("numpy",)

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            key = unknown[0]
            raise ConfigError(
                f"features spec for extractor '{self.name}': unknown key '{key}'"
                f"{suggest(key, self.defaults)}; valid keys: extractor, "
                f"{', '.join(sorted(self.defaults))}"
            )
        self.params = {**copy.deepcopy(self.defaults), **params}
        self.params["batch_size"] = check_int(self.name, "batch_size", self.params["batch_size"])
        self.check_params()

    def check_params(self):
        """Validate `self.params`; raise ConfigError on a bad value."""

    @property
    def batch_size(self):
        return self.params["batch_size"]

    def get_params(self):
        return copy.deepcopy(self.params)

    def weights_description(self):
        return "none"

    def transform(self, images):
        raise NotImplementedError

    def provenance(self):
        return {
            "extractor": self.name,
            "params": self.get_params(),
            "weights": self.weights_description(),
            "versions": library_versions(*self.versions_of),
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{type(self).__name__}({args})"


def apply_region(images, masks, region):
    """Keep one region of each image: "full" (all), "lung" (inside mask), "outer" (outside).

    Returns uint8 images; pixels outside the kept region are 0. `images` is not modified.
    """
    check_choice("apply_region", "region", region, REGIONS)
    images = np.asarray(images)
    if region == "full":
        return images
    if masks is None:
        raise ConfigError(
            f"region '{region}' needs lung masks, but none were given; "
            "use region 'full' or run the segmentation step first"
        )
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != images.shape:
        raise ConfigError(f"masks of shape {masks.shape} do not match images {images.shape}")
    keep = masks if region == "lung" else ~masks
    return np.where(keep, images, np.zeros((), dtype=images.dtype))
