"""The SLURM profile: GPU rules ask for a GPU on the GPU partition, no global GPU cap.

A dry run with `--workflow-profile profiles/slurm` plans every job with its resources and
needs no SLURM installation.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"train_unet", "segment", "embed"}
TABLE_RULES = {"leaderboard", "submission", "check_run_files", "manifest", "score"}
TORCH = {"torchvision", "dinov2", "timm"}


def planned_jobs(workdir):
    """(rule, wildcards line, resources dict) of every job `snakemake all -n` plans."""
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "all", "-n", "--workflow-profile", "profiles/slurm"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)
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
    gpu_partition = profile["set-resources"]["train_unet"]["slurm_partition"]
    cpu_partition = profile["default-resources"]["slurm_partition"]
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
