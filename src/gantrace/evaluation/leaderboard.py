"""The leaderboard: every scored method and fusion, ranked per dataset and split, with each
dev/test pair's `selected_on_dev` row (docs/evaluation.md)."""

import pandas as pd

from gantrace.evaluation.metrics import COUNTS, METRICS, PRIMARY

EMPTY_COLUMNS = ["dataset", "task", "split", "rank", "method", "kind", "n"]
SELECTED = "selected_on_dev"  # the method column of the honest-selection rows
# after the metrics: the paired comparison with the best and what the bootstrap resampled
PAIRED = ("diff_lo", "diff_hi", "tied_with_best", "boot_unit", "n_groups")


def _metric_columns(board):
    """Metric columns in task order (TPR at decreasing FPR after the membership ones), then
    their `_lo` / `_hi` intervals, then the counts."""
    tprs = sorted(
        (c for c in board.columns if c.startswith("tpr_at_fpr_") and c.endswith("pct")),
        key=lambda c: -float(c.removeprefix("tpr_at_fpr_").removesuffix("pct")),
    )
    tasks = [*METRICS["membership"], *tprs, *METRICS["attribution"], *METRICS["subset_attribution"]]
    names = list(dict.fromkeys(tasks))
    names = [c for c in names if c in board.columns]
    bounds = [f"{c}_{b}" for c in names for b in ("lo", "hi") if f"{c}_{b}" in board.columns]
    return names + bounds + [c for c in COUNTS if c in board.columns]


def rank(scores, metrics=None, catalogue=None, dev_datasets=None):
    """One table of the `scores` tables (`score_results`), ranked per dataset and split by
    the primary metric, best first (ties by method name), with `score_lo` / `score_hi` the
    interval of that metric where the scores have one.

    `metrics` maps a dataset to its metric (config `datasets.<ds>.metric`), else `PRIMARY`
    of its task; `catalogue` maps a method or fusion name to the catalogue entry it came
    from (`catalogue.expand`: {"id", "substitute"}, or the bare id): columns `catalogue` and
    `substitute` (a stand-in component runs in place of the paper's); `dev_datasets` maps a
    dataset to its dev dataset (config `datasets.<ds>.dev_dataset`) for `selected_rows`.
    """
    metrics = {d: m for d, m in (metrics or {}).items() if m}
    catalogue = catalogue or {}
    tables = [t for t in scores if len(t)]  # an unlabelled dataset scores nothing
    if not tables:
        return pd.DataFrame(columns=EMPTY_COLUMNS)
    board = pd.concat(tables, ignore_index=True)
    board["metric"] = [metrics.get(d) or PRIMARY[t] for d, t in zip(board.dataset, board.task)]
    board["score"] = [r[r["metric"]] for _, r in board.iterrows()]
    for b in ("lo", "hi"):
        board[f"score_{b}"] = [
            r.get(f"{r['metric']}_{b}", float("nan")) for _, r in board.iterrows()
        ]
    # set-level membership rows (`level: group`) rank apart from the image-level ones
    levels = ["level"] if "level" in board else []
    if levels:
        board["level"] = board.level.fillna("image")
        board["_l"] = (board.level != "image").astype(int)  # image rows first
    keys = ["dataset", "split", *(["_l"] if levels else [])]
    board = board.sort_values(
        [*keys, "score", "method"], ascending=[True] * len(keys) + [False, True]
    )
    board["rank"] = board.groupby(keys).cumcount() + 1
    board["selected"] = ""
    board["dev_score"] = float("nan")
    images = board[board.level == "image"] if levels else board
    selected = selected_rows(images, dev_datasets or {})
    if len(selected):
        board = pd.concat([selected, board], ignore_index=True)
        board["rank"] = board["rank"].astype("Int64")
        order = board["rank"].fillna(0).astype(int)  # a selected row heads its dataset's split
        board = board.assign(_o=order)
        if levels:
            board["_l"] = (board.level != "image").astype(int)
        board = board.sort_values([*keys, "_o"], kind="stable").drop(columns="_o")
    named = board.selected.where(board.selected != "", board.method)
    entries = [catalogue.get(m.removeprefix("fused_"), "") for m in named]
    entries = [e if isinstance(e, dict) else {"id": e} for e in entries]
    board["catalogue"] = [e["id"] for e in entries]
    board["substitute"] = [bool(e.get("substitute")) for e in entries]
    cols = ["dataset", "task", "split", *levels, "rank", "method", "kind", "selected"]
    cols += ["catalogue"]
    cols += ["substitute"]
    cols += ["metric", "score", "score_lo", "score_hi", "dev_score", "n"]
    cols += [c for c in PAIRED if c in board.columns]
    board = board[cols + _metric_columns(board)].reset_index(drop=True)
    for c in [*COUNTS, "n_groups"]:
        if c in board.columns:  # counts, blank on membership rows
            board[c] = board[c].astype("Int64")
    return board


def dev_test_pairs(board, dev_datasets):
    """(dataset, test split, dev dataset, dev split) of every dev/test pair on the board: a
    membership dataset scored on both its splits, and each dataset whose `dev_datasets`
    entry names its dev dataset (membership: that one's dev split; attribution: all)."""
    pairs = []
    for ds, task in board.groupby("dataset").task.first().items():
        split = "test" if task == "membership" else "all"
        dev = dev_datasets.get(ds)
        if dev:
            pairs.append((ds, split, dev, "dev" if task == "membership" else "all"))
        elif task == "membership":
            pairs.append((ds, "test", ds, "dev"))
    have = set(zip(board.dataset, board.split))
    return [p for p in pairs if (p[0], p[1]) in have and (p[2], p[3]) in have]


def selected_rows(board, dev_datasets):
    """One `selected_on_dev` row per dev/test pair (`dev_test_pairs`): the test row of the
    method or fusion ranked first on dev by the test dataset's metric, among those scored
    on both; its `method` is SELECTED, `kind` "selected", `selected` the chosen name,
    `dev_score` its dev score and `rank` blank (its test rank is on its own row)."""
    rows = []
    for ds, split, dev, dev_split in dev_test_pairs(board, dev_datasets):
        test = board[(board.dataset == ds) & (board.split == split)].set_index("method")
        on_dev = board[(board.dataset == dev) & (board.split == dev_split)]
        metric = test.metric.iloc[0]
        on_dev = on_dev[on_dev.method.isin(test.index) & on_dev[metric].notna()]
        if not len(on_dev):
            continue
        on_dev = on_dev.sort_values([metric, "method"], ascending=[False, True])
        chosen = on_dev.method.iloc[0]
        row = test.loc[chosen].copy()
        row["method"], row["kind"], row["selected"] = SELECTED, "selected", chosen
        row["dev_score"] = float(on_dev[metric].iloc[0])
        row["rank"] = pd.NA
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True) if rows else pd.DataFrame()


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
