"""CNN and ViT embeddings: torchvision classifiers without their head, and DINOv2.

torchvision and transformers are imported lazily, after `ensure_torchvision_ops()`.
"""

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gantrace.errors import ConfigError, WeightsError
from gantrace.features.base import FEATURES, FeatureExtractor, as_batch
from gantrace.features.pretrained import WeightsEntry, hf_cache_dir, hf_cached_file, torch_hub_file
from gantrace.params import InstanceOf, Interval, Options, suggest
from gantrace.torch_env import autocast, ensure_torchvision_ops

# ImageNet per-channel mean and std of [0, 1] RGB: the input normalisation of torchvision's
# pretrained models (and of the fine-tuned CNNs in features.finetuned)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED = ("imagenet", "pretrained", "default")
FETCH_HINT = "run `snakemake fetch_weights` on a machine with internet access"


class TorchExtractor(FeatureExtractor):
    """A torch model applied to greyscale images replicated to 3 ImageNet-normalised channels.

    The model is built on first use (or by `to`); a random-init model is seeded from the
    `seed` parameter without touching the global RNG, so features are reproducible.
    """

    uses_torch = True
    versions_of = ("numpy", "torch")
    norm_mean, norm_std = IMAGENET_MEAN, IMAGENET_STD  # per-channel input normalisation
    _parameter_constraints = {
        "weights": [InstanceOf(str, os.PathLike, what="a string")],
        "seed": [Interval(int, 0)],
    }

    def __init__(self, config_key=None, **params):
        super().__init__(config_key, **params)
        self.params["weights"] = str(params["weights"])
        self.params["seed"] = int(params["seed"])
        self._model = None
        self._consts = None
        self.device = torch.device("cpu")

    def build_model(self):
        """Return the feature model (eval mode) with its weights loaded."""
        raise NotImplementedError

    def forward_features(self, x):
        """Float (N, 3, S, S) normalised input -> (N, D) features."""
        return self.model(x)

    @property
    def model(self):
        if self._model is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.params["seed"])
                model = self.build_model()
            model.eval().requires_grad_(False)
            self._model = model.to(self.device)
        return self._model

    def to(self, device):
        """Move the model (building it if needed) to `device`; channels_last on CUDA."""
        self.device = torch.device(device)
        model = self.model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self._model = model
        self._consts = None
        return self

    def _affine(self):
        if self._consts is None:
            mean = torch.tensor(self.norm_mean, dtype=torch.float32)
            std = torch.tensor(self.norm_std, dtype=torch.float32)
            scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self.device)
            shift = (-mean / std).view(1, 3, 1, 1).to(self.device)
            self._consts = (scale, shift)
        return self._consts

    def prepare(self, images):
        """uint8 (N, H, W) tensor -> float (N, 3, S, S) resized, ImageNet-normalised."""
        x = images.to(self.device, non_blocking=True).unsqueeze(1).float()
        size = self.params["input_size"]
        h, w = x.shape[-2:]
        if (h, w) != (size, size):
            shrink = h > size or w > size
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
            )
        scale, shift = self._affine()
        x = torch.addcmul(shift, x, scale)  # one pass: grey -> 3 normalised channels
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward_batch(self, images):
        """uint8 (N, H, W) tensor -> float32 (N, D) tensor on the extractor's device."""
        self.model  # noqa: B018 - build outside inference mode (its tensors stay ordinary)
        with torch.inference_mode():
            x = self.prepare(images)
            with autocast(self.device):
                feats = self.forward_features(x)
            return feats.float()

    def extract(self, images):
        images = np.ascontiguousarray(as_batch(images), dtype=np.uint8)
        if not len(images):
            return np.zeros((0, 0), dtype=np.float32)
        bs = self.batch_size
        out = [
            self.forward_batch(torch.from_numpy(images[i : i + bs])).cpu().numpy()
            for i in range(0, len(images), bs)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_consts"] = None
        return state


# -- torchvision ---------------------------------------------------------------------------------


def _is_linear(m):
    return isinstance(m, nn.Linear)


class _PooledFeatures(nn.Module):
    """`features` trunk followed by global average pooling (VGG, AlexNet, SqueezeNet, ...)."""

    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)


def strip_head(model, arch):
    """Turn a torchvision classifier into a model returning its penultimate pooled features."""
    fc = getattr(model, "fc", None)
    if _is_linear(fc):  # ResNet, Inception, GoogLeNet, RegNet, ShuffleNet
        model.fc = nn.Identity()
        return model
    for attr in ("classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if _is_linear(head):  # DenseNet, Swin
            setattr(model, attr, nn.Identity())
            return model
        if isinstance(head, nn.Sequential):
            linears = [i for i, m in enumerate(head) if _is_linear(m)]
            # A single final Linear after pooling/norm/dropout (MobileNetV2, EfficientNet,
            # ConvNeXt, ViT): drop just that layer.
            if linears == [len(head) - 1]:
                head[-1] = nn.Identity()
                return model
            # A multi-layer head on a conv trunk (VGG, AlexNet, MobileNetV3, SqueezeNet):
            # global-average-pool the trunk instead.
            if hasattr(model, "features"):
                return _PooledFeatures(model.features)
            if linears:  # e.g. MaxViT: keep the pre-logits block
                head[linears[-1]] = nn.Identity()
                for i in range(linears[-1] + 1, len(head)):
                    head[i] = nn.Identity()
                return model
    raise ConfigError(f"torchvision: don't know how to remove the classifier head of '{arch}'")


def _torchvision_models():
    ensure_torchvision_ops()
    import torchvision.models

    return torchvision.models


def load_state_dict_file(path):
    """A state_dict from .pth/.pt (weights_only) or .safetensors, unwrapped and de-prefixed."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a weights problem
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state_dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def local_weights_file(weights, model, accepted):
    """The local weights file a spec names, or a WeightsError naming it and what is accepted."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"{model}: weights file {path} does not exist (weights must be {accepted})"
        )
    return path


@FEATURES.register
class TorchvisionExtractor(TorchExtractor):
    """Penultimate global-pooled features of a torchvision classification model."""

    name = "torchvision"
    versions_of = ("numpy", "torch", "torchvision")
    _parameter_constraints = {"arch": [str], "input_size": [Interval(int, 16)]}

    def __init__(
        self,
        arch="densenet121",
        weights="none",
        input_size=224,
        batch_size=32,
        seed=0,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            arch=arch,
            weights=weights,
            input_size=input_size,
            batch_size=batch_size,
            seed=seed,
            preprocess=preprocess,
        )
        self.params["input_size"] = int(input_size)
        models = _torchvision_models()
        archs = models.list_models(module=models)
        if arch not in archs:
            raise ConfigError(
                f"{self.config_key}.arch: unknown torchvision arch '{arch}'"
                f"{suggest(arch, archs)}; valid archs: {', '.join(archs)}"
            )
        if arch == "inception_v3" and input_size < 75:
            raise ConfigError(f"{self.config_key}.input_size: inception_v3 needs >= 75")

    def _weights_enum(self):
        """The torchvision weights enum member asked for, or None for "none" / a file."""
        w = self.params["weights"]
        is_name = w.isupper() and not any(c in w for c in "/\\.~")  # e.g. IMAGENET1K_V2
        if w == "none" or (w.lower() not in PRETRAINED and not is_name):
            return None
        enum = _torchvision_models().get_model_weights(self.params["arch"])
        if w.lower() in PRETRAINED:
            return enum.DEFAULT
        try:
            return enum[w]
        except KeyError:
            raise ConfigError(
                f"torchvision: {self.params['arch']} has no weights '{w}'; "
                f"valid: none, imagenet, {', '.join(enum.__members__)} or a .pth/.safetensors path"
            ) from None

    def check_weights(self):
        w = self.params["weights"]
        member = self._weights_enum()
        if member is not None:
            path = torch_hub_file(member.url)
            if not path.is_file():
                raise WeightsError(
                    f"torchvision {self.params['arch']} weights {type(member).__name__}."
                    f"{member.name} are not available offline: expected {path}. To get them, "
                    f"{FETCH_HINT}, or copy {member.url} to {path}; or point TORCH_HOME at a "
                    "cache that holds them"
                )
            self._weights_file = path
        elif w != "none":
            self._weights_file = local_weights_file(
                w,
                f"torchvision {self.params['arch']}",
                "none, imagenet or a local .pth/.pt/.safetensors state_dict",
            )
        else:
            self._weights_file = None

    def required_weights(self):
        member = self._weights_enum()
        if member is not None:
            name = f"{type(member).__name__}.{member.name}"
            return [WeightsEntry.torch_hub(member.url, self.params["arch"], name)]
        w = self.params["weights"]
        return [] if w == "none" else [WeightsEntry.local(w)]

    def weights_description(self):
        member = self._weights_enum()
        if member is not None:
            return f"torchvision:{type(member).__name__}.{member.name}"
        if self._weights_file is not None:
            return f"file:{self._weights_file}"
        return f"none(seed={self.params['seed']})"

    def build_model(self):
        models = _torchvision_models()
        arch = self.params["arch"]
        member = self._weights_enum()
        kwargs = {}
        if member is None and arch in ("inception_v3", "googlenet"):
            kwargs = {"init_weights": True, "aux_logits": False}
        try:
            model = models.get_model(arch, weights=member, **kwargs)
        except (RuntimeError, OSError, EOFError) as exc:  # a truncated or foreign checkpoint
            if member is None:
                raise
            raise WeightsError(f"cannot load {self._weights_file} for {arch}: {exc}") from exc
        if getattr(model, "aux_logits", False):  # ImageNet Inception/GoogLeNet: drop aux heads
            model.aux_logits = False
            for aux in ("AuxLogits", "aux1", "aux2"):
                if hasattr(model, aux):
                    setattr(model, aux, None)
        model = strip_head(model, arch)
        if member is None and self._weights_file is not None:
            state = load_state_dict_file(self._weights_file)
            try:
                missing, _ = model.load_state_dict(state, strict=False)
            except RuntimeError as exc:
                raise WeightsError(f"{self._weights_file} does not fit {arch}: {exc}") from exc
            if missing:
                raise WeightsError(
                    f"{self._weights_file} does not fit {arch}: {len(missing)} parameters "
                    f"missing, e.g. {', '.join(missing[:5])}"
                )
        return model


# -- DINOv2 --------------------------------------------------------------------------------------

DINOV2_SIZES = {
    "small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    "giant": {
        "hidden_size": 1536,
        "num_hidden_layers": 40,
        "num_attention_heads": 24,
        "use_swiglu_ffn": True,
    },
}
DINOV2_OVERRIDES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")


def weights_source(owner, weights, default_repo):
    """Where a transformers model's weights come from: ("none", None), ("hub", repo id) for
    `imagenet` (the default repo) or an `org/name` id, or ("dir", path) for a local folder."""
    if weights == "none":
        return "none", None
    if weights.lower() in PRETRAINED:
        return "hub", default_repo
    path = Path(weights).expanduser()
    if path.exists():
        return "dir", path
    if weights.count("/") == 1 and not weights.startswith((".", "/", "~")):
        return "hub", weights
    raise WeightsError(
        f"{owner}: weights directory {path} does not exist (weights must be none, imagenet, "
        f"a hub id such as {default_repo}, or a local from_pretrained directory)"
    )


def hub_or_folder_weights(weights, source):
    """`required_weights()` of a transformers model: the hub repo that `source()` names,
    or the local folder `weights` names (reported missing when it is not there)."""
    if weights == "none":
        return []
    try:
        kind, where = source()
    except WeightsError:  # a folder that does not exist
        return [WeightsEntry.local(weights)]
    return [WeightsEntry.local(weights) if kind == "dir" else WeightsEntry.hf_repo(where)]


@FEATURES.register
class Dinov2Extractor(TorchExtractor):
    """DINOv2 ViT: CLS token (pooler output) concatenated with the mean patch token."""

    name = "dinov2"
    versions_of = ("numpy", "torch", "transformers")
    _parameter_constraints = {
        "size": [Options(*DINOV2_SIZES)],
        "input_size": [Interval(int, 14)],
        **{key: [None, Interval(int, 1)] for key in (*DINOV2_OVERRIDES, "image_size")},
    }

    def __init__(
        self,
        weights="none",
        size="small",
        input_size=224,
        batch_size=32,
        seed=0,
        hidden_size=None,
        num_hidden_layers=None,
        num_attention_heads=None,
        patch_size=None,
        image_size=None,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            weights=weights,
            size=size,
            input_size=input_size,
            batch_size=batch_size,
            seed=seed,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            patch_size=patch_size,
            image_size=image_size,
            preprocess=preprocess,
        )
        p = self.params
        p["input_size"] = int(input_size)
        set_overrides = [k for k in (*DINOV2_OVERRIDES, "image_size") if p[k] is not None]
        for key in set_overrides:
            p[key] = int(p[key])
        if p["weights"] != "none" and set_overrides:
            raise ConfigError(
                f"{self.config_key}: {', '.join(set_overrides)} can only be set with "
                "weights: none (pretrained weights bring their own config)"
            )
        if p["hidden_size"] is not None or p["num_attention_heads"] is not None:
            cfg = self._config_kwargs()
            if cfg["hidden_size"] % cfg["num_attention_heads"]:
                raise ConfigError(
                    f"{self.config_key}: dinov2 hidden_size {cfg['hidden_size']} is not a "
                    f"multiple of num_attention_heads {cfg['num_attention_heads']}"
                )

    def _config_kwargs(self):
        cfg = dict(DINOV2_SIZES[self.params["size"]])
        for key in (*DINOV2_OVERRIDES, "image_size"):
            if self.params[key] is not None:
                cfg[key] = self.params[key]
        return cfg

    def _source(self):
        """("none", None), ("hub", repo id) or ("dir", local path)."""
        repo = f"facebook/dinov2-{self.params['size']}"
        return weights_source(self.name, self.params["weights"], repo)

    def _hub_error(self, repo, detail=""):
        return WeightsError(
            f"dinov2 weights {repo} are not in the Hugging Face cache {hf_cache_dir()}{detail}. "
            f"To get them, {FETCH_HINT}, or set HF_HOME to a cache that holds them"
        )

    def check_weights(self):
        kind, where = self._source()
        if kind == "dir" and not (where / "config.json").is_file():
            raise WeightsError(f"dinov2: {where} has no config.json (not a from_pretrained dir)")
        if kind == "hub" and hf_cached_file(where) is None:
            raise self._hub_error(where)

    def required_weights(self):
        return hub_or_folder_weights(self.params["weights"], self._source)

    def weights_description(self):
        kind, where = self._source()
        if kind == "none":
            return f"none(seed={self.params['seed']})"
        return f"{kind}:{where}"

    def build_model(self):
        ensure_torchvision_ops()
        from transformers import AutoModel, Dinov2Config, Dinov2Model

        kind, where = self._source()
        if kind == "none":
            return Dinov2Model(Dinov2Config(**self._config_kwargs()))
        if kind == "dir":
            return AutoModel.from_pretrained(str(where))
        try:
            return AutoModel.from_pretrained(where, local_files_only=True, cache_dir=hf_cache_dir())
        except OSError as exc:
            raise self._hub_error(where, f" ({exc})") from exc

    def forward_features(self, x):
        out = self.model(pixel_values=x)
        tokens = out.last_hidden_state
        n_reg = getattr(self.model.config, "num_register_tokens", 0) or 0
        patches = tokens[:, 1 + n_reg :]
        return torch.cat([out.pooler_output, patches.mean(dim=1)], dim=1)
