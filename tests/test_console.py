"""The console of a run: the compact logger (one line per finished job) and the summary."""

import io
import logging
from types import SimpleNamespace

import pandas as pd
from snakemake_interface_logger_plugins.common import LogEvent

from gantrace.evaluation.summary import jobs_done, run_summary
from snakemake_logger_plugin_gantrace import LogHandler, job_counts, job_label


def _results(tmp_path, ci=False, refused=0):
    res = tmp_path / "results" / "demo"
    for ds, n in (("mem", 330), ("att", 180)):
        (res / ds).mkdir(parents=True)
        pd.DataFrame({"image_id": [f"i{k}" for k in range(n)]}).to_parquet(
            res / ds / "manifest.parquet"
        )
    pd.DataFrame(
        {"path": [f"bad{k}.png" for k in range(refused)], "reason": "truncated"}
    ).to_parquet(res / "mem" / "rejected.parquet")
    board = pd.DataFrame(
        {
            "dataset": ["att", "att", "mem", "mem", "mem"],
            "task": ["attribution"] * 2 + ["membership"] * 3,
            "split": ["all", "all", "dev", "test", "test"],
            "rank": [1, 2, 1, 1, 2],
            "method": ["dct_kmeans", "lbp_kmeans", "fused_mean_rank", "fused_vote", "pixels_knn"],
            "metric": ["ari", "ari", "f1", "f1", "f1"],
            "score": [1.0, 0.9, 0.885, 0.9123, 0.89],
        }
    )
    if ci:
        board["f1_lo"] = [None, None, 0.8, 0.83, 0.8]
        board["f1_hi"] = [None, None, 0.95, 0.97, 0.95]
    board.to_csv(res / "leaderboard.csv", index=False)
    return res


DATASETS = {"mem": {"task": "membership"}, "att": {"task": "attribution"}}


def test_summary_names_datasets_jobs_refusals_board_and_best(tmp_path):
    res = _results(tmp_path, refused=3)
    log = tmp_path / "snakemake.log"
    log.write_text("1 of 119 steps (1%) done\n...\n119 of 119 steps (100%) done\n")
    text = run_summary(res, DATASETS, log)
    lines = text.splitlines()
    assert lines[0] == "gantrace: done. 2 dataset(s), 510 images, 119 jobs run"
    mem = next(line for line in lines if line.strip().startswith("mem "))
    assert "membership" in mem and "330 images" in mem
    assert "best (test): fused_vote f1 0.912" in mem  # the unknown set first
    assert any("best (dev): fused_mean_rank f1 0.885" in line for line in lines)
    assert any("att " in line and "best (all): dct_kmeans ari 1.000" in line for line in lines)
    assert "images refused: 3" in text and str(res / "mem" / "rejected.parquet") in text
    assert f"leaderboard: {res / 'leaderboard.csv'}" in text
    assert "[" not in text  # no CI columns on this board


def test_summary_prints_confidence_intervals_when_the_board_has_them(tmp_path):
    text = run_summary(_results(tmp_path, ci=True), DATASETS)
    assert "fused_vote f1 0.912 [0.830, 0.970]" in text
    assert "dct_kmeans ari 1.000" in text and "dct_kmeans ari 1.000 [" not in text
    assert "jobs run" not in text.splitlines()[0]  # no log given
    assert "images refused: none" in text


def test_summary_counts_ties_names_the_dev_choice_and_independent_images(tmp_path):
    res = _results(tmp_path, ci=True)
    board = pd.read_csv(res / "leaderboard.csv")
    board["tied_with_best"] = [False, True, False, False, True]
    board["boot_unit"] = ["group", "group", "image", "image", "image"]
    board["selected"] = ""
    pick = board.iloc[[4]].assign(method="selected_on_dev", selected="pixels_knn", rank=None)
    pd.concat([pick, board]).to_csv(res / "leaderboard.csv", index=False)
    text = run_summary(res, DATASETS)
    assert "best (test): fused_vote f1 0.912 [0.830, 0.970] (1 of 1 others tied with it)" in text
    assert "best (all): dct_kmeans ari 1.000 (1 of 1 others tied with it)" in text
    assert "selected on dev (test): pixels_knn f1 0.890 [0.800, 0.950]" in text
    note = next(line for line in text.splitlines() if "intervals:" in line)
    assert "single images on mem;" in note and "assume independent images" in note
    assert "att" not in note  # its intervals resampled groups


def test_summary_without_results_does_not_fail(tmp_path):
    text = run_summary(tmp_path / "nothing", DATASETS)
    assert "0 images" in text and "? images" in text
    assert jobs_done(tmp_path / "missing.log") is None
    assert jobs_done([]) is None
    log = tmp_path / "s.log"
    log.write_text("3 of 9 steps (33%) done\n9 of 9 steps (100%) done\n")
    assert jobs_done([str(log)]) == 9  # Snakemake gives onsuccess a list of log files


# -- the logger -------------------------------------------------------------------------------


def _handler(dryrun=False):
    settings = SimpleNamespace(
        printshellcmds=False,
        nocolor=True,
        quiet=set(),
        debug_dag=False,
        verbose=False,
        show_failed_logs=True,
        stdout=True,
        dryrun=dryrun,
    )
    handler = LogHandler(settings, None)
    handler.stream = io.StringIO()
    return handler


def _record(msg, **extra):
    return logging.makeLogRecord({"msg": msg, "levelno": logging.INFO, **extra})


def test_logger_prints_one_line_per_finished_job_and_no_chatter():
    h = _handler()
    job = dict(rule_name="embed", wildcards={"dataset": "demo", "feature": "lbp", "shard": "3"})
    for rec in (
        _record("Select jobs to execute..."),
        _record("Execute 2 jobs..."),
        _record("x", event=LogEvent.RUN_INFO, stats={"embed": 2, "all": 1, "total": 3}),
        _record(None, event=LogEvent.JOB_INFO, jobid=7, input=["a.png"] * 300, **job),
        _record(None, event=LogEvent.SHELLCMD, cmd=None),
        _record("Finished jobid: 7", event=LogEvent.JOB_FINISHED, job_id=7),
        _record(None, event=LogEvent.PROGRESS, done=1, total=3),
        _record("Complete log(s): .snakemake/log/x.log"),
    ):
        if h.filter(rec):
            h.emit(rec)
    lines = h.stream.getvalue().splitlines()
    assert lines[0] == "3 jobs to run: embed 2, all 1"
    assert lines[1].startswith("[1/3] embed demo lbp 3  (")
    assert lines[2] == "Complete log(s): .snakemake/log/x.log"
    assert len(lines) == 3
    assert "a.png" not in h.stream.getvalue() and "None" not in h.stream.getvalue()


def test_logger_keeps_job_errors_whole_and_dry_runs_verbose():
    h = _handler()
    err = _record(
        "x",
        event=LogEvent.JOB_ERROR,
        rule_name="embed",
        rule_msg=None,
        jobid=7,
        input=[],
        output=["f.h5"],
        log=["results/logs/embed.log"],
        conda_env=None,
        shellcmd=None,
        aux={},
    )
    h.emit(err)
    out = h.stream.getvalue()
    assert "Error in rule embed:" in out and "results/logs/embed.log" in out
    dry = _handler(dryrun=True)
    dry.emit(_record("Job stats:\njob  count", event=LogEvent.RUN_INFO, stats={"total": 1}))
    assert dry.stream.getvalue() == "Job stats:\njob  count\n"  # Snakemake's own table
    assert job_label("all", {}) == "all"
    assert job_counts({"a": 2, "total": 2}) == "2 jobs to run: a 2"
