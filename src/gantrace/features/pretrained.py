"""Pretrained weights as an extractor declares them: what to fetch, where it is cached,
whether it is here.

Every extractor answers `required_weights()` with `WeightsEntry` records, found without
loading or downloading anything; `gantrace.weights` merges them over a config's features
and fetches the missing ones into the same caches the extractors read: the torch hub
cache (TORCH_HOME) and the Hugging Face hub cache (HF_HUB_CACHE, HF_HOME), as the
environment says at the time of the call.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from gantrace.errors import WeightsError

HF_PATTERNS = ("*.json", "*.safetensors")  # configs and weights, no TF/Flax/ONNX copies
HF_FALLBACK = ("pytorch_model*.bin",)  # repos without safetensors


def hf_cache_dir():
    """The Hugging Face hub cache as the environment says now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hf_cached_file(repo, filenames=("config.json",)):
    """The first of `filenames` in the local HF cache for `repo`, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def torch_hub_file(url):
    """Where torch.hub keeps the checkpoint downloaded from `url` (TORCH_HOME as it is now)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


# The fields each source fills, after `source` and `key`, before `present`.
_FIELDS = {
    "torchvision": ("arch", "weights", "url", "path"),
    "url": ("arch", "weights", "url", "path"),
    "huggingface": ("repo_id", "cache_dir", "allow_patterns"),
    "package": ("package", "path"),
    "local": ("path",),
}


@dataclass(frozen=True)
class WeightsEntry:
    """One download (or file) an extractor's weights come from.

    `source` is torchvision or url (a torch hub checkpoint), huggingface (a hub repo),
    package (shipped by a Python package) or local (a file the config names); `key` is the
    same for every extractor that needs the same thing; `present` says whether it is here.
    """

    source: str
    key: str
    present: bool
    path: str | None = None  # the file (or where it will be)
    url: str | None = None  # torch hub download
    arch: str | None = None  # what the weights are for (in messages)
    weights: str | None = None  # which weights (in messages)
    repo_id: str | None = None
    cache_dir: str | None = None
    allow_patterns: tuple = ()  # files of the repo to fetch
    package: str | None = None

    @classmethod
    def torch_hub(cls, url, arch, weights, source="torchvision"):
        path = torch_hub_file(url)
        return cls(
            source,
            f"{source}:{url}",
            path.is_file(),
            path=str(path),
            url=url,
            arch=arch,
            weights=weights,
        )

    @classmethod
    def hf_repo(cls, repo, filenames=("config.json",), allow_patterns=HF_PATTERNS):
        """A hub repo, present when any of `filenames` is in the cache."""
        return cls(
            "huggingface",
            f"huggingface:{repo}",
            hf_cached_file(repo, filenames) is not None,
            repo_id=repo,
            cache_dir=str(hf_cache_dir()),
            allow_patterns=tuple(allow_patterns),
        )

    @classmethod
    def shipped_by(cls, package, locate):
        """Weights inside a Python package; `locate()` returns the file or raises
        WeightsError when the package is missing."""
        try:
            path, present = str(locate()), True
        except WeightsError:
            path, present = None, False
        return cls("package", f"package:{package}", present, path=path, package=package)

    @classmethod
    def local(cls, path):
        path = Path(path).expanduser()
        return cls("local", f"local:{path}", path.exists(), path=str(path))

    def as_dict(self):
        """The plain mapping `gantrace.weights` hands on (and `fetch_weights` records)."""
        out = {"source": self.source, "key": self.key}
        for name in _FIELDS[self.source]:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["present"] = self.present
        return out
