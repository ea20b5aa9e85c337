"""Any timm model by name, classifier removed (`num_classes=0`): its pooled features.

ImageNet weights are read from the local caches only: the Hugging Face hub cache for
models whose timm config names a hub repo (most), the torch hub cache for URL-only ones
(e.g. `legacy_xception`). `snakemake fetch_weights` fills either.
"""

import os

from gantrace.errors import ConfigError, WeightsError
from gantrace.features.base import check_int, register, suggest
from gantrace.features.deep import (
    FETCH_HINT,
    PRETRAINED,
    TorchExtractor,
    local_weights_file,
)
from gantrace.features.pretrained import WeightsEntry, hf_cache_dir, hf_cached_file, torch_hub_file
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


@register
class TimmExtractor(TorchExtractor):
    """Pooled penultimate features of a timm model (e.g. legacy_xception, inception_resnet_v2).

    `model` is a timm name, optionally with a pretrained tag (`xception41.tf_in1k`);
    `input_size` null means the model's native size; inputs are normalised with the
    model's own mean/std.
    """

    name = "timm"
    defaults = {
        "model": "legacy_xception",
        "weights": "none",
        "input_size": None,
        "batch_size": 32,
        "seed": 0,
    }
    versions_of = ("numpy", "torch", "timm")

    def check_params(self):
        p = self.params
        timm = _timm()
        if not isinstance(p["model"], str) or not timm.models.is_model(p["model"]):
            names = timm.list_models()
            raise ConfigError(
                f"{self.config_key}: timm has no model {p['model']!r}"
                f"{suggest(p['model'], names)} (see timm.list_models())"
            )
        cfg = timm.models.get_pretrained_cfg(p["model"])
        native = cfg.input_size[-1] if cfg is not None else 224
        if p["input_size"] is None:
            p["input_size"] = int(native)
        # ViT-like models fix their grid at build time: build them for the size asked for
        self._img_size = p["input_size"] if cfg is not None and cfg.fixed_input_size else None
        p["input_size"] = check_int(self.name, "input_size", p["input_size"], minimum=16)
        p["seed"] = check_int(self.name, "seed", p["seed"], minimum=0)
        if cfg is not None and len(cfg.mean) == 3:
            self.norm_mean, self.norm_std = tuple(cfg.mean), tuple(cfg.std)
        if not isinstance(p["weights"], (str, os.PathLike)):
            raise ConfigError(f"timm: 'weights' must be a string, got {p['weights']!r}")
        p["weights"] = str(p["weights"])

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
