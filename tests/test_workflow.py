"""The whole workflow on a tiny config: outputs, scores, reruns, refusals."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TINY_MEMBERSHIP, copy_workflow, snakemake
from PIL import Image

from gantrace.data import simulate
from gantrace.data.ingest import count_rejected
from gantrace.evaluation.runfiles import validate_run_file

pytestmark = pytest.mark.workflow

TINY = ROOT / "tests" / "data" / "tiny.yaml"
MEMBERSHIP = TINY_MEMBERSHIP


def planned_jobs(proc):
    """{rule: count} from a dry run's job table."""
    jobs, in_table = {}, False
    for line in proc.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                jobs[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return jobs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    shutil.copy(TINY, work / "tiny.yaml")
    simulate.write_dataset(MEMBERSHIP, work / "data" / "tiny_membership")
    snakemake(work, "all", "--configfile", "tiny.yaml")
    return work


def test_outputs_and_scores(tiny_run):
    board = pd.read_csv(tiny_run / "results" / "tiny" / "leaderboard.csv")
    names = set(board.method)
    assert {
        "pixels_knn",
        "pixels_outer_knn",
        "lbp_cluster_min",
        "fused_vote",
        "fused_mean_rank",
        "spectrum_kmeans",
        "dinov2_kmeans",
    } <= names
    assert board.score.notna().all()
    mem = board[board.task == "membership"]
    assert set(mem.split) == {"dev", "test"}
    assert mem.f1.between(0, 1).all() and mem.auc.between(0, 1).all()
    # every figure has its interval; the tie mark; one honest row for the dev/test pair
    for m in ("f1", "auc", "kappa", "balanced_accuracy", "tpr_at_fpr_10pct", "ari", "nmi"):
        rows = board[board[m].notna()]
        assert len(rows) and (rows[f"{m}_lo"] <= rows[m] + 1e-9).all(), m
        assert (rows[m] <= rows[f"{m}_hi"] + 1e-9).all(), m
    assert (board.score_lo <= board.score).all() and board.tied_with_best.notna().all()
    assert mem.tpr_at_fpr_1pct.isna().all()  # 12 not-used images cannot resolve 1 %
    picked = board[board.method == "selected_on_dev"]
    assert list(picked.dataset) == ["tiny_membership"] and picked.split.item() == "test"
    assert picked.selected.item() in names and picked["rank"].isna().all()
    att = board[board.task == "attribution"]
    assert att.ari.between(-1, 1).all() and len(att) == 5
    # The simulator's generator artefacts are strong in the residual spectrum.
    assert att.set_index("method").loc["spectrum_kmeans", "ari"] > 0.5
    for ds in ("tiny_membership", "tiny_attribution"):
        assert (tiny_run / "results" / "tiny" / ds / "manifest.parquet").exists()
    masks = tiny_run / "results" / "tiny" / "tiny_membership" / "lung_masks"
    assert sorted(p.name for p in masks.glob("*.h5"))
    metrics = (tiny_run / "results" / "tiny" / "models" / "lung_unet_metrics.json").read_text()
    assert "val_dice" in metrics


def test_run_files_follow_the_rules(tiny_run):
    man = pd.read_parquet(tiny_run / "results" / "tiny" / "tiny_membership" / "manifest.parquet")
    unknown = sorted(man.image_id[man.role == "real_unknown"])
    sub = tiny_run / "results" / "tiny" / "submissions" / "tiny_membership" / "pixels_knn.csv"
    validate_run_file(sub, unknown, {0, 1})
    lines = sub.read_text().splitlines()
    assert len(lines) == len(unknown) and "," in lines[0]
    att = tiny_run / "results" / "tiny" / "submissions" / "tiny_attribution" / "fused_vote.csv"
    labels = {int(line.split(",")[1]) for line in att.read_text().splitlines()}
    assert labels <= {1, 2, 3}


def test_nothing_to_do_after_a_run(tiny_run):
    proc = snakemake(tiny_run, "all", "-n", "--configfile", "tiny.yaml")
    assert planned_jobs(proc) == {}, proc.stdout


def test_changed_method_reruns_only_its_chain(tiny_run):
    cfg = (tiny_run / "tiny.yaml").read_text()
    changed = cfg.replace(
        "pixels_knn: {feature: pixels, scorer: {name: knn, k: 1}}",
        "pixels_knn: {feature: pixels, scorer: {name: knn, k: 2}}",
    )
    assert changed != cfg
    (tiny_run / "changed.yaml").write_text("run: tiny\n" + changed)  # the same run
    jobs = planned_jobs(snakemake(tiny_run, "all", "-n", "--configfile", "changed.yaml"))
    # the method, both fusions that use it, its dataset's score, the board, 3 run files and
    # their check, the membership plot, its forest plot and the board's table -- no feature,
    # mask or other method
    assert jobs == {
        "membership": 1,
        "fusion": 2,
        "score": 1,
        "leaderboard": 1,
        "leaderboard_table": 1,
        "submission": 3,
        "check_run_files": 1,
        "plot_membership": 1,
        "plot_forest": 1,
        "all": 1,
    }, jobs


def test_changed_image_reruns_only_its_shard(tiny_run):
    man = pd.read_parquet(tiny_run / "results" / "tiny" / "tiny_membership" / "manifest.parquet")
    row = man[man.role == "real_used"].iloc[0]
    path = tiny_run / row.path
    img = np.asarray(Image.open(path)).copy()
    img[100:110, 100:110] = 255 - img[100:110, 100:110]
    Image.fromarray(img).save(path)
    jobs = planned_jobs(snakemake(tiny_run, "all", "-n", "--configfile", "tiny.yaml"))
    assert jobs.get("ingest") == 1 and jobs.get("segment") == 1, jobs
    # pixels/full, pixels/outer, lbp/full for the changed shard only
    assert jobs.get("embed") == 3, jobs
    assert "train_unet" not in jobs and "simulate_tiny_attribution" not in jobs
    assert jobs.get("gather_features") == 3
    snakemake(tiny_run, "all", "--configfile", "tiny.yaml")
    assert planned_jobs(snakemake(tiny_run, "all", "-n", "--configfile", "tiny.yaml")) == {}


def test_bad_images_stop_before_embedding(workflow_dir):
    data = workflow_dir / "data" / "bad"
    simulate.write_dataset(MEMBERSHIP, data)
    used = sorted((data / "real_used").glob("*.png"))
    raw = used[0].read_bytes()
    used[0].write_bytes(raw[: len(raw) // 3])  # truncated PNG
    (data / "real_used" / "notes.png").write_text("this is not an image\n")
    rgb = np.stack([np.asarray(Image.open(used[1]))] * 3, axis=-1)
    Image.fromarray(rgb, "RGB").save(used[1])
    cfg = TINY.read_text().split("datasets:")[0] + (
        "datasets:\n  bad:\n    task: membership\n"
        "    generated: data/bad/generated\n    real_used: data/bad/real_used\n"
        "    real_not_used: data/bad/real_not_used\n"
        "segmentation: {mask_source: threshold}\n"
        "features: {pixels: {name: pixels, size: 16}}\n"
        "membership:\n  methods:\n    pixels_knn: {feature: pixels, scorer: {name: knn}}\n"
    )
    (workflow_dir / "bad.yaml").write_text(cfg)
    proc = snakemake(workflow_dir, "all", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr  # a data problem: its message only
    log = (workflow_dir / "results" / "bad" / "logs" / "manifest" / "bad.log").read_text()
    assert "3 input image(s) cannot be used" in log
    assert used[0].name in log and "truncated" in log
    assert "notes.png" in log and "not an image" in log
    assert used[1].name in log and "RGB" in log
    assert not (workflow_dir / "results" / "bad" / "bad" / "features").exists()
    # shards already decoded are kept
    assert list((workflow_dir / "results" / "bad" / "bad" / "images").glob("*.h5"))


def test_skipped_images_reach_the_console(workflow_dir):
    """invalid_images: skip: the manifest job says on the console how many were left out
    and where they are listed."""
    data = workflow_dir / "data" / "skip"
    simulate.write_dataset(MEMBERSHIP, data)
    (data / "real_used" / "notes.png").write_text("this is not an image\n")
    cfg = (
        "ingest: {n_shards: 1, invalid_images: skip}\n"
        "datasets:\n  skip:\n    task: membership\n"
        "    generated: data/skip/generated\n    real_used: data/skip/real_used\n"
        "    real_not_used: data/skip/real_not_used\n"
        "features: {pixels: {name: pixels, size: 16}}\n"
        "membership:\n  methods:\n    pixels_knn: {feature: pixels, scorer: {name: knn}}\n"
    )
    (workflow_dir / "skip.yaml").write_text(cfg)
    proc = snakemake(
        workflow_dir, "results/skip/skip/manifest.parquet", "--configfile", "skip.yaml"
    )
    rejected = "results/skip/skip/rejected.parquet"
    assert "skip: 1 unusable image(s) skipped" in proc.stdout + proc.stderr
    assert rejected in proc.stdout + proc.stderr
    assert count_rejected(workflow_dir / rejected) == 1


def test_misspelt_config_key_is_named(workflow_dir):
    cfg = TINY.read_text().replace("n_folds: 3", "n_fold: 3")
    (workflow_dir / "typo.yaml").write_text(cfg)
    proc = snakemake(workflow_dir, "all", "-n", "--configfile", "typo.yaml", check=False)
    assert proc.returncode != 0
    assert "n_fold" in proc.stdout + proc.stderr


def test_transformers_demo_config_plans_its_dinov2_jobs(workflow_dir):
    """config/demo-transformers.yaml (DINOv2 through transformers) parses and plans; here
    with random-init weights, so that the dry run needs no download."""
    text = (workflow_dir / "config" / "demo-transformers.yaml").read_text()
    offline = text.replace("weights: imagenet, size: small", "weights: none, size: small")
    assert offline != text
    (workflow_dir / "dt.yaml").write_text(offline)
    proc = snakemake(workflow_dir, "all", "-n", "--configfile", "dt.yaml")
    jobs = planned_jobs(proc)
    # per dataset and shard (2 x 2): dinov2 and the one weight-free feature its task uses
    assert jobs["embed"] == 2 * 2 * 2, jobs
    assert "dinov2" in proc.stdout and jobs["membership"] == 2 and jobs["attribution"] == 2
