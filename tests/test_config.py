"""Config validation: schema (unknown keys are errors), defaults and cross-references."""

import copy
from pathlib import Path

import pytest
import yaml

from gantrace.config import validate_config
from gantrace.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
WEIGHT_FREE = {"pixels", "lbp", "spectrum", "dct", "residual"}


def demo():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_demo_and_tiny_configs_are_valid():
    cfg = validate_config(demo(), SCHEMA)
    assert cfg["ingest"]["n_shards"] == 2  # the demo: 2 shards (make run under 5 min)
    assert cfg["membership"]["methods"]["pixels_knn"]["used_fraction"] == 0.5  # default filled
    validate_config(yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text()), SCHEMA)


def test_the_demo_uses_real_weights_and_the_transformers_demo_dinov2():
    cfg = demo()
    nets = {f: s for f, s in cfg["features"].items() if s["name"] not in WEIGHT_FREE}
    assert nets == {"lite0": {"name": "efficientnet_lite0", "input_size": 224}}
    other = yaml.safe_load((ROOT / "config" / "demo-transformers.yaml").read_text())
    assert other["features"]["dinov2"]["weights"] == "imagenet"
    validate_config(other, SCHEMA)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["ingest"].update(n_shard=3), "n_shard"),
        (lambda c: c.update(sead=1), "sead"),
        (lambda c: c["membership"]["methods"]["pixels_knn"].update(featur="x"), "featur"),
        (lambda c: c["datasets"]["demo_attribution"].update(n_generator=3), "n_generator"),
        (lambda c: c["ingest"].update(invalid_images="ignore"), "invalid_images"),
    ],
)
def test_misspelt_or_bad_keys_are_named(edit, key):
    cfg = demo()
    edit(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert key in str(err.value)


def test_cross_references_are_checked():
    cfg = demo()
    cfg["membership"]["methods"]["pixels_knn"]["feature"] = "resnet"
    cfg["attribution"]["fusion"]["vote"]["methods"].append("ghost")
    cfg["attribution"]["methods"]["spectrum_kmeans"]["known_from"] = "demo_membership"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    msg = str(err.value)
    assert "membership.methods.pixels_knn.feature" in msg and "'resnet'" in msg
    assert "ghost" in msg and "spectrum_kmeans.known_from" in msg


def test_n_generators_is_optional_for_attribution():
    cfg = demo()
    del cfg["datasets"]["demo_attribution"]["n_generators"]
    validate_config(cfg, SCHEMA)  # estimated per method (gantrace.attribution.nclusters)
    cfg["datasets"]["demo_membership"]["n_generators"] = 3
    with pytest.raises(ConfigError, match="demo_membership.n_generators: only attribution"):
        validate_config(cfg, SCHEMA)


def test_method_names_cannot_shadow_fusion_outputs():
    cfg = demo()
    cfg["membership"]["methods"]["fused_x"] = cfg["membership"]["methods"]["pixels_knn"]
    with pytest.raises(ConfigError, match="membership.methods.fused_x"):
        validate_config(cfg, SCHEMA)


def test_validation_does_not_depend_on_key_order():
    a, b = demo(), demo()
    b["features"] = dict(reversed(list(copy.deepcopy(b["features"]).items())))
    assert (
        validate_config(a, SCHEMA)["features"].keys()
        == validate_config(b, SCHEMA)["features"].keys()
    )
