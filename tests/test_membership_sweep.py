"""benchmarks/membership_sweep.py writes valid benchmark configs and selects on dev."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gantrace.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"


@pytest.fixture(scope="module")
def sweep():
    path = ROOT / "benchmarks" / "membership_sweep.py"
    spec = importlib.util.spec_from_file_location("membership_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_config_resizes_the_training_set_and_keeps_the_families(sweep, tmp_path):
    out = tmp_path / "membership-sweep-300.yaml"
    families = ["vae", "dcgan"]
    sweep.sweep_config(ROOT / "config/benchmark.yaml", 300, families, tmp_path, 1000, out)
    cfg = yaml.safe_load(out.read_text())
    validate_config(cfg, SCHEMA)
    bench = cfg["benchmark"]
    assert bench["split"]["used_fraction"] == 0.3
    assert list(bench["generators"]) == families
    assert bench["name"] == "sweep300" and cfg["run"] == "membership-sweep"
    assert bench["source"] == str(tmp_path)
    assert bench["split"]["reference_fraction"] == 0.3  # a clean pool for the calibrations
    with pytest.raises(SystemExit, match="not generators"):
        sweep.sweep_config(ROOT / "config/benchmark.yaml", 300, ["gan"], tmp_path, 1000, out)
    with pytest.raises(SystemExit, match="between 0"):
        sweep.sweep_config(ROOT / "config/benchmark.yaml", 2000, families, tmp_path, 1000, out)
    with pytest.raises(SystemExit, match="two or more"):
        sweep.sweep_config(ROOT / "config/benchmark.yaml", 300, ["vae"], tmp_path, 1000, out)


def test_the_overlay_gives_each_membership_dataset_its_reference_generator(sweep, tmp_path):
    bench_cfg = tmp_path / "bench.yaml"
    sweep.sweep_config(
        ROOT / "config/benchmark.yaml", 300, ["dcgan", "vae"], tmp_path, 1000, bench_cfg
    )
    bench = yaml.safe_load(bench_cfg.read_text())["benchmark"]
    built = {
        f"sweep300_membership_{g}": {"task": "membership", "reference_real": f"m/{g}/r"}
        for g in ("dcgan", "vae")
    }
    built["sweep300_attribution_dev"] = {"task": "attribution"}
    built_path = tmp_path / "gantrace.yaml"
    built_path.write_text(yaml.safe_dump({"datasets": built}))
    overlay = yaml.safe_load(
        sweep.calibration_overlay(bench_cfg, built_path, tmp_path / "o.yaml").read_text()
    )
    assert sorted(overlay["datasets"]) == ["sweep300_membership_dcgan", "sweep300_membership_vae"]
    for g in ("dcgan", "vae"):
        refgen = overlay["datasets"][f"sweep300_membership_{g}"]["reference_generator"]
        target = bench["generators"][g]
        assert refgen["generator"]["name"] == target["name"]
        assert refgen["generator"]["steps"] == target["steps"]
        assert refgen["generator"]["seed"] != target.get("seed", bench["seed"])
        assert refgen["resolution"] == bench["resolution"]
    methods = overlay["membership"]["methods"]
    assert {m["scorer"]["reference"] for m in methods.values()} == {"clean", "generator"}
    assert all(m["datasets"] == sorted(overlay["datasets"]) for m in methods.values())
    # a benchmark without a clean pool gets no overlay
    for ds in built.values():
        ds.pop("reference_real", None)
    built_path.write_text(yaml.safe_dump({"datasets": built}))
    assert yaml.safe_load(
        sweep.calibration_overlay(bench_cfg, built_path, tmp_path / "p.yaml").read_text()
    ) in ({}, None)


def test_selection_is_made_on_dev_and_scored_on_test(sweep):
    """The new method with the best TEST AUC is not the one reported: dev decides."""
    rows = []
    for method, dev, test, cat in (
        ("a", 0.9, 0.6, ""),
        ("b", 0.7, 0.95, ""),
        ("seed", 0.8, 0.7, "team_x"),
    ):
        for split, auc in (("dev", dev), ("test", test)):
            rows.append(
                {
                    "dataset": "s_membership_dcgan",
                    "task": "membership",
                    "kind": "method",
                    "split": split,
                    "method": method,
                    "catalogue": cat or None,
                    "auc": auc,
                    "auc_lo": auc - 0.1,
                    "auc_hi": auc + 0.05,
                    "tpr_at_fpr_1pct": 0.0,
                    "tied_with_best": False,
                }
            )
    board = pd.DataFrame(rows)
    board["level"] = "image"
    group = board[board.method == "b"].assign(level="group", auc=[0.99, 0.5])
    board = pd.concat([board, group], ignore_index=True)
    assert sweep.selected(board, seed=False, level="group").method.tolist() == ["b"]
    new = sweep.selected(board, seed=False)
    assert new.method.tolist() == ["a"] and new.auc.tolist() == [0.6]
    seed = sweep.selected(board, seed=True)
    assert seed.method.tolist() == ["seed"] and seed.auc.tolist() == [0.7]


def test_sweep_skips_without_source_slices(sweep, tmp_path, capsys):
    base = yaml.safe_load((ROOT / "config/benchmark.yaml").read_text())
    base["benchmark"]["source"] = str(tmp_path / "absent")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    assert sweep.main(["--base", str(tmp_path / "base.yaml"), "--directory", str(tmp_path)]) == 0
    assert "skipped: no source slices" in capsys.readouterr().out


def test_paired_difference_is_new_minus_seed_on_the_same_resamples(sweep, tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"p{g:02d}_{i}" for g in range(20) for i in range(5)]
    groups = [i.split("_")[0] for i in ids]
    used = np.array([int(g[1:]) % 2 for g in groups])
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"image_id": ids, "label": used, "role": "real_unknown"}).to_csv(truth)
    for name, score in (("good", used + rng.normal(0, 0.3, 100)), ("noise", rng.normal(size=100))):
        table = pd.DataFrame({"image_id": ids, "score": score, "group": groups})
        table["group_score"] = table.groupby("group").score.transform("mean")
        table.to_parquet(tmp_path / f"{name}.parquet")
    diff, lo, hi = sweep.paired_difference(tmp_path, truth, "good", "noise")
    assert 0 < lo < diff < hi  # significant
    diff, lo, hi = sweep.paired_difference(tmp_path, truth, "noise", "good", level="group")
    assert lo < diff < hi < 0
    assert sweep.paired_difference(tmp_path, truth, "good", "good") == (0.0, 0.0, 0.0)
