"""Does a generator copy its training images at all? Two label-free checks on features.

- `DataCopyingTest`: the three-sample data-copying test of Meehan, Chaudhuri & Dasgupta,
  "A Non-Parametric Test to Detect Data-Copying in Generative Models", AISTATS 2020
  (PMLR 108, Sec. 3-4). Training sample T (real_used), held-out sample P_n
  (real_not_used), generated sample Q_m. T is partitioned into cells by k-means; P_n and
  Q_m go to their nearest centre. In each cell pi the Mann-Whitney U statistic compares
  the distances of Q_m's and P_n's points to their nearest training point of that cell,
  Z-scored under the null (U = number of (q, p) pairs with d(q) > d(p), ties counting
  half; Z_U = (U - mn/2) / sqrt(mn(m + n + 1)/12)). Cells holding more than `tau` of Q_m
  (the paper's Pi_tau) are kept, and C_T is the mean of their Z_U weighted by P_n's share
  of each cell. C_T << 0: generated points sit closer to the training set than held-out
  points do: data copying. C_T >> 0: the generator underfits.
- `authenticity`: the sample-level authenticity of Alaa, van Breugel, Saveliev & van der
  Schaar, "How Faithful is your Synthetic Data? Sample-level Metrics for Evaluating and
  Auditing Generative Models", ICML 2022 (PMLR 162, Sec. 3.3): a generated sample is
  non-authentic when it is closer to its nearest training point than that training point
  is to its own nearest other training point.

p-value: under the null (Q_m and P_n equally far from T within every cell, cells
independent), each Z_U is about N(0, 1), so C_T = sum(w Z_U) / sum(w) has variance
sum(w^2) / sum(w)^2. The p-value is the one-sided normal tail P(N(0, 1) <= C_T / sd), the
test of copying (small C_T); the paper reports C_T itself against the N(0, 1) scale, which
is conservative here since sd <= 1.
"""

import numpy as np
import pandas as pd
from scipy.special import ndtr
from scipy.stats import rankdata

from gantrace.errors import GantraceError
from gantrace.params import COUNT, SEED, Interval, Options, Part

ALPHA = 0.05  # the verdict's level: "copies" when p < ALPHA


def nearest(X, pool, metric="euclidean", skip_self=False, block_size=1024):
    """(distance, index) of each row of X's nearest row of `pool`; with `skip_self` (X is
    `pool`), a row's own entry is left out. Row blocks bound memory."""
    X, pool = np.asarray(X, np.float64), np.asarray(pool, np.float64)
    if metric == "cosine":
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        pool = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    pp = (pool**2).sum(1)
    dist, index = np.empty(len(X)), np.empty(len(X), np.int64)
    for s in range(0, len(X), block_size):
        blk = X[s : s + block_size]
        d2 = np.maximum((blk**2).sum(1)[:, None] + pp[None] - 2 * blk @ pool.T, 0)
        if skip_self:
            d2[np.arange(len(blk)), np.arange(s, s + len(blk))] = np.inf
        j = d2.argmin(1)
        index[s : s + len(blk)] = j
        dist[s : s + len(blk)] = np.sqrt(d2[np.arange(len(blk)), j])
    return dist, index


def mann_whitney_z(q, p):
    """Z-scored Mann-Whitney U of sample `q` against `p`: U counts the pairs with q > p
    (ties half); negative when `q` tends to be smaller."""
    m, n = len(q), len(p)
    ranks = rankdata(np.concatenate([q, p]))
    u = ranks[:m].sum() - m * (m + 1) / 2
    return (u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12)


class DataCopyingTest(Part):
    """Meehan et al.'s (2020) C_T test (see the module docstring), as a configurable part.

    `n_cells`: k-means cells on the training set; `tau`: a cell counts when it holds more
    than this share of the generated points; `metric`: euclidean or cosine distance in the
    feature space; `random_state` seeds k-means.
    """

    name = "data_copying"
    stochastic = True  # k-means initialisation
    _parameter_constraints = {
        "n_cells": [COUNT],
        "tau": [Interval(float, 0, 1, closed="left")],
        "metric": [Options("euclidean", "cosine")],
        "random_state": [SEED],
    }

    def __init__(self, n_cells=5, tau=0.05, metric="euclidean", random_state=0):
        self.n_cells = n_cells
        self.tau = tau
        self.metric = metric
        self.random_state = random_state
        self._validate_params()

    def test(self, train, held_out, generated):
        """Run the test; returns (summary dict, per-cell DataFrame)."""
        from sklearn.cluster import KMeans  # scikit-learn: only the jobs that run the test

        train, held_out, generated = (
            np.asarray(a, np.float64) for a in (train, held_out, generated)
        )
        if min(len(held_out), len(generated)) < 2 or len(train) < self.n_cells:
            raise GantraceError(
                f"data_copying: needs >= {self.n_cells} training (real_used) images (n_cells) "
                f"and >= 2 held-out (real_not_used) and generated images; got {len(train)}, "
                f"{len(held_out)}, {len(generated)}"
            )
        if self.metric == "cosine":  # k-means on the unit sphere: cells by direction
            train, held_out, generated = (
                a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
                for a in (train, held_out, generated)
            )
        km = KMeans(self.n_cells, n_init=10, random_state=self.random_state).fit(train)
        cell_t = km.labels_
        cell_p, cell_q = km.predict(held_out), km.predict(generated)
        rows = []
        for c in range(self.n_cells):
            t, p, q = train[cell_t == c], held_out[cell_p == c], generated[cell_q == c]
            z = np.nan
            if len(p) and len(q):
                z = mann_whitney_z(nearest(q, t)[0], nearest(p, t)[0])
            rows.append(
                {
                    "cell": c,
                    "n_train": len(t),
                    "n_held_out": len(p),
                    "n_generated": len(q),
                    "held_out_share": len(p) / len(held_out),
                    "generated_share": len(q) / len(generated),
                    "z_u": z,
                }
            )
        cells = pd.DataFrame(rows)
        cells["kept"] = (cells.generated_share > self.tau) & cells.z_u.notna()
        kept = cells[cells.kept]
        if not len(kept):
            raise GantraceError(
                f"data_copying: no cell holds more than tau={self.tau} of the generated images "
                "and any held-out image; lower n_cells or tau"
            )
        w, z = kept.held_out_share.to_numpy(), kept.z_u.to_numpy()
        c_t = float((w * z).sum() / w.sum())
        sd = float(np.sqrt((w**2).sum()) / w.sum())
        p_value = float(ndtr(c_t / sd))
        summary = {
            "c_t": c_t,
            "c_t_sd_null": sd,
            "p_value": p_value,
            "copies": bool(p_value < ALPHA),
            "n_cells": self.n_cells,
            "n_cells_kept": len(kept),
            "tau": self.tau,
            "metric": self.metric,
            "n_train": len(train),
            "n_held_out": len(held_out),
            "n_generated": len(generated),
        }
        return summary, cells


def authenticity(train, generated, metric="euclidean"):
    """Alaa et al.'s (2022) authenticity per generated row: a DataFrame with the distance
    to the nearest training row (`nn_train`, its row index `nn_index`), that training
    row's distance to its own nearest other training row (`train_radius`) and
    `authentic` (False: the sample is nearer its training neighbour than any other
    training point is)."""
    radius, _ = nearest(train, train, metric, skip_self=True)
    dist, index = nearest(generated, train, metric)
    return pd.DataFrame(
        {
            "nn_train": dist,
            "nn_index": index,
            "train_radius": radius[index],
            "authentic": dist >= radius[index],
        }
    )


def verdict(summary, share_non_authentic=None):
    """One line on the test: C_T, p, and what it means for per-image membership."""
    line = (
        f"data-copying test (Meehan et al. 2020): C_T {summary['c_t']:.2f}, "
        f"p {summary['p_value']:.3g} ({summary['n_cells_kept']}/{summary['n_cells']} cells)"
    )
    if share_non_authentic is not None:
        line += f"; non-authentic samples (Alaa et al. 2022) {share_non_authentic:.0%}"
    if summary["copies"]:
        return line + ": the generator copies training images"
    return line + (
        f": no copying found (p >= {ALPHA}); per-image membership is expected near chance"
    )
