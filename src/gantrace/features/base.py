"""Extractor base class, the registry, spec parsing and region masking."""

import copy
import importlib.metadata

import numpy as np

from gantrace import __version__
from gantrace.config import renamed_keys
from gantrace.errors import ConfigError
from gantrace.params import InstanceOf, Interval, Options, Part, check_value, validate
from gantrace.preprocess import build_preprocessor
from gantrace.registry import KEY, Registry, spec_name

FEATURES = Registry("extractor")
REGIONS = ("full", "lung", "outer")
SPEC_KEY = "features spec"  # names a spec in errors when the caller gives no config key


def _spec(spec, key):
    """The spec itself, unless it still names its extractor with the old `extractor` key."""
    problem = next(renamed_keys(key, spec), None)
    if problem:
        raise ConfigError(problem)
    return spec


def check_spec(spec, key=SPEC_KEY):
    """The extractor a spec such as {"name": "pixels", "size": 32} asks for, its parameters
    checked but its weights not looked for (parse time: no file is needed yet).

    `key` names the spec in errors, e.g. "features.r50" (then a bad preprocessing step is
    reported as "features.r50.preprocess").
    """
    return FEATURES.create(_spec(spec, key), where=key, config_key=key)


def build_extractor(spec, key=SPEC_KEY):
    """`check_spec`, then fail fast (WeightsError) if its weights are not available here."""
    extractor = check_spec(spec, key)
    extractor.check_weights()
    return extractor


def library_versions(*names):
    """Installed versions of the named distributions (absent ones are left out)."""
    versions = {"gantrace": __version__}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def as_batch(images):
    """Return `images` as an (N, H, W) array; a single (H, W) image becomes a batch of one."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"expected greyscale images of shape (N, H, W), got {images.shape}")
    return images


class FeatureExtractor(Part):
    """Maps a batch of uint8 greyscale images (N, H, W) to float32 features (N, D).

    A subclass sets `name`, implements `extract` and declares its parameters once: as the
    keywords of its `__init__` (with their defaults) and what each accepts in
    `_parameter_constraints` (the base adds `batch_size` and `preprocess`, a
    `gantrace.preprocess` spec). The values live in `params`, normalised (names such as
    `model` and `parts` are taken by what an extractor builds from them). `config_key`
    names the spec in errors. Construction checks the parameters; `check_weights` then
    looks for the weights (`build_extractor` does both).
    """

    name = "base"
    uses_torch = False
    # trained on a dataset's images by the train_features rule, not extracted
    # shard by shard
    learned = False
    # a learned extractor that reads the data set's labels (finetuned), so it needs a
    # labelled data set (or train_from); False: trained without labels (contrastive)
    supervised = True
    # the extractors this one is made of (a concat's parts, a fine-tuned CNN's torchvision
    # trunks): their weights are its weights
    parts: tuple = ()
    versions_of: tuple = ("numpy",)
    _parameter_constraints = {
        "batch_size": [Interval(int, 1)],
        "preprocess": [None, InstanceOf(str, dict, list, tuple, what="a preprocessing spec")],
    }

    def __init__(self, config_key=None, **params):
        """Subclasses call this with their keywords: check, normalise, build the preprocessor."""
        self.config_key = config_key or self.name
        validate(self.config_key, params, self.constraints())
        self.params = params
        params["batch_size"] = int(params["batch_size"])
        self.preprocessor = build_preprocessor(
            params["preprocess"], key=f"{self.config_key}.preprocess"
        )
        params["preprocess"] = self.preprocessor.spec()

    def get_params(self):
        return copy.deepcopy(self.params)

    def _init_params(self):
        """The parameters as the constructor takes them back (see ConcatExtractor)."""
        return self.get_params()

    def set_params(self, **params):
        """Change some parameters: checked and normalised as in a new spec."""
        FEATURES.check_params(type(self), params, self.config_key, injected=("config_key",))
        self.__init__(**{**self._init_params(), **params}, config_key=self.config_key)
        return self

    def clone(self):
        """An unfitted copy with the same parameters, its weights looked for."""
        twin = type(self)(**self._init_params(), config_key=self.config_key)
        twin.check_weights()
        return twin

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
            "extractor": self.name,  # the feature files' attrs keep their key
            "params": self.get_params(),
            "preprocess": self.preprocessor.spec(),
            "weights": self.weights_description(),
            "versions": library_versions(*self.versions_of),
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{type(self).__name__}({args})"


def with_seed(spec, seed):
    """`spec` with `seed` set where its extractor takes one and the spec sets none."""
    spec = {KEY: spec} if isinstance(spec, str) else spec
    cls = FEATURES.get(spec_name(spec)) if isinstance(spec, dict) else None
    if cls is None or "seed" not in cls.param_names():
        return spec
    return {"seed": seed, **spec}


def apply_region(images, masks, region):
    """Keep one region of each image: "full" (all), "lung" (inside mask), "outer" (outside).

    Returns uint8 images; pixels outside the kept region are 0. `images` is not modified.
    """
    check_value("apply_region.region", region, [Options(*REGIONS)])
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
