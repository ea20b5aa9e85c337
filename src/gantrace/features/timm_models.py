"""Any timm model by name, classifier removed (`num_classes=0`): its pooled features.

ImageNet weights are read from the local caches only: the Hugging Face hub cache for
models whose timm config names a hub repo (most), the torch hub cache for URL-only ones
(e.g. `legacy_xception`). `snakemake fetch_weights` fills either.
"""

from gantrace.errors import ConfigError, WeightsError
from gantrace.features.base import FEATURES
from gantrace.features.deep import (
    FETCH_HINT,
    PRETRAINED,
    TorchExtractor,
    local_weights_file,
)
from gantrace.features.pretrained import WeightsEntry, hf_cache_dir, hf_cached_file, torch_hub_file
from gantrace.params import Interval, check_value, suggest
from gantrace.torch_env import ensure_torchvision_ops

TIMM_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm():
    ensure_torchvision_ops()
    import timm

    return timm


def timm_pretrained_source(model):
    """Where timm keeps `model`'s pretrained weights: ("hf", repo, files) or ("url", url, path)."""
    cfg = _timm().models.get_pretrained_cfg(model)
    if cfg is not None and cfg.hf_hub_id:
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else TIMM_HUB_FILES
        return "hf", cfg.hf_hub_id, files
    if cfg is not None and cfg.url:
        return "url", cfg.url, torch_hub_file(cfg.url)
    raise ConfigError(f"timm: {model} has no pretrained weights; use weights: none or a file")


@FEATURES.register
class TimmExtractor(TorchExtractor):
    """Pooled penultimate features of a timm model (e.g. legacy_xception, inception_resnet_v2).

    `model` is a timm name, optionally with a pretrained tag (`xception41.tf_in1k`);
    `input_size` null means the model's native size; inputs are normalised with the
    model's own mean/std.
    """

    name = "timm"
    versions_of = ("numpy", "torch", "timm")
    _parameter_constraints = {"model": [str], "input_size": [None, Interval(int, 16)]}

    def __init__(
        self,
        model="legacy_xception",
        weights="none",
        input_size=None,
        batch_size=32,
        seed=0,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            model=model,
            weights=weights,
            input_size=input_size,
            batch_size=batch_size,
            seed=seed,
            preprocess=preprocess,
        )
        timm = _timm()
        if not timm.models.is_model(model):
            raise ConfigError(
                f"{self.config_key}.model: timm has no model {model!r}"
                f"{suggest(model, timm.list_models())} (see timm.list_models())"
            )
        cfg = timm.models.get_pretrained_cfg(model)
        if input_size is None:
            native = int(cfg.input_size[-1] if cfg is not None else 224)
            input_size = check_value(f"{self.config_key}.input_size", native, [Interval(int, 16)])
        self.params["input_size"] = int(input_size)
        # ViT-like models fix their grid at build time: build them for the size asked for
        self._img_size = (
            self.params["input_size"] if cfg is not None and cfg.fixed_input_size else None
        )
        if cfg is not None and len(cfg.mean) == 3:
            self.norm_mean, self.norm_std = tuple(cfg.mean), tuple(cfg.std)

    def pretrained(self):
        return self.params["weights"].lower() in PRETRAINED

    def check_weights(self):
        w, model = self.params["weights"], self.params["model"]
        self._weights_file = None
        if w == "none":
            return
        if not self.pretrained():
            self._weights_file = local_weights_file(
                w, f"timm {model}", "none, imagenet or a local .pth/.safetensors state_dict"
            )
            return
        kind, where, files = timm_pretrained_source(model)
        found = hf_cached_file(where, files) if kind == "hf" else files
        if found is None or not found.is_file():
            place = f"the Hugging Face cache {hf_cache_dir()}" if kind == "hf" else str(files)
            raise WeightsError(
                f"timm {model} ImageNet weights ({where}) are not available offline in "
                f"{place}. To get them, {FETCH_HINT}"
            )
        self._weights_file = found

    def required_weights(self):
        w, model = self.params["weights"], self.params["model"]
        if w == "none":
            return []
        if not self.pretrained():
            return [WeightsEntry.local(w)]
        kind, where, files = timm_pretrained_source(model)
        if kind == "hf":
            return [WeightsEntry.hf_repo(where, files, allow_patterns=("*.json", *files))]
        return [WeightsEntry.torch_hub(where, f"timm {model}", "ImageNet", source="url")]

    def weights_description(self):
        if self._weights_file is None:
            return f"none(seed={self.params['seed']})"
        if self.pretrained():
            return f"timm:{self.params['model']}:{self._weights_file.name}"
        return f"file:{self._weights_file}"

    def build_model(self):
        timm = _timm()
        kwargs = {"num_classes": 0}
        if self._img_size is not None:
            kwargs["img_size"] = self._img_size
        if self._weights_file is not None:
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(self._weights_file)})
        try:
            return timm.create_model(self.params["model"], **kwargs)
        except (RuntimeError, OSError, EOFError, KeyError) as exc:
            if self._weights_file is None:
                raise
            raise WeightsError(
                f"cannot load {self._weights_file} into timm {self.params['model']}: {exc}"
            ) from exc
