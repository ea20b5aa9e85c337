"""`gantrace init`: a valid, dry-runnable config from image folders; every problem at once."""

import copy

import numpy as np
import pytest
import yaml
from conftest import ROOT, snakemake
from PIL import Image

from gantrace.cli import leaderboard_path, main
from gantrace.config import validate_config

SCHEMA = ROOT / "config" / "schema.yaml"


def _folder(path, n, prefix, size=64, mode="L", seed=0):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path / f"{prefix}{i}.png")
    return path


@pytest.fixture
def membership_folders(tmp_path):
    return {
        role: _folder(tmp_path / "data" / role, 12, role, seed=i)
        for i, role in enumerate(["generated", "used", "not_used", "unknown"])
    }


def _init_membership(folders, out, unknown=True):
    argv = ["init", "membership", "--generated", str(folders["generated"])]
    argv += ["--real-used", str(folders["used"]), "--real-not-used", str(folders["not_used"])]
    if unknown:
        argv += ["--real-unknown", str(folders["unknown"])]
    return main([*argv, "-o", str(out)])


def _checked(path):
    cfg = yaml.safe_load(path.read_text())
    validate_config(copy.deepcopy(cfg), SCHEMA)
    return cfg


def test_membership_config_is_valid_and_printed(membership_folders, tmp_path, capsys):
    out = tmp_path / "my_data.yaml"
    assert _init_membership(membership_folders, out) == 0
    cfg = _checked(out)
    ds = cfg["datasets"]["membership"]
    assert ds["real_used"] == str(membership_folders["used"])
    assert ds["real_unknown"] == str(membership_folders["unknown"])
    assert cfg["ingest"]["image_size"] == 64 and cfg["ingest"]["conversions"] == []
    assert "segmentation" not in cfg
    scorers = {m["scorer"]["name"] for m in cfg["membership"]["methods"].values()}
    assert scorers == {"knn", "calibrated_knn", "domias"}
    assert {f["name"] for f in cfg["features"].values()} == {"pixels"}
    printed = capsys.readouterr().out
    for role in ("generated", "real_used", "real_not_used", "real_unknown"):
        assert f"{role}" in printed
    assert "12" in printed
    assert f"--configfile {out}" in printed
    assert leaderboard_path("my_data") in printed  # results/my_data/... once `run` exists
    assert "# " in out.read_text()  # commented


def test_attribution_labelled_folders(tmp_path, capsys):
    gens = [_folder(tmp_path / g, 12, g, mode="RGB", seed=i) for i, g in enumerate("abc")]
    out = tmp_path / "att.yaml"
    pairs = [f"gen_{p.name}={p}" for p in gens]
    assert main(["init", "attribution", "--generated", *pairs, "-o", str(out)]) == 0
    cfg = _checked(out)
    ds = cfg["datasets"]["attribution"]
    assert ds["generated"] == {f"gen_{p.name}": str(p) for p in gens}
    assert ds["n_generators"] == 3
    assert cfg["ingest"]["conversions"] == ["grey"]  # RGB PNGs seen in the headers
    clusterers = {m["clusterer"]["name"] for m in cfg["attribution"]["methods"].values()}
    assert clusterers == {"kmeans"}
    assert {f["name"] for f in cfg["features"].values()} == {"spectrum", "dct", "lbp"}


def test_attribution_mixed_folder_leaves_k_to_estimate(tmp_path):
    mixed = _folder(tmp_path / "mixed", 15, "img")
    out = tmp_path / "mixed.yaml"
    assert main(["init", "attribution", "--generated", str(mixed), "-o", str(out)]) == 0
    ds = _checked(out)["datasets"]["attribution"]
    assert ds["generated"] == str(mixed) and "n_generators" not in ds
    out2 = tmp_path / "mixed4.yaml"
    argv = ["init", "attribution", "--generated", str(mixed), "--n-generators", "4"]
    assert main([*argv, "-o", str(out2)]) == 0
    assert _checked(out2)["datasets"]["attribution"]["n_generators"] == 4


def test_mixed_sizes_get_resize(tmp_path):
    a = _folder(tmp_path / "a", 3, "a", size=64)
    b = _folder(tmp_path / "b", 3, "b", size=80)
    out = tmp_path / "sizes.yaml"
    assert main(["init", "attribution", "--generated", str(a), str(b), "-o", str(out)]) == 0
    ingest = _checked(out)["ingest"]
    assert ingest["image_size"] == 256 and ingest["conversions"] == ["resize"]


def test_bad_folders_reported_together(membership_folders, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "bad.yaml"
    argv = ["init", "membership", "--generated", str(membership_folders["generated"])]
    argv += ["--real-used", str(tmp_path / "missing"), "--real-not-used", str(empty)]
    assert main([*argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--real-used" in err and "does not exist" in err
    assert "--real-not-used" in err and "no image files" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_other_problems(membership_folders, tmp_path, capsys):
    out = tmp_path / "taken.yaml"
    out.write_text("keep me\n")
    g = str(membership_folders["generated"])
    argv = ["init", "membership", "--generated", g, "--real-used", g]
    argv += ["--real-not-used", str(membership_folders["not_used"]), "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err
    assert "--real-used: the same folder as --generated" in err
    assert out.read_text() == "keep me\n"
    one = ["init", "attribution", "--generated", f"a={g}", "-o", str(tmp_path / "one.yaml")]
    assert main(one) == 2
    assert "one generator" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: a required flag left out
        main(["init", "membership", "--generated", g])
    assert exc.value.code == 2
    assert "--real-used" in capsys.readouterr().err


def test_duplicate_ids_across_roles(tmp_path, capsys):
    gen = _folder(tmp_path / "gen", 4, "x")
    used = _folder(tmp_path / "used", 4, "x")  # same file names: same image ids
    nu = _folder(tmp_path / "nu", 4, "n")
    argv = ["init", "membership", "--generated", str(gen), "--real-used", str(used)]
    assert main([*argv, "--real-not-used", str(nu), "-o", str(tmp_path / "d.yaml")]) == 2
    assert "more than once" in capsys.readouterr().err


@pytest.mark.workflow
def test_written_configs_dry_run(membership_folders, tmp_path, workflow_dir):
    out = workflow_dir / "mine.yaml"
    assert _init_membership(membership_folders, out) == 0
    gens = [_folder(tmp_path / "att" / g, 12, g, seed=i) for i, g in enumerate("ab")]
    att = workflow_dir / "theirs.yaml"
    assert main(["init", "attribution", "--generated", *map(str, gens), "-o", str(att)]) == 0
    for config in ("mine.yaml", "theirs.yaml"):
        proc = snakemake(workflow_dir, "all", "-n", "--configfile", config)
        assert "Traceback" not in proc.stderr


def test_workflow_catalog_files():
    """The files the Snakemake workflow catalog reads for its standardized-usage page."""
    settings = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert usage["mandatory-flags"]["desc"] and "flags" in usage["mandatory-flags"]
    assert set(usage["software-stack-deployment"]) == {"conda", "apptainer", "apptainer+conda"}
    assert isinstance(usage["report"], bool)
    readme = (ROOT / "config" / "README.md").read_text()
    assert "gantrace init membership" in readme
    schema = yaml.safe_load(SCHEMA.read_text())
    missing = [k for k in schema["properties"] if f"`{k}`" not in readme]
    assert not missing, f"config/README.md does not describe {missing}"
