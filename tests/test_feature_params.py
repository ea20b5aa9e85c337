"""One declaration of a part's parameters (gantrace.params) for extractors and preprocessors:
bools are not numbers, typos get a suggestion, clones are unfitted twins, and every
parameter a constructor takes is declared."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from gantrace.config import validate_config
from gantrace.errors import ConfigError
from gantrace.features import FEATURES, build_extractor, check_spec
from gantrace.preprocess import PREPROCESSORS, build_preprocessor

ROOT = Path(__file__).resolve().parents[1]
TORCH_SPEC = {"name": "torchvision", "arch": "resnet18", "input_size": 32}


def _images(n=2, size=32):
    return np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)


@pytest.mark.parametrize("cls", [c for _, c in FEATURES.items()], ids=list(FEATURES))
def test_every_extractor_declares_exactly_its_parameters(cls):
    assert set(cls.constraints()) == set(cls.param_names())


@pytest.mark.parametrize("cls", [c for _, c in PREPROCESSORS.items()], ids=list(PREPROCESSORS))
def test_every_preprocessor_declares_exactly_its_parameters(cls):
    assert set(cls.constraints()) == set(cls.param_names())


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (
            lambda: build_extractor({"name": "pixels", "size": True}, "features.px"),
            "features.px.size",
        ),
        (lambda: build_extractor({"name": "torchvision", "seed": False}, "f.tv"), "f.tv.seed"),
        (lambda: build_preprocessor({"name": "opening", "size": True}, "p"), "p.size"),
        (lambda: check_spec({"name": "finetuned", "epochs": True}, "features.ft"), "ft.epochs"),
    ],
)
def test_a_bool_is_not_an_integer(build, key):
    with pytest.raises(ConfigError, match="integer") as err:
        build()
    message = str(err.value)
    assert key in message and ("True" in message or "False" in message)


def test_typos_suggest_the_right_key_and_name():
    with pytest.raises(ConfigError, match="did you mean 'size'"):
        build_extractor({"name": "pixels", "sise": 16}, "features.px")
    with pytest.raises(ConfigError, match="did you mean 'n_folds'"):
        check_spec({"name": "finetuned", "n_fold": 2})
    with pytest.raises(ConfigError, match="did you mean 'sigma'"):
        build_preprocessor({"name": "laplacian", "sigmaa": 1})
    with pytest.raises(ConfigError, match=r"features\.px: unknown extractor 'pixles'") as err:
        build_extractor({"name": "pixles"}, "features.px")
    assert "did you mean 'pixels'" in str(err.value) and "features.px.name" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'median'"):
        build_extractor({"name": "spectrum", "denoise": "medain"})


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "pixels", "size": 8, "preprocess": "histeq"},
        TORCH_SPEC,
        {"name": "concat", "parts": [{"name": "lbp"}, TORCH_SPEC], "seed": 3},
    ],
    ids=["pixels", "torchvision", "concat"],
)
def test_clone_has_equal_params_and_is_unfitted(spec):
    ext = build_extractor(spec, "features.x")
    before = ext.transform(_images())  # builds (fits) any torch model
    twin = ext.clone()
    assert twin is not ext and type(twin) is type(ext)
    assert twin.get_params() == ext.get_params() and twin.config_key == "features.x"
    models = [p for p in [twin, *getattr(twin, "parts", ())] if p.uses_torch]
    assert all(m._model is None for m in models if hasattr(m, "_model"))
    np.testing.assert_array_equal(twin.transform(_images()), before)


def test_preprocessor_and_learned_feature_clones():
    step = build_preprocessor({"name": "contrast", "low": 2, "high": 98}).steps[0]
    twin = step.clone()
    assert twin is not step and twin.get_params() == step.get_params()
    assert twin.get_params() == {"low": 2.0, "high": 98.0, "gamma": 1.0}
    learned = check_spec({"name": "finetuned", "ensemble": ["custom"], "epochs": 2})
    assert learned.clone().get_params() == learned.get_params()


def test_set_params_checks_like_a_new_spec():
    ext = build_extractor({"name": "pixels", "size": 8}, "features.px")
    assert ext.set_params(size=4).params["size"] == 4 and ext.transform(_images()).shape[1] == 16
    with pytest.raises(ConfigError, match=r"features\.px\.size: expected an integer >= 1"):
        ext.set_params(size=0)
    with pytest.raises(ConfigError, match="did you mean 'size'"):
        ext.set_params(sise=4)


def test_learned_extractors_are_registered_like_the_others():
    learned = {name for name, cls in FEATURES.items() if cls.learned}
    assert learned == {"finetuned", "contrastive"}
    assert check_spec({"name": "finetuned"}).uses_torch
    assert not check_spec({"name": "pixels"}).learned


def test_the_old_extractor_key_is_refused_with_its_new_name():
    with pytest.raises(ConfigError, match=r"features\.px\.extractor: renamed to 'name'") as err:
        build_extractor({"extractor": "pixels"}, "features.px")
    assert "name: pixels" in str(err.value)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["features"]["pixels"] = {"extractor": "pixels", "size": 32}
    cfg["features"]["multi"] = {"name": "concat", "parts": [{"extractor": "lbp"}]}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, ROOT / "config" / "schema.yaml")
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].strip().startswith("features.pixels.extractor: renamed to 'name'")
    assert lines[1].strip().startswith("features.multi.parts[0].extractor: renamed")
