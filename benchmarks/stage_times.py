"""Wall time, CPU time and peak memory per workflow stage, from Snakemake's `benchmark:` timing files
(results/<run>/timings/).

Run after a workflow run:  python benchmarks/stage_times.py [results/<run>]  (default: the demo)
"""

import sys
from pathlib import Path

import pandas as pd


def stage_table(results):
    rows = []
    timings = Path(results, "timings")
    for tsv in sorted(timings.rglob("*.tsv")):
        rel = tsv.relative_to(timings)
        t = pd.read_csv(tsv, sep="\t")
        rows.append(
            {
                "stage": rel.parts[0].removesuffix(".tsv"),
                "job": str(rel.with_suffix("")),
                "wall_s": float(t.s.iloc[0]),
                "cpu_s": float(t.cpu_time.iloc[0]),
                "max_rss_mb": float(pd.to_numeric(t.max_rss, errors="coerce").iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def main(results="results/demo"):
    jobs = stage_table(results)
    if jobs.empty:
        print(f"no benchmark files under {results}/benchmarks: run the workflow first")
        return
    summary = (
        jobs.groupby("stage")
        .agg(
            jobs=("job", "count"),
            wall_s=("wall_s", "sum"),
            cpu_s=("cpu_s", "sum"),
            peak_rss_mb=("max_rss_mb", "max"),
        )
        .sort_values("wall_s", ascending=False)
    )
    print(summary.to_string(float_format="%.1f"))
    print(f"\ntotal job wall time {jobs.wall_s.sum():.1f} s over {len(jobs)} jobs")


if __name__ == "__main__":
    main(*sys.argv[1:])
