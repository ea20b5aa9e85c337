"""Runs never mix: every result of a config lies under results/<run>/ (gantrace.runs)."""

import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_workflow, snakemake

from gantrace.config import validate_config
from gantrace.errors import ConfigError
from gantrace.runs import default_run, run_dir, run_name, run_of_files

SCHEMA = ROOT / "config" / "schema.yaml"

# Two small weight-free configs (simulated data, one shard): a config's file name is its run.
FIRST = """\
seed: 0
ingest: {n_shards: 1, image_size: 64}
datasets:
  first_att:
    task: attribution
    simulate: {generators: [checkerboard, spectral, oversmooth], n_per_generator: 6, size: 64}
    n_generators: 3
features:
  spectrum: {name: spectrum}
attribution:
  methods:
    spectrum_kmeans: {feature: spectrum, clusterer: {name: kmeans}}
"""
SECOND = """\
seed: 0
ingest: {n_shards: 1, image_size: 64}
datasets:
  second_mem:
    task: membership
    simulate: {n_used: 8, n_not_used: 8, n_generated: 16, n_unknown: 8, size: 64}
features:
  pixels: {name: pixels, size: 16}
membership:
  n_folds: 2
  methods:
    pixels_knn: {feature: pixels, scorer: {name: knn, k: 1}}
"""


def test_the_run_is_the_key_else_the_last_config_file_name():
    assert default_run([]) == "demo"
    assert default_run(["a/x.yaml", "b/my_methods.yaml"]) == "my_methods"
    assert default_run(["my run (2).yml"]) == "my_run__2_"
    assert default_run(["/tmp/.hidden.yaml"]) == "hidden"
    assert run_name({"run": "mine"}, ["other.yaml"]) == "mine"
    assert run_name({}, ["other.yaml"]) == "other"
    assert run_dir("mine") == "results/mine"


def test_run_of_config_files(tmp_path):
    assert run_of_files([ROOT / "config" / "config.yaml"]) == "demo"
    assert run_of_files([ROOT / "config" / "imageclef2024.yaml"]) == "imageclef2024"
    (tmp_path / "named.yaml").write_text("run: named_run\n")
    (tmp_path / "methods.yaml").write_text("features: {}\n")
    assert run_of_files([tmp_path / "named.yaml", tmp_path / "methods.yaml"]) == "named_run"
    assert run_of_files([tmp_path / "methods.yaml"]) == "methods"
    # the Makefile's `report` target asks the same question from the command line
    out = subprocess.run(
        [sys.executable, "-m", "gantrace.runs", str(tmp_path / "methods.yaml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "results/methods"


@pytest.mark.parametrize("bad", ["../up", ".", "a/b", "", "sp ace"])
def test_schema_refuses_a_run_that_is_not_one_folder_name(bad):
    cfg = yaml.safe_load(FIRST)
    cfg["run"] = bad
    with pytest.raises(ConfigError, match="run"):
        validate_config(cfg, SCHEMA)
    cfg["run"] = "ok-run_1.2"
    validate_config(cfg, SCHEMA)


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.workflow
def test_two_configs_in_one_checkout_keep_their_own_results(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "first.yaml").write_text(FIRST)
    (work / "second.yaml").write_text(SECOND)
    results = work / "results"

    done = snakemake(work, "all", "--configfile", "first.yaml")
    assert "results/first/leaderboard.csv" in done.stdout + done.stderr  # the closing message
    first = _files(results / "first")
    board = pd.read_csv(results / "first" / "leaderboard.csv")
    assert set(board.dataset) == {"first_att"}

    snakemake(work, "all", "--configfile", "second.yaml")
    board = pd.read_csv(results / "second" / "leaderboard.csv")
    assert set(board.dataset) == {"second_mem"}
    # the first run is untouched, byte for byte, and nothing else was written beside the two
    assert _files(results / "first") == first
    assert sorted(p.name for p in results.iterdir()) == ["first", "second"]
    assert not any("second_mem" in k for k in first)
    assert not any("first_att" in k for k in _files(results / "second"))
    # ... and still complete: the first config has nothing to do
    dry = snakemake(work, "all", "-n", "--configfile", "first.yaml")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # A report holds the files its run's DAG made, so both reports stay apart: every file
    # the DAG of each config names (report plots, leaderboard, logs) lies in its own run.
    for run, other in (("first", "second"), ("second", "first")):
        summary = snakemake(work, "all", "--summary", "--configfile", f"{run}.yaml").stdout
        paths = [line.split("\t")[0] for line in summary.splitlines()[1:] if line.strip()]
        assert paths and all(p.startswith(f"results/{run}/") for p in paths), paths
        plots = [p for p in paths if p.endswith(".png")]
        assert plots, paths
        assert not any(other in p for p in paths)
