"""ViT encoders from transformers: BLIP and BLIP-2 vision towers, ViT-MAE (no masking).

Pretrained weights come from the Hugging Face cache (or a local from_pretrained folder);
only the vision tower's tensors are read from the checkpoint, so BLIP-2's language model
is never loaded. `size: tiny` is a 2-layer toy for tests and smoke runs; the defaults are
the real sizes.
"""

import json
from pathlib import Path

import torch

from gantrace.errors import ConfigError, WeightsError
from gantrace.features.base import FEATURES
from gantrace.features.deep import (
    FETCH_HINT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRETRAINED,
    TorchExtractor,
    hub_or_folder_weights,
    weights_source,
)
from gantrace.features.pretrained import hf_cache_dir, hf_cached_file
from gantrace.params import Interval, Options, check_value
from gantrace.torch_env import ensure_torchvision_ops

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # BLIP / BLIP-2 image processors
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
POOLS = ("cls", "mean", "cls_mean")


def _vit(hidden, layers, heads, mlp, patch, image):
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
        "patch_size": patch,
        "image_size": image,
    }


def _weight_files(folder):
    """Checkpoint files of a from_pretrained folder: safetensors first, else torch .bin."""
    folder = Path(folder)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            shards = json.loads((folder / index).read_text())["weight_map"].values()
            return [folder / name for name in sorted(set(shards))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [folder / single]
    return []


def load_tower(folder, prefix):
    """Tensors under `prefix` (stripped) from a checkpoint folder; all tensors if none are."""
    from safetensors import safe_open

    files = {}
    for path in _weight_files(folder):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                files[path] = list(f.keys())
        else:
            files[path] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    tower = any(k.startswith(prefix) for keys in files.values() for k in keys)
    state = {}
    for path, keys in files.items():
        wanted = [k for k in keys if k.startswith(prefix) or not tower]
        if isinstance(keys, dict):
            state.update({k: keys[k] for k in wanted})
        elif wanted:
            with safe_open(str(path), framework="pt") as f:
                state.update({k: f.get_tensor(k) for k in wanted})
    if tower:
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


class HFVisionExtractor(TorchExtractor):
    """A transformers ViT (config-built for `weights: none`); CLS token and/or mean patch token.

    Subclasses set the size table, hub repos, config/model classes and the checkpoint prefix
    of the vision tower.
    """

    sizes: dict = {}
    repos: dict = {}
    default_size = ""  # the real model (`size: null`); each subclass declares its sizes
    config_name = model_name = ""
    prefix = "vision_model."  # where the tower's tensors sit in the hub checkpoints
    versions_of = ("numpy", "torch", "transformers")
    _parameter_constraints = {"input_size": [None, Interval(int, 1)], "pool": [Options(*POOLS)]}

    def __init__(
        self,
        weights="none",
        size=None,
        input_size=None,
        pool="cls",
        batch_size=32,
        seed=0,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            weights=weights,
            size=self.default_size if size is None else size,
            input_size=input_size,
            pool=pool,
            batch_size=batch_size,
            seed=seed,
            preprocess=preprocess,
        )
        p, key = self.params, self.config_key
        patch = self.sizes[p["size"]]["patch_size"]
        if input_size is None:
            input_size = self.sizes[p["size"]]["image_size"]
        p["input_size"] = int(check_value(f"{key}.input_size", input_size, [Interval(int, patch)]))
        if p["input_size"] % patch:
            raise ConfigError(
                f"{key}: input_size {p['input_size']} is not a multiple of the "
                f"{self.name} {p['size']} patch size {patch}"
            )
        if p["weights"].lower() in PRETRAINED and p["size"] not in self.repos:
            raise ConfigError(
                f"{key}: {self.name} size {p['size']} has no pretrained weights "
                f"(it is for tests); use one of {', '.join(self.repos)} or weights: none"
            )

    def _classes(self):
        ensure_torchvision_ops()
        import transformers

        return getattr(transformers, self.config_name), getattr(transformers, self.model_name)

    def _source(self):
        """("none", None), ("hub", repo id) or ("dir", local path)."""
        default = self.repos.get(self.params["size"], next(iter(self.repos.values())))
        return weights_source(self.name, self.params["weights"], default)

    def _folder(self):
        """The local folder holding config.json and the checkpoint (no network)."""
        kind, where = self._source()
        if kind == "dir":
            folder = where
        else:
            found = hf_cached_file(where)
            if found is None:
                raise WeightsError(
                    f"{self.name} weights {where} are not in the Hugging Face cache "
                    f"{hf_cache_dir()}. To get them, {FETCH_HINT}, or set HF_HOME to a "
                    "cache that holds them"
                )
            folder = found.parent
        if not (folder / "config.json").is_file() or not _weight_files(folder):
            raise WeightsError(
                f"{self.name}: {folder} lacks config.json or model weights (.safetensors or "
                f"pytorch_model.bin). To get them, {FETCH_HINT}"
            )
        return folder

    def check_weights(self):
        if self._source()[0] != "none":
            self._folder()

    def required_weights(self):
        return hub_or_folder_weights(self.params["weights"], self._source)

    def weights_description(self):
        kind, where = self._source()
        if kind == "none":
            return f"none(seed={self.params['seed']})"
        return f"{kind}:{where}"

    def random_config(self, config_cls):
        cfg = dict(self.sizes[self.params["size"]], image_size=self.params["input_size"])
        return config_cls(**cfg, initializer_range=0.02)

    def build_model(self):
        config_cls, model_cls = self._classes()
        if self._source()[0] == "none":
            return model_cls(self.random_config(config_cls))
        return self.load_pretrained(self._folder(), config_cls, model_cls)

    def load_pretrained(self, folder, config_cls, model_cls):
        """The vision tower of a full BLIP / BLIP-2 checkpoint (its keys are stable)."""
        cfg = json.loads((folder / "config.json").read_text())
        model = model_cls(config_cls.from_dict(cfg.get("vision_config", cfg)))
        state = load_tower(folder, self.prefix)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{folder} does not fit {self.model_name}: {exc}") from exc
        return model

    def tokens(self, x, interpolate):
        """(CLS token (N, D), patch tokens (N, L, D))."""
        out = self.model(pixel_values=x, interpolate_pos_encoding=interpolate)
        return out.pooler_output, out.last_hidden_state[:, 1:]

    def forward_features(self, x):
        interpolate = x.shape[-1] != self.model.config.image_size
        cls, patches = self.tokens(x, interpolate)
        pool = self.params["pool"]
        if pool == "cls":
            return cls
        if pool == "mean":
            return patches.mean(dim=1)
        return torch.cat([cls, patches.mean(dim=1)], dim=1)


@FEATURES.register
class BlipExtractor(HFVisionExtractor):
    """BLIP vision encoder (ViT-B/16 or ViT-L/16 of the captioning models, 384 px native)."""

    name = "blip"
    sizes = {
        "base": _vit(768, 12, 12, 3072, 16, 384),
        "large": _vit(1024, 24, 16, 4096, 16, 384),
        "tiny": _vit(64, 2, 2, 128, 16, 64),
    }
    default_size = "base"
    _parameter_constraints = {"size": [None, Options(*sizes)]}
    repos = {
        "base": "Salesforce/blip-image-captioning-base",
        "large": "Salesforce/blip-image-captioning-large",
    }
    config_name, model_name = "BlipVisionConfig", "BlipVisionModel"
    norm_mean, norm_std = CLIP_MEAN, CLIP_STD


@FEATURES.register
class Blip2Extractor(HFVisionExtractor):
    """BLIP-2 vision encoder: EVA ViT-g/14 (39 layers, 1408-D) of Salesforce/blip2-opt-2.7b."""

    name = "blip2"
    sizes = {
        "g": {**_vit(1408, 39, 16, 6144, 14, 224), "qkv_bias": True},
        "tiny": _vit(64, 2, 2, 128, 14, 56),
    }
    default_size = "g"
    _parameter_constraints = {"size": [None, Options(*sizes)]}
    repos = {"g": "Salesforce/blip2-opt-2.7b"}
    config_name, model_name = "Blip2VisionConfig", "Blip2VisionModel"
    norm_mean, norm_std = CLIP_MEAN, CLIP_STD


@FEATURES.register
class VitMaeExtractor(HFVisionExtractor):
    """ViT-MAE encoder with mask_ratio 0 (every patch seen), patches kept in order."""

    name = "vit_mae"
    sizes = {
        "base": _vit(768, 12, 12, 3072, 16, 224),
        "large": _vit(1024, 24, 16, 4096, 16, 224),
        "huge": _vit(1280, 32, 16, 5120, 14, 224),
        "tiny": _vit(64, 2, 2, 128, 16, 64),
    }
    default_size = "base"
    _parameter_constraints = {"size": [None, Options(*sizes)]}
    repos = {s: f"facebook/vit-mae-{s}" for s in ("base", "large", "huge")}
    config_name, model_name = "ViTMAEConfig", "ViTMAEModel"
    norm_mean, norm_std = IMAGENET_MEAN, IMAGENET_STD

    def random_config(self, config_cls):
        cfg = super().random_config(config_cls)
        cfg.mask_ratio = 0.0
        return cfg

    def load_pretrained(self, folder, config_cls, model_cls):
        # MAE checkpoints use the old ViT key names: transformers' own loader renames them.
        config = config_cls.from_pretrained(str(folder), mask_ratio=0.0)
        model, info = model_cls.from_pretrained(
            str(folder), config=config, output_loading_info=True
        )
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            raise WeightsError(
                f"{folder} does not fit {self.model_name}: {len(missing)} tensors missing, "
                f"e.g. {', '.join(missing[:4])}"
            )
        return model

    def tokens(self, x, interpolate):
        n_patches = (x.shape[-2] // self.model.config.patch_size) * (
            x.shape[-1] // self.model.config.patch_size
        )
        # ascending noise = identity shuffle: no random draw, patches stay in place
        noise = torch.arange(n_patches, device=x.device, dtype=torch.float32).expand(len(x), -1)
        out = self.model(pixel_values=x, noise=noise, interpolate_pos_encoding=interpolate)
        tokens = out.last_hidden_state
        return tokens[:, 0], tokens[:, 1:]
