"""Repeats over seeds: how much a stochastic method's scores move with its seed alone.

`evaluation.repeats: N` reruns each stochastic method (a part with `stochastic` or `trains`:
k-means / GMM initialisation, t-SNE, a trained network) under seeds seed .. seed + N - 1;
`summarise` gives each metric's mean and sd (ddof 1) over the runs, `join` puts the primary
metric's into the leaderboard next to its one-run figure.
"""

import pandas as pd

from gantrace.evaluation.metrics import METRICS

COLUMNS = ["dataset", "task", "method", "split", "metric", "mean", "sd", "repeats"]


def summarise(per_run):
    """One row per (dataset, method, split, metric) of `score_results` tables, each with a
    `repeat` column: mean, sd and the number of repeats scored."""
    runs = [t for t in per_run if len(t)]
    if not runs:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(runs, ignore_index=True)
    metrics = [m for task in METRICS.values() for m in task if m in table.columns]
    long = table.melt(
        id_vars=["dataset", "task", "method", "split", "repeat"],
        value_vars=metrics,
        var_name="metric",
    ).dropna(subset=["value"])
    keys = ["dataset", "task", "method", "split", "metric"]
    out = long.groupby(keys, sort=False).value.agg(mean="mean", sd="std", repeats="count")
    return out.reset_index()[COLUMNS]


def join(board, summaries):
    """The leaderboard with `<metric>_mean`, `<metric>_sd` (the row's primary metric) and
    `repeats` columns for the repeated methods; blank for the others (deterministic methods
    and fusions, run once)."""
    tables = [t for t in summaries if len(t)]
    if not tables or not len(board):
        return board
    rep = pd.concat(tables, ignore_index=True)
    keys = ["dataset", "method", "split", "metric"]
    found = board[keys].merge(rep, on=keys, how="left")
    board = board.copy()
    for metric in board.metric.unique():
        mine = (board.metric == metric).to_numpy()
        for stat in ("mean", "sd"):
            board[f"{metric}_{stat}"] = found[stat].where(mine).to_numpy()
    board["repeats"] = pd.Series(found["repeats"].to_numpy(), index=board.index).astype("Int64")
    return board
