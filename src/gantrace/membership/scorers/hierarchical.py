"""AI Multimedia Lab 2024's membership rule: how close a real image lies to hierarchical
clusters of the generated images, with k and the min / avg distance chosen on labels.

Andrei et al., "AI Multimedia Lab at ImageCLEFmedical GANs 2024", CEUR-WS Vol-3740, Sec.
3.1.1 and 4.1.1: the generated images form k clusters G_1..G_k; a used image S should lie
closer to them than a not-used one, with d(G, S) = min_i d(G_i, S) (the closest cluster) or
avg_i d(G_i, S) (all clusters); k (30 values tried) and min / avg were chosen on the
training set, where F1 was measured (Table 3).
"""

import numpy as np
from sklearn.metrics import pairwise_distances

from gantrace.errors import ConfigError
from gantrace.matrix import LINKAGES, METRICS, as_matrix
from gantrace.membership.scorers.supervised import SupervisedScorer
from gantrace.membership.thresholds import best_f1
from gantrace.params import COUNT, ListOf, Options

# 30 values, as many as the paper tried; it names only its picks (Table 3: 4, 8, 10, 20,
# 50, 60), which are all here.
K_GRID = (*range(2, 21), 25, 30, 35, 40, 45, 50, 55, 60, 70, 80, 100)
DISTANCES = {"min": np.min, "avg": np.mean}  # d(G, S) over the k cluster distances


class HierarchicalDistanceScorer(SupervisedScorer):
    """Distance of a real image to hierarchical clusters of the generated images.

    `fit_generated` builds one `linkage` tree of the generated images and cuts it at every
    k of `n_clusters` (values above the number of generated images are dropped); a
    cluster's distance to an image is the `metric` distance to the cluster's mean.
    `fit_labels` picks the k, the `distance` rule (min: the closest cluster, avg: the mean
    over all k) and the cut on that distance with the best F1 on the labelled rows (ties:
    the first k, then the first rule listed). Margin = cut - d(G, S): > 0 (closer than the
    cut) is called used.
    """

    name = "hierarchical_distance"
    _parameter_constraints = {
        "n_clusters": [ListOf(COUNT)],  # a list is the grid itself, not a tuning request
        "distance": [ListOf(Options(*DISTANCES))],
        "linkage": [Options(*LINKAGES)],
        "metric": [Options(*METRICS)],
    }

    def __init__(
        self, n_clusters=K_GRID, distance=("min", "avg"), linkage="ward", metric="euclidean"
    ):
        self.n_clusters = n_clusters
        self.distance = distance
        self.linkage = linkage
        self.metric = metric
        self._validate_params()

    def fit_generated(self, generated_X):
        from scipy.cluster.hierarchy import cut_tree, linkage  # scipy: only when fitted

        G = as_matrix(generated_X, "generated features").astype(np.float64)
        ks = sorted({int(k) for k in self.n_clusters if k <= len(G)})
        if not ks:
            raise ConfigError(
                f"hierarchical_distance.n_clusters: every value exceeds the {len(G)} "
                "generated images; list smaller k"
            )
        cuts = cut_tree(linkage(G, method=self.linkage), n_clusters=ks)
        self.centres_ = {
            k: np.stack([G[cuts[:, j] == c].mean(axis=0) for c in range(k)])
            for j, k in enumerate(ks)
        }
        return self

    def distances(self, real_X, k, distance):
        """d(G, S) of every row: the min or avg of its distances to the k cluster means."""
        dist = pairwise_distances(
            as_matrix(real_X, "real features"), self.centres_[k], metric=self.metric
        )
        return DISTANCES[distance](dist, axis=1)

    def fit_labels(self, real_X, labels):
        real_X, labels = self._labelled(real_X, labels)
        best = None
        for k in self.centres_:
            for rule in self.distance:
                d = self.distances(real_X, k, rule)
                cut, f1 = best_f1(-d, labels)
                if cut == -np.inf:  # every labelled row called used: cut below them all
                    cut = float(np.min(-d)) - 1.0
                if best is None or f1 > best[0]:
                    best = (f1, k, rule, cut)
        self.f1_, self.k_, self.distance_, self.cut_ = best
        return self

    def fitted_summary(self):
        """The choice made on the labels, as the paper reports it: (min, 10)."""
        return f"k={self.k_}, distance={self.distance_}, F1={self.f1_:.3f}"

    def score(self, real_X):
        return -self.distances(real_X, self.k_, self.distance_) - self.cut_
