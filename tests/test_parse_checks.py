"""Everything a config needs is checked while the workflow is parsed (gantrace.plan.Plan.check):
every part built, every folder listed, every mask source and weight looked for, and all
problems reported in one ConfigError, one per line, before any job runs."""

import re
import time

import pandas as pd
import pytest
import yaml
from conftest import snakemake
from test_plan import _config, _plan

from gantrace.data.ingest import count_rejected
from gantrace.errors import ConfigError
from gantrace.plan import image_table


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty weight caches: every pretrained weight is missing."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _problems(cfg, **kwargs):
    with pytest.raises(ConfigError) as err:
        _plan(cfg).check(**kwargs)
    return str(err.value)


def test_a_good_config_passes(caches):
    plan = _plan()
    assert plan.problems() == []
    plan.check()


def test_every_part_problem_is_listed_at_once(caches):
    cfg = _config()
    att, mem = cfg["attribution"]["methods"], cfg["membership"]["methods"]
    cfg["features"]["pixels"]["sizee"] = 8
    att["kmeans"]["clusterer"] = {"name": "kmeans", "n_iinit": 3}
    att["auto_k"]["estimate_k"] = {"name": "bic", "n_neighbors": 3}
    att["open"]["reducer"] = {"name": "tsne"}  # an open-set method maps new images
    att["ae"]["reducer"] = {"name": "pca", "n_comp": 3}
    att["ft_own_kmeans"]["region"] = "lung"
    att["resnet_kmeans"]["clusterer"] = {
        "name": "dbscan_rerank",
        "base": {"name": "kmeans", "x": 1},
    }
    mem["knn"]["scorer"] = {"name": "knn", "kk": 1, "metrci": "cosine"}
    mem["knn3"]["scorer"] = {"name": "knnn"}
    mem["tuned"]["scorer"] = {"name": "knn", "k": [1, 0]}  # every grid point is built
    mem["not_used_ref"]["scorer"] = {"name": "knn"}
    mem["not_used_ref"]["threshold"] = "natural"
    cfg["attribution"]["fusion"]["vote"]["linkage"] = "ward"  # fine: majority ignores it
    msg = _problems(cfg)
    expected = [
        "features.pixels.sizee: unknown parameter of 'pixels' (did you mean 'size'?)",
        "attribution.methods.kmeans.clusterer.n_iinit: unknown parameter of 'kmeans' "
        "(did you mean 'n_init'?)",
        "attribution.methods.auto_k.estimate_k.n_neighbors: unknown parameter of 'bic'",
        "attribution.methods.open.reducer: {'name': 'tsne'} cannot map new images",
        "attribution.methods.ae.reducer.n_comp: unknown parameter of 'pca'",
        "attribution.methods.ft_own_kmeans.region: learned feature 'ft_own'",
        "attribution.methods.resnet_kmeans.clusterer.base.x: unknown parameter of 'kmeans'",
        "membership.methods.knn.scorer.kk: unknown parameter of 'knn' (did you mean 'k'?)",
        "membership.methods.knn.scorer.metrci: unknown parameter of 'knn'",
        "membership.methods.knn3.scorer: unknown scorer 'knnn' (did you mean 'knn'?)",
        "membership.methods.tuned.scorer.k: expected",
        "membership.methods.not_used_ref.threshold: 'natural' (score > 0) suits margin",
    ]
    lines = msg.splitlines()
    assert lines[0].startswith(f"{len(expected)} problem(s) in the config"), msg
    for line in expected:
        assert any(got.strip().startswith(line) for got in lines), f"{line!r} not in\n{msg}"
    assert "Traceback" not in msg


def test_fusion_rules_are_built(caches):
    cfg = _config()
    cfg["membership"]["fusion"]["mean"]["rule"] = "mean_rankk"
    assert "membership.fusion.mean.rule" in _problems(cfg)


def test_all_missing_weights_in_one_message_with_the_fix(caches):
    cfg = _config()
    cfg["features"]["resnet"]["weights"] = "imagenet"
    cfg["features"]["dino"] = {"name": "dinov2", "weights": "imagenet"}
    cfg["features"]["unused"] = {"name": "torchvision", "arch": "resnet50", "weights": "imagenet"}
    cfg["membership"]["methods"]["dino_knn"] = {"feature": "dino", "scorer": {"name": "knn"}}
    msg = _problems(cfg, config_files=["my.yaml"])
    assert "2 pretrained weight(s) missing" in msg
    assert "snakemake fetch_weights --configfile my.yaml" in msg
    assert "`weights: none`" in msg
    assert re.search(r"features\.resnet\.weights: .*resnet18.*" + re.escape(str(caches)), msg)
    assert "features.dino.weights: facebook/dinov2-small" in msg
    assert "features.unused" not in msg  # no method uses it: nothing runs it
    # `snakemake fetch_weights` parses the workflow too: it checks everything but them
    plan = _plan(cfg)
    assert plan.problems(weights=False) == []
    # the other problems come in the same message
    cfg["membership"]["methods"]["knn"]["scorer"]["kk"] = 2
    msg = _problems(cfg)
    assert "scorer.kk" in msg and "fetch_weights" in msg and msg.startswith("2 problem(s)")


def test_folders_of_every_dataset_in_one_message(tmp_path, caches):
    cfg = _config()
    (tmp_path / "g").mkdir()
    cfg["data_root"] = str(tmp_path)
    plan = _plan(cfg, tables=lambda ds: image_table(cfg, ds, tmp_path / "sim"))
    msg = str(pytest.raises(ConfigError, plan.check).value)
    assert msg.startswith("6 problem(s)"), msg
    for key in (
        "datasets.dev_mem: a membership dataset needs `generated` images",
        "datasets.test_mem.generated: no image files",
        "datasets.test_mem.real_unknown: folder",
        "datasets.dev_att.generated.a: folder",
        "datasets.dev_att.generated.b: folder",
        "datasets.test_att.generated: folder",
    ):
        assert key in msg, msg


def _lung_config(**seg):
    cfg = _config()
    cfg["features"] = {"pixels": {"name": "pixels", "size": 8}}
    cfg["attribution"] = {"methods": {}, "fusion": {}}
    cfg["membership"] = {
        "methods": {"lung_knn": {"feature": "pixels", "region": "lung", "scorer": {"name": "knn"}}},
        "fusion": {},
    }
    cfg["segmentation"] = {"train_shards": [0], **seg}
    return cfg


def test_mask_sources_the_methods_need(tmp_path, caches):
    msg = _problems(_lung_config(mask_source="folder", mask_dir=str(tmp_path / "masks")))
    assert "segmentation.mask_dir: folder" in msg and "does not exist" in msg
    (tmp_path / "masks").mkdir()
    _plan(_lung_config(mask_source="folder", mask_dir=str(tmp_path / "masks"))).check()
    # simulated masks: only simulated datasets have them (these four are folders)
    msg = _problems(_lung_config(mask_source="simulated", train_datasets=["dev_mem"]))
    assert "segmentation.mask_source: 'simulated'" in msg and "'dev_mem'" in msg
    _plan(_lung_config(mask_source="threshold")).check()
    msg = _problems(_lung_config(mask_source="threshold", train_shards=[3]))
    assert "segmentation.train_shards" in msg
    # no method reads lung masks: the segmentation block is not looked at
    cfg = _lung_config(mask_source="simulated")
    cfg["membership"]["methods"]["lung_knn"]["region"] = "full"
    _plan(cfg).check()


def test_count_rejected(tmp_path):
    path = tmp_path / "rejected.parquet"
    assert count_rejected(path) == 0
    pd.DataFrame({"path": ["a.png", "b.png"], "reason": ["empty", "RGB"]}).to_parquet(path)
    assert count_rejected(path) == 2


@pytest.mark.workflow
def test_dry_run_fails_at_parse_time_naming_every_problem(workflow_dir, tmp_path, monkeypatch):
    """A missing weight, a misspelt scorer parameter and a misspelt clusterer parameter: the
    dry run stops in seconds, names all three and the fetch command, and shows no traceback."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    cfg = {
        "ingest": {"n_shards": 1},
        "datasets": {
            "mem": {"task": "membership", "simulate": {"n_used": 4, "n_not_used": 4}},
            "att": {"task": "attribution", "simulate": {"n_per_generator": 4}},
        },
        "features": {
            "pixels": {"name": "pixels", "size": 8},
            "r18": {"name": "torchvision", "arch": "resnet18", "weights": "imagenet"},
        },
        "attribution": {
            "methods": {
                "r18_kmeans": {"feature": "r18", "clusterer": {"name": "kmeans", "n_iinit": 3}}
            }
        },
        "membership": {
            "methods": {"pixels_knn": {"feature": "pixels", "scorer": {"name": "knn", "kk": 1}}}
        },
    }
    (workflow_dir / "mine.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    proc = snakemake(workflow_dir, "all", "-n", "--configfile", "mine.yaml", check=False)
    took = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "3 problem(s) in the config" in out, out
    assert "membership.methods.pixels_knn.scorer.kk: unknown parameter of 'knn'" in out
    assert "attribution.methods.r18_kmeans.clusterer.n_iinit: unknown parameter" in out
    assert "features.r18.weights: " in out and "resnet18" in out
    assert "snakemake fetch_weights --configfile mine.yaml" in out
    assert "Traceback" not in out
    assert took < 120, took  # parse time only: no job ran
    assert not (workflow_dir / "results").exists()
