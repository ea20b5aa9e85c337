"""A dataset's scores: every method's and fusion's result table against the ground truth.

Membership is scored per split (dev: images of known role; test: `real_unknown`, where a
truth file gives their labels), attribution over every image whose generator is known.
"""

import pandas as pd

from gantrace.evaluation.metrics import attribution_metrics, membership_metrics, subset_metrics
from gantrace.evaluation.truth import attribution_truth, membership_truth, subset_answers

EMPTY_COLUMNS = ["dataset", "task", "method", "kind", "split", "n"]


def score_results(task, dataset, results, fusions, truth=None):
    """One row per scored (method, split): dataset, task, method, kind ("fusion" for a
    `fused_<name>` of a name in `fusions`, else "method"), split, n and the task's metrics.

    `results` maps a method or fusion name to its result table; `truth` is a `read_truth`
    table or None. A split is scored only where both classes (membership) or some
    generator (attribution) are known; with none scored, the table is empty.
    """
    rows = []
    for name, t in results.items():
        kind = "fusion" if name.removeprefix("fused_") in fusions else "method"
        if task == "membership":
            y, split = membership_truth(t, truth)
            for s in ("dev", "test"):
                sel = (split == s) & (y >= 0)
                if sel.sum() and len(set(y[sel])) == 2:
                    m = membership_metrics(
                        y[sel], t.decision.to_numpy()[sel], t.score.to_numpy()[sel]
                    )
                    rows.append(
                        {"method": name, "kind": kind, "split": s, "n": int(sel.sum()), **m}
                    )
        elif task == "subset_attribution":
            true, pred = subset_answers(t, truth)
            sel = true != ""
            if sel.sum():
                m = subset_metrics(true[sel], pred[sel])
                rows.append(
                    {"method": name, "kind": kind, "split": "all", "n": int(sel.sum()), **m}
                )
        else:
            gen = attribution_truth(t, truth)
            sel = gen != ""
            if sel.sum():
                m = attribution_metrics(gen[sel], t.cluster.to_numpy()[sel])
                rows.append(
                    {"method": name, "kind": kind, "split": "all", "n": int(sel.sum()), **m}
                )
    table = pd.DataFrame(rows)
    if not len(table):
        return pd.DataFrame(columns=EMPTY_COLUMNS)
    table.insert(0, "task", task)
    table.insert(0, "dataset", dataset)
    return table
