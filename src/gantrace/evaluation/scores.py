"""A dataset's scores: every method's and fusion's result table against the ground truth,
with bootstrap intervals and the paired comparison with the best (docs/evaluation.md).

Membership is scored per split (dev: images of known role; test: `real_unknown`, where a
truth file gives their labels), attribution over every image whose generator is known.
"""

import zlib

import numpy as np
import pandas as pd

from gantrace.evaluation import bootstrap
from gantrace.evaluation.metrics import (
    FPRS,
    METRICS,
    PRIMARY,
    attribution_metrics,
    membership_metrics,
    subset_metrics,
    tpr_column,
)
from gantrace.evaluation.truth import attribution_truth, membership_truth, subset_answers

EMPTY_COLUMNS = ["dataset", "task", "method", "kind", "split", "n"]
EVALUATION = {"n_boot": 1000, "ci": 0.95, "fpr": list(FPRS)}  # config `evaluation:` defaults


def best_first(values, names):
    """Indices of `values` best first: highest value, ties by name, undefined (nan) last;
    the leaderboard's order (`rank`)."""
    values = np.asarray(values, dtype=float)
    return sorted(range(len(names)), key=lambda k: (np.isnan(values[k]), -values[k], names[k]))


def interval_metrics(task, fprs):
    """The metrics that get `<metric>_lo` / `<metric>_hi` columns."""
    extra = [tpr_column(r) for r in fprs] if task == "membership" else []
    return [*METRICS[task], *extra]


def score_results(
    task, dataset, results, fusions, truth=None, groups=None, metric=None, evaluation=None, seed=0
):
    """One row per scored (method, split): dataset, task, method, kind ("fusion" for a
    `fused_<name>` of a name in `fusions`, else "method"), split, n, the task's metrics,
    `<metric>_lo/_hi` intervals, and the paired comparison with the split's best method by
    `metric` (default `PRIMARY`): `diff_lo/_hi` and `tied_with_best`; `boot_unit` says
    what was resampled ("group" or "image") and `n_groups` how many groups there were.

    `results` maps a method or fusion name to its result table; `truth` is a `read_truth`
    table or None; `groups` maps an image id to its group (None or all "": images are
    resampled, assumed independent); `evaluation` holds n_boot, ci and fpr (defaults
    `EVALUATION`), seeded by `seed`. A split is scored only where both classes
    (membership) or some generator (attribution) are known; with none scored, the table
    is empty.
    """
    ev = {**EVALUATION, **(evaluation or {})}
    metric = metric or PRIMARY[task]
    names = list(results)
    blocks = []  # (split, selected rows mask, truth) per scored split
    if task == "membership" and names:
        y, split = membership_truth(results[names[0]], truth)
        for s in ("dev", "test"):
            sel = (split == s) & (y >= 0)
            if sel.sum() and len(set(y[sel])) == 2:
                blocks.append((s, sel, y[sel]))
    elif task == "subset_attribution" and names:
        true, _ = subset_answers(results[names[0]], truth)
        if (true != "").sum():
            blocks.append(("all", true != "", true[true != ""]))
    elif names:
        gen = attribution_truth(results[names[0]], truth)
        if (gen != "").sum():
            blocks.append(("all", gen != "", gen[gen != ""]))
    ids = results[names[0]].image_id.to_numpy() if names else None
    tables = {n: _aligned(t, ids, n) for n, t in results.items()}
    rows = []
    for s, sel, y in blocks:
        rng = np.random.default_rng([seed, zlib.crc32(f"{dataset}/{s}".encode())])
        rows += _score_split(task, s, sel, y, tables, fusions, groups, ids, metric, ev, rng)
        if task == "membership":
            rows += _group_level(s, sel, y, tables, fusions, metric, ev, dataset, seed)
    table = pd.DataFrame(rows)
    if not len(table):
        return pd.DataFrame(columns=EMPTY_COLUMNS)
    if "level" in table:  # set-level rows: the others are image-level
        table.insert(2, "level", table.pop("level").fillna("image"))
    table.insert(0, "task", task)
    table.insert(0, "dataset", dataset)
    return table


def _aligned(table, ids, name):
    """`table` in the row order of `ids` (every method scores the same images)."""
    if np.array_equal(table.image_id.to_numpy(), ids):
        return table
    t = table.set_index("image_id")
    missing = set(ids) - set(t.index)
    if missing:
        raise ValueError(f"{name}: scores {len(t)} images, lacks {len(missing)} the others score")
    return t.loc[ids].reset_index()


def _group_level(split, sel, y, tables, fusions, metric, ev, dataset, seed):
    """`level: group` rows of a membership split: each table with set-level columns
    (`gantrace.membership.sets`: group, group_score, group_decision) scored one row per
    group, a group used when any of its images is, groups resampled whole. Image rows get
    `level: image` once any group row exists."""
    grouped = {n: t for n, t in tables.items() if "group_score" in t.columns}
    if not grouped:
        return []
    first = next(iter(grouped.values()))
    g = first.group.astype(str).to_numpy()[sel]
    truth = pd.Series(y).groupby(g).max()  # a group is used when any of its images is
    if len(set(truth)) < 2:
        return []
    ids = truth.index.to_numpy()
    per_group = {}
    for name, t in grouped.items():
        rows = t.iloc[np.flatnonzero(sel)].assign(group=g).groupby("group").first().loc[ids]
        per_group[name] = pd.DataFrame(
            {
                "image_id": ids,
                "score": rows.group_score.to_numpy(),
                "decision": rows.group_decision.to_numpy(),
            }
        )
    rng = np.random.default_rng([seed, zlib.crc32(f"{dataset}/{split}/group".encode())])
    everything = np.ones(len(ids), dtype=bool)
    rows = _score_split(
        "membership",
        split,
        everything,
        truth.to_numpy(),
        per_group,
        fusions,
        None,
        ids,
        metric,
        ev,
        rng,
    )
    for row in rows:
        row.update(level="group", boot_unit="group", n_groups=len(ids))
    return rows


def _score_split(task, split, sel, y, tables, fusions, groups, ids, metric, ev, rng):
    names = list(tables)
    image_groups = None
    if groups is not None:
        g = pd.Series(ids[sel]).map(groups).fillna("").astype(str).to_numpy()
        image_groups = g if (g != "").all() else None  # partial groups: images (say so)
    weights = bootstrap.resample_weights(y, ev["n_boot"], rng, image_groups)
    if task == "membership":
        points = [
            membership_metrics(y, t.decision.to_numpy()[sel], t.score.to_numpy()[sel], ev["fpr"])
            for t in tables.values()
        ]
        reps = bootstrap.membership_replicates(
            y,
            np.stack([t.score.to_numpy(dtype=float)[sel] for t in tables.values()]),
            np.stack([t.decision.to_numpy()[sel] for t in tables.values()]),
            weights,
            ev["fpr"],
        )
    elif task == "subset_attribution":
        by_label = all(str(v).isdigit() for v in y)  # truth as run-file labels 1..k
        answers = [
            (t.cluster.astype(int) if by_label else t.subset).astype(str).to_numpy()[sel]
            for t in tables.values()
        ]
        points = [subset_metrics(y, a) for a in answers]
        reps = bootstrap.subset_replicates(y, np.stack(answers), weights)
    else:
        points = [attribution_metrics(y, t.cluster.to_numpy()[sel]) for t in tables.values()]
        reps = bootstrap.attribution_replicates(
            y, np.stack([t.cluster.to_numpy()[sel] for t in tables.values()]), weights
        )
    rows = [
        {
            "method": name,
            "kind": "fusion" if name.removeprefix("fused_") in fusions else "method",
            "split": split,
            "n": int(sel.sum()),
            **p,
        }
        for name, p in zip(names, points)
    ]
    for m in interval_metrics(task, ev["fpr"]):
        lo, hi = bootstrap.interval(reps[m], ev["ci"])
        for k, row in enumerate(rows):
            defined = np.isfinite(row[m])  # an undefined metric has no interval either
            row[f"{m}_lo"] = float(lo[k]) if defined else np.nan
            row[f"{m}_hi"] = float(hi[k]) if defined else np.nan
    best = best_first([r[metric] for r in rows], names)[0]
    lo, hi, tied = bootstrap.paired_to_best(reps[metric], best, ev["ci"])
    for k, row in enumerate(rows):
        row.update(diff_lo=float(lo[k]), diff_hi=float(hi[k]), tied_with_best=bool(tied[k]))
        row["boot_unit"] = "image" if image_groups is None else "group"
        row["n_groups"] = np.nan if image_groups is None else len(set(image_groups))
    return rows
