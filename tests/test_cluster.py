"""The SLURM profile: GPU rules ask for a GPU on the GPU partition, no global GPU cap.

A dry run with `--workflow-profile profiles/slurm` plans every job with its resources and
needs no SLURM installation.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from string import Template
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT

from gantrace.cluster import check_slurm_resources, unset_slurm_resources, unset_variables
from gantrace.errors import ConfigError
from gantrace.torch_env import pick_device

PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"train_unet", "segment", "embed"}
TABLE_RULES = {"leaderboard", "submission", "check_run_files", "manifest", "score"}
TORCH = {"torchvision", "dinov2", "timm", "efficientnet_lite0"}
# A site's partitions and account: the profile's placeholders are these variables.
SITE = {
    "GANTRACE_SLURM_CPU_PARTITION": "short",
    "GANTRACE_SLURM_GPU_PARTITION": "gpu",
    "GANTRACE_SLURM_ACCOUNT": "lab42",
}


def dry_run(workdir, site):
    """`snakemake all -n --workflow-profile profiles/slurm` with the `site` variables only."""
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "all", "-n", "--workflow-profile", "profiles/slurm"]
    env = {k: v for k, v in os.environ.items() if k not in SITE}
    env |= {**site, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)


def planned_jobs(workdir):
    """(rule, wildcards line, resources dict) of every job `snakemake all -n` plans."""
    proc = dry_run(workdir, SITE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and res:
            pairs = (kv.split("=", 1) for kv in res.group(1).split(", "))
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs.append((head.group(1), wildcards.group(1) if wildcards else "", dict(pairs)))
    return jobs


def test_slurm_profile_dry_run(workflow_dir):
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert "resources" not in profile, "no global resource cap (gpu) in the SLURM profile"
    gpu_partition = Template(profile["set-resources"]["train_unet"]["slurm_partition"])
    cpu_partition = Template(profile["default-resources"]["slurm_partition"])
    gpu_partition, cpu_partition = (t.substitute(SITE) for t in (gpu_partition, cpu_partition))
    assert gpu_partition != cpu_partition

    features = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["features"]
    torch_features = {f for f, spec in features.items() if spec["name"] in TORCH}
    jobs = planned_jobs(workflow_dir)
    rules = {rule for rule, _, _ in jobs}
    assert GPU_RULES <= rules, rules
    for rule, wildcards, res in jobs:
        if rule in GPU_RULES:
            assert res.get("slurm_partition") == gpu_partition, (rule, res)
        else:
            assert res.get("slurm_partition") == cpu_partition, (rule, res)
            assert res.get("gpu", "0") == "0", (rule, res)
        assert res.get("slurm_account"), (rule, res)
        assert "runtime" in res and "mem_mb" in res, (rule, res)
        if rule in {"train_unet", "segment"}:
            assert res.get("gpu") == "1", (rule, res)
        if rule == "embed":
            feature = re.search(r"feature=([^,\s]+)", wildcards).group(1)
            assert res.get("gpu") == ("1" if feature in torch_features else "0"), (wildcards, res)


def test_table_rules_are_local():
    """Cheap table rules run on the submitting node (`localrule: True` in their rule)."""
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    blocks = dict(re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M))
    for rule in TABLE_RULES:
        assert rule in blocks, rule
        assert re.search(r"^\s+localrule: True$", blocks[rule], re.M), rule


def test_unset_placeholders_are_refused_at_parse_time(workflow_dir):
    """Without the variables nothing is planned: the error names each key and variable."""
    proc = dry_run(workflow_dir, {"GANTRACE_SLURM_CPU_PARTITION": "short"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "SLURM settings left unset" in out, out
    assert "default-resources: slurm_account: $GANTRACE_SLURM_ACCOUNT" in out
    assert "set-resources: train_unet: slurm_partition: $GANTRACE_SLURM_GPU_PARTITION" in out
    assert "Set GANTRACE_SLURM_ACCOUNT, GANTRACE_SLURM_GPU_PARTITION (" in out
    assert "default-resources: slurm_partition" not in out  # that one is set
    assert "rule " not in out  # refused before any job was planned


def test_check_slurm_resources_names_what_is_unset():
    env = {"CPU": "short", "EMPTY": ""}
    assert unset_variables("$CPU-${GPU}_$X", env) == ["GPU", "X"]
    assert unset_variables(4000, env) == [] and unset_variables("plain", env) == []
    raw = SimpleNamespace(raw="$GPU")  # a Snakemake Resource keeps the profile text as .raw
    defaults = {"slurm_partition": "$CPU", "slurm_account": "$EMPTY", "runtime": 30}
    per_rule = {"embed": {"slurm_partition": raw, "tmpdir": "$NOT_SLURM"}}
    assert unset_slurm_resources(defaults, per_rule, env) == [
        ("set-resources: embed", "slurm_partition", "$GPU", ["GPU"])
    ]
    settings = SimpleNamespace(default_resources=defaults, overwrite_resources=per_rule)
    with pytest.raises(ConfigError, match=r"(?s)embed: slurm_partition: \$GPU.*Set GPU \("):
        check_slurm_resources(settings, env)
    check_slurm_resources(settings, {**env, "GPU": "gpu"})  # all set: no error
    check_slurm_resources(SimpleNamespace(default_resources=None, overwrite_resources={}), {})


def test_pick_device_logs_the_gpus_a_scheduler_granted(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    monkeypatch.delenv("SLURM_STEP_GPUS", raising=False)
    device = pick_device("auto")
    line = capsys.readouterr().out.strip()
    assert line.endswith("granted: CUDA_VISIBLE_DEVICES=0 SLURM_JOB_GPUS=0)"), line
    if not torch.cuda.is_available():  # the stand-in GPU of tests/cluster: CPU, cleanly
        assert device == torch.device("cpu")
        assert line.startswith("device: cpu (asked: auto; CUDA available: False;"), line
