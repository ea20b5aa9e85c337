"""The cluster path for real: profiles/slurm on a one-node SLURM cluster started here.

`tests/cluster/start_slurm.sh` installs (as root, with apt-get) and starts munged,
slurmctld and slurmd with a `cpu` and a `gpu` partition and one stand-in GPU. A small
workflow then runs through `--workflow-profile profiles/slurm` (partitions and account set
by its GANTRACE_SLURM_* variables), with one job cancelled by `scancel` and the run
repeated; a local run of the same config is the reference. Alongside, a one-rule workflow
overruns its `runtime` through the same profile. Skipped, with the reason, where SLURM
cannot be installed or the user is not root.

No accounting database: jobs are polled with `--slurm-status-command squeue`, and what
SLURM recorded is read back with `scontrol show job` (MinJobAge keeps finished jobs 10 min).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SUMMARY, TINY_MEMBERSHIP, copy_workflow

from gantrace.data import simulate

pytestmark = pytest.mark.slurm

SCRIPT = ROOT / "tests" / "cluster" / "start_slurm.sh"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

# One membership dataset, one shard: ingest -> embed (a network feature on the GPU
# partition with a GPU, a weight-free one there without) -> gather -> membership (CPU).
CONFIG = """\
seed: 0
ingest: {n_shards: 1}
datasets:
  m:
    task: membership
    generated: data/m/generated
    real_used: data/m/real_used
    real_not_used: data/m/real_not_used
    real_unknown: data/m/real_unknown
    truth: data/m/truth.csv
segmentation: {mask_source: threshold}
features:
  pixels: {name: pixels, size: 16}
  resnet18: {name: torchvision, arch: resnet18, weights: none, input_size: 32}
membership:
  n_folds: 2
  methods:
    pixels_knn: {feature: pixels, scorer: {name: knn, k: 1}}
    resnet18_knn: {feature: resnet18, scorer: {name: knn, k: 1}}
"""
DATA = {**TINY_MEMBERSHIP, "n_used": 8, "n_not_used": 8, "n_generated": 16, "n_unknown": 8}
# The tables and run files (plots left out: they add nothing to the cluster path).
TARGETS = [
    "results/small/leaderboard.csv",
    "results/small/m/scores.parquet",
    "results/small/submissions/m/checked.txt",
]
RESULTS = [
    "leaderboard.csv",
    "m/scores.parquet",
    *[f"submissions/m/{m}.csv" for m in ("pixels_knn", "resnet18_knn")],
]
PLACEHOLDERS = {
    "GANTRACE_SLURM_CPU_PARTITION": "cpu",
    "GANTRACE_SLURM_GPU_PARTITION": "gpu",
    "GANTRACE_SLURM_ACCOUNT": "gantrace",
}
# Poll every 2 s (the plugin's default waits 40 s before the first check). One thread per
# job, in both runs: the same threads give the same numbers.
POLL = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
THREADS = ["--max-threads", "1"]
SLURM = ["--workflow-profile", "profiles/slurm", "--slurm-status-command", "squeue"]
SLURM += [*POLL, *THREADS]
LOCAL = ["--cores", "2", *THREADS]  # profiles/default, as `snakemake` uses it here
CANCEL_RULE = "membership"
GPU_FEATURES = {"resnet18"}
GPU_RULES = {"train_unet", "segment", "embed", "train_features"}  # the profile's GPU partition

OVERRUN = """\
rule overrun:
    output: "overrun.txt"
    log: "logs/overrun.log"
    shell: "sleep 600 && touch {output}"
"""


def _free_port_pair():
    """A port p with p and p + 1 free (slurmctld, slurmd), so clusters do not collide."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Environment of a running one-node cluster; stopped (its daemons by pid) at the end."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the SLURM test cluster needs Linux")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (slurmd, apt-get install slurm-wlm munge)")
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_TEST_DIR": str(folder), "SLURM_TEST_PORT": str(_free_port_pair())}
    t0 = time.perf_counter()
    try:  # stopped whatever happens, a failed or timed-out start included
        start = subprocess.run(
            ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600
        )
        if start.returncode == 3:  # the script's "cannot run here": not root, no packages
            pytest.skip(start.stderr.strip().splitlines()[-1])
        assert start.returncode == 0, start.stdout + start.stderr
        source = 'source "$1" && printf "%s\\n%s" "$SLURM_CONF" "$PATH"'
        conf, path = subprocess.run(
            ["bash", "-c", source, "_", str(folder / "env.sh")],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.split("\n")  # fmt: skip
        yield {
            "env": {**env, "SLURM_CONF": conf, "PATH": path},
            "folder": folder,
            "start_s": time.perf_counter() - t0,
        }
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


def _snakemake(workdir, env, *args):
    """A background `snakemake` in `workdir`; its output goes to a file, its end is timed."""
    log = workdir / f"snakemake_{len(list(workdir.glob('snakemake_*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(SNAKEMAKE), *args], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    proc.log, started = log, time.perf_counter()

    def timed():
        proc.wait()
        proc.seconds = time.perf_counter() - started

    proc.timer = threading.Thread(target=timed, daemon=True)
    proc.timer.start()
    return proc


def _until_logged(proc, pattern, timeout=600):
    """Wait for `pattern` in a run's log, then interrupt it if it lingers: after a failure
    the plugin sleeps out its grown poll interval (up to a minute) before exiting."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if re.search(pattern, proc.log.read_text()):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
            break
        time.sleep(1)
    return _finish(proc)


def _finish(proc, timeout=600):
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # a hung run: stop it (its SLURM jobs go with the cluster)
            proc.kill()
    proc.timer.join()
    proc.text = proc.log.read_text()
    return proc


def slurm_jobs(env):
    """Every job slurmctld still knows (MinJobAge), as {field: value} of `scontrol show job`."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def rule_of(job):
    """(rule, wildcard values) from the plugin's `--comment rule_<rule>[_wildcards_<values>]`."""
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", job.get("Comment", ""))
    return (m.group(1), m.group(2) or "") if m else (None, "")


def gpu_request(job):
    return ",".join(v for k, v in job.items() if k.startswith("TresPer") and "gpu" in v)


def scheduled(text):
    """(rule, wildcard values, local?) of each job a Snakemake run started, from its log."""
    jobs = []
    for local, rule, body in re.findall(r"^(local)?rule (\w+):\n((?:    .*\n)*)", text, re.M):
        wc = re.search(r"^\s+wildcards: (.*)$", body, re.M)
        values = "_".join(kv.split("=", 1)[1] for kv in wc.group(1).split(", ")) if wc else ""
        jobs.append((rule, values, bool(local)))
    return jobs


def summary(run, cluster):
    """The jobs SLURM ran, their partitions and GPU requests, and wall times (for the log)."""
    lines = [f"cluster up in {cluster['start_s']:.0f} s; slurm test runs {run['seconds']:.0f} s"]
    for key in ("first", "rerun", "local", "overrun"):
        lines.append(f"  {key:8s} rc={run[key].returncode} {run[key].seconds:5.0f} s")
    lines.append("  JobId  state      partition  gpu request      rule (wildcards)")
    for job in run["jobs"] + run["overrun_jobs"]:
        rule, wc = rule_of(job)
        lines.append(
            f"  {job['JobId']:>5}  {job.get('JobState', ''):10s} {job.get('Partition', ''):10s} "
            f"{gpu_request(job) or '-':16s} {rule} ({wc})"
        )
    return lines


@pytest.fixture(scope="module")
def run(slurm_cluster, tmp_path_factory, request):
    """The workflow on the cluster (one job cancelled, then rerun), a local reference run of
    the same config, and a one-rule overrun, all started at once (they mostly wait)."""
    env = {**slurm_cluster["env"], "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    env.update(PLACEHOLDERS)
    t0 = time.perf_counter()
    work, ref = (copy_workflow(tmp_path_factory.mktemp(n)) for n in ("slurm_wf", "local_wf"))
    simulate.write_dataset(DATA, work / "data" / "m")
    shutil.copytree(work / "data", ref / "data")
    for folder in (work, ref):
        (folder / "small.yaml").write_text(CONFIG)
    over = tmp_path_factory.mktemp("overrun")
    (over / "Snakefile").write_text(OVERRUN)

    runs = {}
    try:
        runs["overrun"] = _snakemake(
            over, env, "--workflow-profile", str(ROOT / "profiles" / "slurm"),
            "--slurm-status-command", "squeue", *POLL, "--set-resources", "overrun:runtime=1",
        )  # fmt: skip
        runs["local"] = _snakemake(ref, env, *TARGETS, "--configfile", "small.yaml", *LOCAL)
        runs["first"] = _snakemake(work, env, *TARGETS, "--configfile", "small.yaml", *SLURM)
        cancelled = _cancel_when_running(runs["first"], work, env)
        _finish(runs["first"])
        runs["rerun"] = _snakemake(work, env, *TARGETS, "--configfile", "small.yaml", *SLURM)
        _finish(runs["rerun"])
        _finish(runs["local"])
        _until_logged(runs["overrun"], r"Error in rule overrun:[\s\S]*external_jobid")
    finally:
        for proc in runs.values():  # a failed fixture leaves no Snakemake running
            if proc.poll() is None:
                proc.kill()
    jobs = slurm_jobs(env)
    result = {
        **runs,
        "work": work,
        "ref": ref,
        "cancelled": cancelled,
        "jobs": [j for j in jobs if j.get("WorkDir") == str(work)],
        "overrun_jobs": [j for j in jobs if j.get("WorkDir") == str(over)],
        "seconds": time.perf_counter() - t0,
    }
    request.config.stash.setdefault(SUMMARY, []).append(
        ("SLURM test cluster", summary(result, slurm_cluster))
    )
    return result


def _cancel_when_running(proc, work, env, rule=CANCEL_RULE, timeout=600):
    """`scancel` the first job of `rule` seen running (it runs for seconds: Python start-up)."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        for job in slurm_jobs(env):
            mine = job.get("WorkDir") == str(work) and rule_of(job)[0] == rule
            if mine and job.get("JobState") == "RUNNING":
                subprocess.run(["scancel", job["JobId"]], env=env, check=True)
                return job
        time.sleep(0.2)
    return None


def test_cancelled_job_fails_the_run_and_the_rerun_completes(run):
    first, rerun, cancelled = run["first"], run["rerun"], run["cancelled"]
    assert cancelled is not None, f"no {CANCEL_RULE} job seen running:\n{first.text}"
    assert first.returncode != 0, first.text
    assert f"Error in rule {CANCEL_RULE}" in first.text and "CANCELLED" in first.text
    states = {j["JobId"]: j["JobState"] for j in run["jobs"]}
    assert states[cancelled["JobId"]] == "CANCELLED"
    assert rerun.returncode == 0, rerun.text
    again = [(r, wc) for r, wc, local in scheduled(rerun.text) if not local]
    assert rule_of(cancelled) in again, again
    assert {r for r, _ in again} == {CANCEL_RULE}, again  # nothing upstream was redone


def test_every_job_of_a_non_local_rule_went_through_sbatch(run):
    ran = scheduled(run["first"].text) + scheduled(run["rerun"].text)
    submitted = Counter(rule_of(j) for j in run["jobs"])
    assert submitted == Counter((r, wc) for r, wc, local in ran if not local), ran
    local_rules = {r for r, _, local in ran if local}
    assert {"manifest", "score", "leaderboard", "submission", "check_run_files"} <= local_rules
    assert not local_rules & {r for r, _ in submitted}, "a localrule was submitted"
    assert {r for r, _ in submitted} == {"ingest", "embed", "gather_features", "membership"}


def test_gpu_rules_go_to_the_gpu_partition_with_a_gpu(run):
    for job in run["jobs"]:
        rule, wc = rule_of(job)
        network = rule == "embed" and wc.split("_")[1] in GPU_FEATURES
        partition = "gpu" if rule in GPU_RULES else "cpu"
        assert job["Partition"] == partition, (rule, wc, job["Partition"])
        assert ("gpu:1" in gpu_request(job)) == network, (rule, wc, gpu_request(job))
        assert job["Account"] == "gantrace", job["Account"]


def test_a_gpu_job_logs_the_granted_gpu_and_falls_back_to_cpu(run):
    log = (run["work"] / "results/small/logs/embed/m/resnet18/full/0.log").read_text()
    device = re.search(r"^device: .*$", log, re.M)
    assert device, log
    assert device.group(0).startswith("device: cpu (asked: auto; CUDA available: False")
    assert "CUDA_VISIBLE_DEVICES=0" in device.group(0) and "SLURM_STEP_GPUS=0" in device.group(0)
    # a weight-free feature picks no device, even on the GPU partition
    assert (
        "device:" not in (run["work"] / "results/small/logs/embed/m/pixels/full/0.log").read_text()
    )


def test_results_equal_the_local_run(run):
    assert run["local"].returncode == 0, run["local"].text
    for name in RESULTS:
        on_slurm, local = (run[k] / "results" / "small" / name for k in ("work", "ref"))
        assert on_slurm.read_bytes() == local.read_bytes(), name
    pd.testing.assert_frame_equal(
        pd.read_parquet(run["work"] / "results/small/m/scores.parquet"),
        pd.read_parquet(run["ref"] / "results/small/m/scores.parquet"),
    )


def test_a_job_over_its_runtime_is_reported_with_rule_and_log(run):
    proc, jobs = run["overrun"], run["overrun_jobs"]
    assert proc.returncode != 0, proc.text
    assert [j["JobState"] for j in jobs] == ["TIMEOUT"], jobs
    assert jobs[0]["TimeLimit"] == "00:01:00"
    assert "Error in rule overrun" in proc.text and "'TIMEOUT'" in proc.text, proc.text
    slurm_log = re.search(r"\S+/\.snakemake/slurm_logs/rule_overrun/\S+\.log", proc.text)
    assert slurm_log and "logs/overrun.log" in proc.text, proc.text
    assert "DUE TO TIME LIMIT" in Path(slurm_log.group(0)).read_text()
