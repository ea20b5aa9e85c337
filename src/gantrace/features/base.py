"""Extractor base class, the registry, spec parsing and region masking."""

import copy
import difflib
import importlib.metadata

import numpy as np

from gantrace import __version__
from gantrace.errors import ConfigError
from gantrace.preprocess import build_preprocessor

FEATURES: dict[str, type] = {}
REGIONS = ("full", "lung", "outer")


def register(cls):
    """Class decorator: add an extractor to `FEATURES` under its `name`."""
    FEATURES[cls.name] = cls
    return cls


def suggest(word, choices):
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _spec_class(spec, key):
    if not isinstance(spec, dict):
        raise ConfigError(f"{key} must be a mapping, got {type(spec).__name__}: {spec!r}")
    params = dict(spec)
    name = params.pop("extractor", None)
    valid = ", ".join(sorted(FEATURES))
    if name is None:
        raise ConfigError(f"{key} {spec!r} has no 'extractor' key; valid extractors: {valid}")
    if name not in FEATURES:
        raise ConfigError(
            f"{key}: unknown extractor '{name}'{suggest(name, FEATURES)}; valid extractors: {valid}"
        )
    return FEATURES[name], params


def build_extractor(spec, key="features spec"):
    """Build an extractor from a config mapping such as {"extractor": "pixels", "size": 32}.

    `key` names the spec in errors, e.g. "features.r50" (then a bad preprocessing step is
    reported as "features.r50.preprocess").
    """
    cls, params = _spec_class(spec, key)
    return cls(config_key=key, **params)


def check_spec(spec, key="features spec"):
    """Validate a spec without touching weights: the extractor, its weights not checked."""
    cls, params = _spec_class(spec, key)
    return cls.bare(params, config_key=key)


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

    Every parameter is a constructor keyword listed in `defaults` (plus `preprocess`, a
    `gantrace.preprocess` spec, for every extractor); an unknown keyword is a ConfigError
    naming it. Subclasses set `name`, `defaults` and implement `extract`.
    """

    name = "base"
    defaults: dict = {"batch_size": 64}
    uses_torch = False
    versions_of: tuple = ("numpy",)

    def __init__(self, *, config_key="features spec", **params):
        self._setup(params, config_key)
        self.check_weights()

    @classmethod
    def bare(cls, params, config_key="features spec"):
        """The extractor with its params validated but its weights not looked for."""
        obj = cls.__new__(cls)
        obj._setup(dict(params), config_key)
        return obj

    def _setup(self, params, config_key):
        self.config_key = config_key
        unknown = sorted(set(params) - set(self.defaults) - {"preprocess"})
        if unknown:
            key = unknown[0]
            raise ConfigError(
                f"{config_key} (extractor '{self.name}'): unknown key '{key}'"
                f"{suggest(key, [*self.defaults, 'preprocess'])}; valid keys: extractor, "
                f"{', '.join(sorted([*self.defaults, 'preprocess']))}"
            )
        self.params = {**copy.deepcopy(self.defaults), **params}
        self.params["batch_size"] = check_int(self.name, "batch_size", self.params["batch_size"])
        self.preprocessor = build_preprocessor(
            self.params.get("preprocess"), key=f"{config_key}.preprocess"
        )
        self.params["preprocess"] = self.preprocessor.spec()
        self.check_params()

    def check_params(self):
        """Validate `self.params`; raise ConfigError on a bad value."""

    def check_weights(self):
        """Fail fast (WeightsError) when the weights asked for are not available here."""

    def required_weights(self):
        """The pretrained weights this extractor loads, as `features.pretrained.WeightsEntry`
        records (what to fetch, where it is cached, whether it is here), found without
        loading or downloading anything; works on a `bare` extractor. None here."""
        return []

    @property
    def batch_size(self):
        return self.params["batch_size"]

    def get_params(self):
        return copy.deepcopy(self.params)

    def weights_description(self):
        return "none"

    def transform(self, images, masks=None, region="full"):
        """Features of uint8 (N, H, W) images: preprocess, keep `region`, extract.

        The same order as the shard runner, so library and workflow give the same numbers.
        """
        images = as_batch(images)
        if self.preprocessor:
            images = self.preprocessor.transform(images)
        return self.extract(apply_region(images, masks, region))

    def extract(self, images):
        """Features of images already preprocessed and region-masked."""
        raise NotImplementedError

    def provenance(self):
        return {
            "extractor": self.name,
            "params": self.get_params(),
            "preprocess": self.preprocessor.spec(),
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
