"""Every backbone of the 2024 seed papers builds by name and gives pooled features.

Random-init models on tiny batches (real sizes are what users get by default; `size: tiny`
is the test/smoke configuration of the transformers families).
"""

import json
import time

import numpy as np
import pytest
import torch

from gantrace import io
from gantrace.data import shards
from gantrace.errors import ConfigError, WeightsError
from gantrace.features import FEATURES, build_extractor, extract_shard
from gantrace.weights import fetch, required_weights

TORCHVISION_DIMS = {
    "vgg16": 512,
    "vgg19": 512,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "densenet121": 1024,
    "mobilenet_v2": 1280,
    "mobilenet_v3_large": 960,
    "mobilenet_v3_small": 576,
    "efficientnet_b0": 1280,
    "inception_v3": 2048,
    "squeezenet1_1": 512,
}
TINY = {
    "blip": ({"name": "blip", "size": "tiny", "input_size": 32}, 64),
    "blip2": ({"name": "blip2", "size": "tiny", "input_size": 28}, 64),
    "vit_mae": ({"name": "vit_mae", "size": "tiny", "input_size": 32}, 64),
    "timm": ({"name": "timm", "model": "test_resnet", "input_size": 32}, 96),
}


def _images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def _check(feats, n, dim):
    assert feats.shape == (n, dim) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # the input matters (relative: random-init MobileNets give tiny activations)
    assert np.abs(feats[0] - feats[1]).max() > 1e-3 * np.abs(feats).max() > 0


def test_every_registered_extractor_is_covered():
    from test_features import SMALL_SPECS

    # the learned extractors train in their own rule (test_finetune, test_contrastive)
    learned = {"finetuned", "contrastive"}
    assert set(FEATURES) == set(SMALL_SPECS) | set(TINY) | {"concat"} | learned


@pytest.mark.parametrize(("arch", "dim"), TORCHVISION_DIMS.items(), ids=list(TORCHVISION_DIMS))
def test_torchvision_archs_of_the_papers(arch, dim):
    size = 75 if arch == "inception_v3" else 32
    ext = build_extractor({"name": "torchvision", "arch": arch, "input_size": size})
    _check(ext.transform(_images(2, 40)), 2, dim)
    assert not any(
        isinstance(m, torch.nn.Linear) and m.out_features == 1000 for m in ext.model.modules()
    )


def test_inception_v3_needs_75_pixels():
    with pytest.raises(ConfigError, match="75"):
        build_extractor({"name": "torchvision", "arch": "inception_v3", "input_size": 64})


@pytest.mark.parametrize(
    ("model", "size", "dim"),
    [("legacy_xception", 64, 2048), ("inception_resnet_v2", 75, 1536)],
)
def test_timm_paper_models(model, size, dim):
    ext = build_extractor({"name": "timm", "model": model, "input_size": size})
    _check(ext.transform(_images(2, 48)), 2, dim)
    assert ext.norm_mean == (0.5, 0.5, 0.5)  # the model's own normalisation


def test_timm_native_size_and_bad_name():
    ext = build_extractor({"name": "timm", "model": "xception41"})
    assert ext.params["input_size"] == 299
    vit = build_extractor({"name": "timm", "model": "test_vit", "input_size": 32})
    _check(vit.transform(_images(2, 40)), 2, 64)  # a fixed-grid ViT is built for 32 px
    with pytest.raises(ConfigError, match="xception41"):
        build_extractor({"name": "timm", "model": "xcepshun41"}, key="features.x")


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_random_init_deterministic(name):
    spec, dim = TINY[name]
    images = _images(3)
    a = build_extractor(spec).transform(images)
    _check(a, 3, dim)
    np.testing.assert_array_equal(a, build_extractor(spec).transform(images))
    assert not np.allclose(a, build_extractor({**spec, "seed": 1}).transform(images))


def test_transformers_defaults_are_the_real_sizes():
    blip = build_extractor({"name": "blip"})
    assert blip.params["size"] == "base" and blip.params["input_size"] == 384
    assert build_extractor({"name": "blip", "size": "large"}).params["input_size"] == 384
    blip2 = build_extractor({"name": "blip2"})
    assert blip2.params["size"] == "g" and blip2.params["input_size"] == 224
    mae = build_extractor({"name": "vit_mae", "size": "huge"})
    assert mae.params["input_size"] == 224
    with pytest.raises(ConfigError, match="multiple"):
        build_extractor({"name": "vit_mae", "input_size": 100})
    with pytest.raises(ConfigError, match="tiny"):
        build_extractor({"name": "blip", "size": "tiny", "weights": "imagenet"})


def test_pooling_choices_and_input_size():
    images = _images(2, 48)
    spec = {"name": "vit_mae", "size": "tiny", "input_size": 32}
    cls = build_extractor(spec).transform(images)
    mean = build_extractor({**spec, "pool": "mean"}).transform(images)
    both = build_extractor({**spec, "pool": "cls_mean"}).transform(images)
    assert both.shape == (2, 128)
    np.testing.assert_allclose(both, np.concatenate([cls, mean], axis=1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(cls, mean)
    _check(build_extractor({**spec, "input_size": 48}).transform(images), 2, 64)


def test_concat_dims_normalisation_and_provenance():
    images = _images(3)
    lbp = {"name": "lbp"}
    mae = {"name": "vit_mae", "size": "tiny", "input_size": 32}
    ext = build_extractor({"name": "concat", "parts": [lbp, mae]})
    feats = ext.transform(images)
    assert feats.shape == (3, 10 + 64) and ext.uses_torch
    np.testing.assert_allclose(np.linalg.norm(feats[:, :10], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats[:, 10:], axis=1), 1, rtol=1e-5)
    raw = build_extractor({"name": "concat", "parts": [lbp, mae], "normalise": "none"})
    expected = np.concatenate(
        [build_extractor(lbp).transform(images), build_extractor(mae).transform(images)], axis=1
    )
    np.testing.assert_allclose(raw.transform(images), expected, rtol=1e-5, atol=1e-6)
    prov = ext.provenance()
    assert [p["extractor"] for p in prov["parts"]] == ["lbp", "vit_mae"]
    assert [p["extractor"] for p in prov["params"]["parts"]] == ["lbp", "vit_mae"]
    json.dumps(prov)
    seeded = build_extractor({"name": "concat", "parts": [mae], "seed": 4})
    assert seeded.parts[0].params["seed"] == 4
    with pytest.raises(ConfigError, match=r"features\.multi\.parts\[1\]\.preprocess"):
        build_extractor(
            {"name": "concat", "parts": [lbp, {**mae, "preprocess": "histeq"}]},
            key="features.multi",
        )
    with pytest.raises(ConfigError, match=r"features\.multi\.parts\[0\]: unknown extractor"):
        build_extractor({"name": "concat", "parts": [{"name": "bliip"}]}, key="features.multi")
    with pytest.raises(ConfigError, match="parts"):
        build_extractor({"name": "concat", "parts": []})


def test_concat_in_the_shard_runner(tmp_path):
    images = _images(5, 32, seed=3)
    ids = [f"g{i}" for i in range(5)]
    shards.write_images(tmp_path / "im.h5", ids, images)
    spec = {
        "name": "concat",
        "parts": [{"name": "pixels", "size": 4}, TINY["blip"][0]],
        "batch_size": 2,
        "preprocess": "histeq",
    }
    stats = extract_shard(tmp_path / "im.h5", None, "full", spec, tmp_path / "f.h5", seed=7)
    _, feats, attrs = io.read_features(tmp_path / "f.h5")
    assert stats["n_features"] == 16 + 64
    expected = build_extractor({**spec, "seed": 7}).transform(images)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    parts = json.loads(attrs["parts"])
    assert [p["extractor"] for p in parts] == ["pixels", "blip"]
    assert parts[1]["params"]["seed"] == 7  # the job seed reaches the random-init part
    assert "blip:none(seed=7)" in attrs["weights"]


def test_pretrained_requests_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cases = [
        ({"name": "timm", "model": "xception41", "weights": "imagenet"}, "xception41"),
        ({"name": "timm", "model": "legacy_xception", "weights": "imagenet"}, "torch"),
        ({"name": "blip", "weights": "imagenet"}, "Salesforce/blip-image-captioning-base"),
        ({"name": "blip", "size": "large", "weights": "imagenet"}, "captioning-large"),
        ({"name": "blip2", "weights": "imagenet"}, "Salesforce/blip2-opt-2.7b"),
        (
            {"name": "vit_mae", "size": "large", "weights": "imagenet"},
            "facebook/vit-mae-large",
        ),
        (
            {
                "name": "concat",
                "parts": [{"name": "lbp"}, {"name": "blip2", "weights": "imagenet"}],
            },
            "blip2-opt-2.7b",
        ),
    ]
    for spec, name in cases:
        t0 = time.perf_counter()
        with pytest.raises(WeightsError, match="fetch_weights") as err:
            build_extractor(spec)
        assert name in str(err.value)
        assert time.perf_counter() - t0 < 10


def _fake_hub_repo(root, repo):
    snap = root / "hf" / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    return snap


def test_cached_transformers_checkpoints_load_the_vision_tower(tmp_path, monkeypatch):
    """Only the tower's tensors are read from a full BLIP checkpoint (hub cache) or a MAE one."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    images = _images(2)
    source = build_extractor({**TINY["blip"][0], "seed": 3})
    snap = _fake_hub_repo(tmp_path, "Salesforce/blip-image-captioning-base")
    state = {f"vision_model.{k}": v.contiguous() for k, v in source.model.state_dict().items()}
    state["text_decoder.bias"] = torch.zeros(5)  # the rest of the captioner is ignored
    save_file(state, str(snap / "model.safetensors"))
    cfg = {"model_type": "blip", "vision_config": source.model.config.to_dict()}
    (snap / "config.json").write_text(json.dumps(cfg))
    hub = build_extractor({"name": "blip", "weights": "imagenet", "input_size": 32})
    assert hub.weights_description() == "hub:Salesforce/blip-image-captioning-base"
    np.testing.assert_allclose(
        hub.transform(images), source.transform(images), rtol=1e-5, atol=1e-6
    )
    (req,) = required_weights({"blip": {"name": "blip", "weights": "imagenet"}})
    assert req["present"] and req["repo_id"] == "Salesforce/blip-image-captioning-base"
    (done,) = fetch([req], log=None)  # offline: found in the cache, nothing downloaded
    assert done["status"] == "cached" and done["path"] == str(snap)
    as_bin = tmp_path / "blip_bin"  # a .bin checkpoint in a local from_pretrained folder
    as_bin.mkdir()
    torch.save(state, as_bin / "pytorch_model.bin")
    (as_bin / "config.json").write_text(json.dumps(cfg))
    local = build_extractor({"name": "blip", "weights": str(as_bin), "input_size": 32})
    np.testing.assert_allclose(
        local.transform(images), source.transform(images), rtol=1e-5, atol=1e-6
    )

    mae = build_extractor({**TINY["vit_mae"][0], "seed": 5})
    folder = tmp_path / "mae"
    folder.mkdir()
    old_names = [  # facebook/vit-mae-* (ViTMAEForPreTraining) use the old ViT key names
        ("layers.", "vit.encoder.layer."),
        ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"),
        ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"),
        ("mlp.fc1", "intermediate.dense"),
        ("mlp.fc2", "output.dense"),
    ]
    state = {}
    for key, value in mae.model.state_dict().items():
        for new, old in old_names:
            key = key.replace(new, old)
        state[key if key.startswith("vit.") else f"vit.{key}"] = value
    state["decoder.decoder_pred.weight"] = torch.zeros(3, 4)  # the MAE decoder is ignored
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(mae.model.config.to_json_string())
    local = build_extractor({"name": "vit_mae", "weights": str(folder), "input_size": 32})
    np.testing.assert_allclose(local.transform(images), mae.transform(images), rtol=1e-5, atol=1e-6)
    torch.save(
        {"vit.embeddings.cls_token": state["vit.embeddings.cls_token"]},
        folder / "pytorch_model.bin",
    )
    with pytest.raises(WeightsError, match="missing"):
        build_extractor({"name": "vit_mae", "weights": str(folder)}).transform(images)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="empty"):
        build_extractor({"name": "vit_mae", "weights": str(empty)})


def test_cached_timm_weights_are_used(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    torch.manual_seed(0)
    full = timm.create_model("test_resnet").eval()  # stands in for the ImageNet checkpoint
    snap = _fake_hub_repo(tmp_path, "timm/test_resnet.r160_in1k")
    save_file(
        {k: v.contiguous() for k, v in full.state_dict().items()}, str(snap / "model.safetensors")
    )
    (snap / "config.json").write_text("{}")
    spec = {"name": "timm", "model": "test_resnet", "input_size": 32}
    ext = build_extractor({**spec, "weights": "imagenet", "seed": 9})
    assert ext.weights_description().startswith("timm:test_resnet:")
    images = _images(2)
    x = torch.from_numpy(images).float()[:, None].repeat(1, 3, 1, 1) / 255
    x = (x - 0.5) / 0.5  # test_resnet's mean = std = 0.5
    with torch.inference_mode():
        expected = full.forward_head(full.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(ext.transform(images), expected, rtol=1e-4, atol=1e-5)
    local = build_extractor({**spec, "weights": str(snap / "model.safetensors")})
    np.testing.assert_allclose(local.transform(images), expected, rtol=1e-4, atol=1e-5)
