"""Set-level membership: did any image of this group (a patient, a series) train the
generator? One score per group from its images' membership scores.

A generator that memorised a patient leaves a weak trace on each of its slices; summed over
the slices the trace can be strong although no single slice stands out. Statistics:

- `mean`: the mean of the group's image scores; `top_k`: the mean of its k highest.
- `fisher` / `stouffer`: each image's p-value against the not-used (null) scores, combined
  over the group (Fisher: -2 sum log p ~ chi2 with 2n degrees of freedom; Stouffer: the sum
  of normal quantiles over sqrt(n)); the group score is -log10 of the combined p-value.

An image's p-value is (1 + #{null scores >= its score}) / (1 + #null). The null is the
labelled not-used images outside the image's group (a labelled group never sees its own
labels), or, where a dataset has no labelled not-used image, every real image outside the
group: label-free but holding members too, so its p-values are conservative. Slices of
one patient are not independent, so the combined p-value ranks groups; it is not a
calibrated test.
"""

import numpy as np
import pandas as pd
from scipy import stats

from gantrace.params import COUNT, Interval, Options, Part

STATISTICS = ("fisher", "stouffer", "mean", "top_k")


def image_p_values(scores, labels, groups):
    """Each image's p-value against the null scores outside its group (see the module)."""
    scores, labels, groups = np.asarray(scores, float), np.asarray(labels), np.asarray(groups)
    null = labels == 0 if (labels == 0).any() else np.ones(len(scores), dtype=bool)
    p = np.empty(len(scores))
    for g in np.unique(groups):
        rows = groups == g
        ref = np.sort(scores[null & ~rows])
        # share of the null at or above each score, +1 so that p is never 0
        above = len(ref) - np.searchsorted(ref, scores[rows], side="left")
        p[rows] = (1 + above) / (1 + len(ref))
    return p


class SetInference(Part):
    """Group scores and decisions from image scores (`membership.set_inference`).

    The decision of a p-value statistic is combined p <= `alpha`; of mean / top_k, the
    statistic above the mean of its images' thresholds (the same scale as the scores).
    `propagate` copies each group's decision onto its images' `decision` (the run file).
    """

    name = "set_inference"
    _parameter_constraints = {
        "statistic": [Options(*STATISTICS)],
        "top_k": [COUNT],
        "alpha": [Interval(float, 0, 1, closed="neither")],
        "propagate": [bool],
    }

    def __init__(self, statistic="fisher", top_k=3, alpha=0.05, propagate=False):
        self.statistic = statistic
        self.top_k = top_k
        self.alpha = alpha
        self.propagate = propagate
        self._validate_params("membership.set_inference")

    def group_table(self, scores, thresholds, labels, groups):
        """One row per group: group, n, group_score, group_decision, p_value (the combined
        p-value; nan for mean / top_k)."""
        scores, thresholds = np.asarray(scores, float), np.asarray(thresholds, float)
        groups = np.asarray(groups).astype(str)
        p = image_p_values(scores, labels, groups)
        rows = []
        for g in pd.unique(groups):
            sel = groups == g
            log_p = np.nan  # natural log of the combined p-value (logsf: no underflow)
            if self.statistic == "fisher":
                log_p = stats.chi2.logsf(-2 * np.log(p[sel]).sum(), 2 * sel.sum())
            elif self.statistic == "stouffer":
                log_p = stats.norm.logsf(stats.norm.isf(p[sel]).sum() / np.sqrt(sel.sum()))
            if self.statistic in ("fisher", "stouffer"):
                score, decision = -log_p / np.log(10), log_p <= np.log(self.alpha)
            else:
                top = np.sort(scores[sel])[::-1]
                top = top[: self.top_k] if self.statistic == "top_k" else top
                score, decision = float(top.mean()), top.mean() > thresholds[sel].mean()
            combined = float(np.exp(log_p))
            rows.append((g, int(sel.sum()), float(score), int(decision), combined))
        columns = ["group", "n", "group_score", "group_decision", "p_value"]
        return pd.DataFrame(rows, columns=columns)

    def apply(self, table, groups):
        """`table` (a membership result: score, threshold, decision, label; a fusion's has
        no threshold) with columns
        group, group_score, group_decision; `decision` becomes the group's with
        `propagate`. Images alone in their group are groups too."""
        # a fused table has no threshold: only p-value statistics, which need none
        thresholds = table["threshold"] if "threshold" in table else np.full(len(table), np.nan)
        per_group = self.group_table(table.score, thresholds, table.label, groups)
        by = per_group.set_index("group")
        out = table.assign(group=np.asarray(groups).astype(str))
        out["group_score"] = by.group_score.reindex(out.group).to_numpy()
        out["group_decision"] = by.group_decision.reindex(out.group).to_numpy().astype(np.int64)
        if self.propagate:
            out["decision"] = out.group_decision
        return out

    def describe(self):
        what = {
            "fisher": "Fisher-combined p-values",
            "stouffer": "Stouffer-combined p-values",
            "mean": "mean score",
            "top_k": f"mean of the top {self.top_k} scores",
        }[self.statistic]
        return f"set inference: group score = {what}" + (
            "; group decisions propagated to the images" if self.propagate else ""
        )
