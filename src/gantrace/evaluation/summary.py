"""The few lines printed at the end of a successful run: what was scored, what was refused,
where the leaderboard is and which method came first on each dataset."""

import re
from pathlib import Path

import pandas as pd

from gantrace.evaluation.leaderboard import SELECTED

# Snakemake's log: "135 of 135 steps (100%) done" after the last job.
_STEPS = re.compile(r"^(\d+) of (\d+) steps? \(.*\) done", re.M)


def _rows(path):
    """Rows of a parquet table, or None when it is not there (or unreadable)."""
    try:
        return len(pd.read_parquet(path))
    except (OSError, ValueError):
        return None


def jobs_done(log_file):
    """Jobs run, from Snakemake's log file (its last "N of M steps done" line); None if
    there is no such line (nothing to do, no log). `log_file`: a path or a list of paths
    (what Snakemake hands `onsuccess`); the first one is read."""
    if isinstance(log_file, (list, tuple)):
        log_file = log_file[0] if log_file else None
    try:
        found = _STEPS.findall(Path(log_file).read_text(errors="replace"))
    except (OSError, TypeError):
        return None
    return int(found[-1][0]) if found else None


def _score(row, metric):
    """`f1 0.912`, with ` [0.830, 0.970]` when the board has `<metric>_lo/_hi`."""
    text = f"{metric} {row['score']:.3f}"
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if lo is not None and hi is not None and pd.notna(lo) and pd.notna(hi):
        text += f" [{float(lo):.3f}, {float(hi):.3f}]"
    return text


def _level(board):
    """Each row's level: `group` for set-level membership rows, else `image`."""
    if "level" not in board.columns:
        return pd.Series("image", index=board.index)
    return board.level.fillna("image")


def _tied(board, dataset, split, level="image"):
    """`, 2 tied with it` where the board marks other rows of the split tied with the best."""
    if "tied_with_best" not in board.columns:
        return ""
    rows = board[(board.dataset == dataset) & (board.split == split) & (_level(board) == level)]
    rows = rows[rows.method != SELECTED]
    n = int(rows.tied_with_best.astype(str).str.lower().eq("true").sum())
    return f" ({n} of {len(rows) - 1} others tied with it)" if len(rows) > 1 else ""


def best_methods(board, dataset):
    """`best (split): method metric score [lo, hi] (k of n others tied with it)` per split
    of one dataset, test first, then each `selected (split, on dev): method ...` row."""
    rows = board[(board.dataset == dataset) & (board["rank"] == 1)]
    order = {"test": 0, "all": 1, "dev": 2}
    rows = rows.sort_values("split", key=lambda s: s.map(lambda x: order.get(x, 3)))
    levels = _level(rows)
    rows = rows.assign(_l=levels).sort_values("_l", key=lambda s: s != "image", kind="stable")
    lines = [
        f"best ({r['split']}{', per group' if r['_l'] == 'group' else ''}): {r['method']} "
        f"{_score(r, r['metric'])}" + _tied(board, dataset, r["split"], r["_l"])
        for _, r in rows.iterrows()
    ]
    picked = board[(board.dataset == dataset) & (board.method == SELECTED)]
    lines += [
        f"selected on dev ({r['split']}): {r['selected']} {_score(r, r['metric'])}"
        for _, r in picked.iterrows()
    ]
    return lines


def copying_verdict(path):
    """The data-copying test's verdict line of a dataset (its copying.parquet), or None."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError):
        return None
    return str(table.verdict.iloc[0]) if len(table) and "verdict" in table.columns else None


def independence_note(board):
    """The line saying which datasets' intervals resample single images (no groups named),
    so assume independent images; None where every interval resampled groups."""
    if "boot_unit" not in board.columns:
        return None
    names = sorted(set(board.dataset[board.boot_unit == "image"]))
    if not names:
        return None
    return (
        f"intervals: bootstrap over single images on {', '.join(names)}; they assume "
        "independent images (no groups named: neighbouring slices of one patient make them "
        "too narrow)"
    )


def run_summary(results_dir, datasets, log_file=None):
    """The end-of-run summary (text, several lines) of a run whose results are under
    `results_dir`; `datasets` maps each dataset name to its config (its `task`);
    `log_file` (Snakemake's log of this run, or the list of them) gives the jobs run."""
    results = Path(results_dir)
    board_path = results / "leaderboard.csv"
    board = pd.read_csv(board_path) if board_path.is_file() else None
    images, refused, lines = 0, [], []
    width = max((len(d) for d in datasets), default=0)
    for ds, spec in datasets.items():
        n = _rows(results / ds / "manifest.parquet")
        images += n or 0
        bad = _rows(results / ds / "rejected.parquet")
        if bad:
            refused.append((ds, bad, results / ds / "rejected.parquet"))
        task = (spec or {}).get("task", "?")
        line = f"  {ds:<{width}}  {task:<11}  {'?' if n is None else n} images"
        best = best_methods(board, ds) if board is not None and len(board) else []
        lines.append("   ".join([line, *best[:1]]))
        lines += [" " * (len(line) + 3) + b for b in best[1:]]
        copying = copying_verdict(results / ds / "copying.parquet")
        if copying:
            lines.append(" " * (len(line) + 3) + copying)
    jobs = jobs_done(log_file) if log_file else None
    head = f"gantrace: done. {len(datasets)} dataset(s), {images} images"
    head += f", {jobs} jobs run" if jobs is not None else ""
    out = [head, *lines]
    if refused:
        total = sum(n for _, n, _ in refused)
        out.append(f"  images refused: {total} (invalid_images: skip), listed in:")
        out += [f"    {path} ({n})" for _, n, path in refused]
    else:
        out.append("  images refused: none")
    note = independence_note(board) if board is not None and len(board) else None
    if note:
        out.append(f"  {note}")
    if board is not None:
        html = board_path.with_suffix(".html")
        extra = f" (table: {html})" if html.is_file() else ""
        out.append(f"  leaderboard: {board_path}{extra}")
    return "\n".join(out)
