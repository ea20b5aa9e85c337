import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Lines a test module asks to show at the end of the run: (title, [line, ...]) pairs.
SUMMARY = pytest.StashKey[list]()

# A small simulated membership dataset (written to folders by the workflow tests).
TINY_MEMBERSHIP = {
    "task": "membership",
    "seed": 3,
    "n_used": 12,
    "n_not_used": 12,
    "n_generated": 24,
    "n_unknown": 12,
}


def copy_workflow(dest):
    """A runnable copy of the workflow (Snakefile, rules, scripts, config, profiles)."""
    for item in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / item)
    return dest


def snakemake(workdir, *args, check=True, timeout=900):
    """Run the workflow's Snakemake in `workdir`; return the CompletedProcess."""
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), *args, "--cores", "2", "--resources", "gpu=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workflow_dir(tmp_path):
    return copy_workflow(tmp_path)


def pytest_terminal_summary(terminalreporter, config):
    for title, lines in config.stash.get(SUMMARY, []):
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
