"""Time the leaderboard's bootstrap (gantrace.evaluation.bootstrap): n_boot resamples of
n images scored by m methods, membership (counts, AUC, TPR at 3 FPRs) and attribution (ARI,
NMI, Hungarian-matched accuracy), with intervals and the paired comparison.

    python benchmarks/bootstrap_speed.py [--n 10000] [--methods 50] [--n-boot 1000]
"""

import argparse
import time

import numpy as np

from gantrace.evaluation import bootstrap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="images")
    ap.add_argument("--methods", type=int, default=50)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--generators", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, m, b = args.n, args.methods, args.n_boot

    y = rng.integers(0, 2, n)
    scores = y + rng.normal(0, 2, (m, n))  # m methods of AUC about 0.64
    decisions = (scores > 0.5).astype(int)
    clock = _Clock()
    w = bootstrap.resample_weights(y, b, rng)
    weights = clock.lap()
    reps = bootstrap.membership_replicates(y, scores, decisions, w, [0.1, 0.01, 0.001])
    for v in reps.values():
        bootstrap.interval(v, 0.95)
    bootstrap.paired_to_best(reps["auc"], 0, 0.95)
    print(
        f"membership: {n} images x {m} methods x {b} resamples: weights {weights}, "
        f"{len(reps)} metrics with intervals and paired test {clock.lap()}"
    )

    gen = rng.integers(0, args.generators, n)
    clusters = np.where(rng.random((m, n)) < 0.6, gen, rng.integers(0, args.generators, (m, n)))
    clock = _Clock()
    w = bootstrap.resample_weights(gen, b, rng)
    reps = bootstrap.attribution_replicates(gen, clusters, w)
    for v in reps.values():
        bootstrap.interval(v, 0.95)
    bootstrap.paired_to_best(reps["ari"], 0, 0.95)
    print(
        f"attribution: {n} images x {m} methods x {b} resamples, {args.generators} "
        f"generators: weights, ari, nmi, matched accuracy with intervals and paired test "
        f"{clock.lap()}"
    )


class _Clock:
    """Wall and CPU seconds since the last lap (CPU: a shared machine inflates wall time)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self):
        wall, cpu = time.perf_counter(), time.process_time()
        text = f"{wall - self.wall:.2f} s wall ({cpu - self.cpu:.2f} s CPU)"
        self.wall, self.cpu = wall, cpu
        return text


if __name__ == "__main__":
    main()
