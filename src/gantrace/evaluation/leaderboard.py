"""The leaderboard: every scored method and fusion, ranked per dataset and split."""

import pandas as pd

from gantrace.evaluation.metrics import COUNTS, METRICS, PRIMARY

COLUMNS = [*METRICS["membership"], *METRICS["attribution"], *COUNTS]
COLUMNS += [m for m in METRICS["subset_attribution"] if m not in COLUMNS]
EMPTY_COLUMNS = ["dataset", "task", "split", "rank", "method", "kind", "n"]


def rank(scores, metrics=None, catalogue=None):
    """One table of the `scores` tables (`score_results`), ranked per dataset and split by
    the primary metric, best first (ties by method name).

    `metrics` maps a dataset to its metric (config `datasets.<ds>.metric`), else `PRIMARY`
    of its task; `catalogue` maps a method or fusion name to the catalogue id it came from.
    """
    metrics = {d: m for d, m in (metrics or {}).items() if m}
    catalogue = catalogue or {}
    tables = [t for t in scores if len(t)]  # an unlabelled dataset scores nothing
    if not tables:
        return pd.DataFrame(columns=EMPTY_COLUMNS)
    board = pd.concat(tables, ignore_index=True)
    board["metric"] = [metrics.get(d) or PRIMARY[t] for d, t in zip(board.dataset, board.task)]
    board["score"] = [r[r["metric"]] for _, r in board.iterrows()]
    board = board.sort_values(
        ["dataset", "split", "score", "method"], ascending=[True, True, False, True]
    )
    board["rank"] = board.groupby(["dataset", "split"]).cumcount() + 1
    board["catalogue"] = [catalogue.get(m.removeprefix("fused_"), "") for m in board.method]
    cols = ["dataset", "task", "split", "rank", "method", "kind", "catalogue", "metric"]
    cols += ["score", "n"]
    board = board[cols + [c for c in COLUMNS if c in board.columns]]
    for c in COUNTS:
        if c in board.columns:  # counts, blank on membership rows
            board[c] = board[c].astype("Int64")
    return board


def best_result(scores, candidates, metric="ari"):
    """The candidate with the highest `metric` in a scores table (ties: the earlier
    candidate); the first candidate where none is scored (no ground truth)."""
    candidates = list(candidates)
    if scores is not None and len(scores) and metric in scores:
        s = scores[scores.method.isin(candidates) & scores[metric].notna()]
        if len(s):
            order = {m: k for k, m in enumerate(candidates)}
            best = max(s.itertuples(), key=lambda r: (getattr(r, metric), -order[r.method]))
            return best.method, float(getattr(best, metric))
    return candidates[0], float("nan")
