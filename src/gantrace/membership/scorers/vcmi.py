"""VCMI's membership rules (ImageCLEFmedical GANs 2023, best F1 0.801).

All compare similarities (`metric`: cosine similarity, or minus a euclidean / manhattan
distance). With g(x) = best similarity of real image x to any generated image and r(x) =
best similarity of x to any OTHER real image (the real pool given to `fit_reference`, one
exact copy of x itself left out), each variant returns a margin, > 0 meaning used:

- threshold_max: g(x) - max over the pool of r(j): used if some generated image is closer
  than the closest pair of distinct real images (VCMI's rule; `reference: own` compares
  with r(x) instead).
- retrieval: every generated image retrieves its `k` most similar real images of the pool;
  margin = (times x is retrieved) - (min_retrievals - 0.5).
- ranking: margin = (fraction of pool images j with r(j) < g(x)) - `quantile` (our reading
  of their rank rule: x's best generated similarity beats that share of real-real ones).
- ensemble: VCMI's combination, used = retrieval and (ranking or threshold_max), as the
  margin min(retrieval, max(ranking, threshold_max)).
Rule definitions as described by the team (their public code for the 2023 task).
"""

import numpy as np

from gantrace.matrix import METRICS, as_matrix
from gantrace.membership.scorers.unsupervised import mask_own_copies, row_index, similarity_matrix
from gantrace.params import COUNT, Interval, Options, Part


class _VCMI(Part):
    """The four rules' shared parameters; each variant takes the ones its rule uses."""

    margin = True
    variant = None
    _parameter_constraints = {
        "metric": [Options(*METRICS)],
        "k": [COUNT],
        "min_retrievals": [COUNT],
        "quantile": [Interval(float, 0, 1, closed="neither")],
        "reference": [Options("global", "own")],
        "block_size": [COUNT],
    }

    def __init__(
        self,
        metric="cosine",
        k=1,
        min_retrievals=1,
        quantile=0.5,
        reference="global",
        block_size=512,
    ):
        self.reference = reference
        self.metric = metric
        self.k = k
        self.min_retrievals = min_retrievals
        self.quantile = quantile
        self.block_size = block_size
        self._validate_params()

    def _sim(self, A, B):
        return similarity_matrix(A, B, self.metric)

    def fit(self, generated_X):
        self.generated_ = as_matrix(generated_X, "generated features").astype(np.float64)
        return self

    def fit_reference(self, real_X):
        """The real pool (all real images, no labels) that real-real similarities use."""
        self.reference_ = as_matrix(real_X, "real features").astype(np.float64)
        self._rows = row_index(self.reference_)
        k = min(self.k, len(self.reference_))
        # k-th best similarity of each generated image to the pool: its retrieval cut.
        cuts = np.empty(len(self.generated_))
        for s in range(0, len(self.generated_), self.block_size):
            sim = self._sim(self.generated_[s : s + self.block_size], self.reference_)
            cuts[s : s + len(sim)] = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
        self.retrieval_cut_ = cuts
        self.reference_r_ = self._best_real(self.reference_)
        return self

    def _best_real(self, X):
        out = np.empty(len(X))
        for s in range(0, len(X), self.block_size):
            blk = X[s : s + self.block_size]
            sim = mask_own_copies(self._sim(blk, self.reference_), blk, self._rows, -np.inf)
            out[s : s + len(blk)] = sim.max(axis=1)
        return out

    def _margins(self, X):
        X = as_matrix(X, "real features").astype(np.float64)
        g, counts = np.empty(len(X)), np.empty(len(X))
        for s in range(0, len(X), self.block_size):
            sim = self._sim(X[s : s + self.block_size], self.generated_)
            g[s : s + len(sim)] = sim.max(axis=1)
            counts[s : s + len(sim)] = (sim >= self.retrieval_cut_).sum(axis=1)
        ref_r = np.sort(self.reference_r_)
        return {
            "threshold_max": g
            - (self._best_real(X) if self.reference == "own" else self.reference_r_.max()),
            "retrieval": counts - (self.min_retrievals - 0.5),
            "ranking": np.searchsorted(ref_r, g, side="left") / len(ref_r) - self.quantile,
        }

    def score(self, real_X):
        if not hasattr(self, "reference_"):
            raise RuntimeError(f"{self.name}: call fit_reference(real_X) before score")
        margins = self._margins(real_X)
        if self.variant == "ensemble":
            either = np.maximum(margins["ranking"], margins["threshold_max"])
            return np.minimum(margins["retrieval"], either)
        return margins[self.variant]


class VCMIThresholdMax(_VCMI):
    name = "vcmi_threshold_max"
    variant = "threshold_max"

    def __init__(self, metric="cosine", reference="global", block_size=512):
        super().__init__(metric=metric, reference=reference, block_size=block_size)


class VCMIRetrieval(_VCMI):
    name = "vcmi_retrieval"
    variant = "retrieval"

    def __init__(self, metric="cosine", k=1, min_retrievals=1, block_size=512):
        super().__init__(metric=metric, k=k, min_retrievals=min_retrievals, block_size=block_size)


class VCMIRanking(_VCMI):
    name = "vcmi_ranking"
    variant = "ranking"

    def __init__(self, metric="cosine", quantile=0.5, block_size=512):
        super().__init__(metric=metric, quantile=quantile, block_size=block_size)


class VCMIEnsemble(_VCMI):
    name = "vcmi_ensemble"
    variant = "ensemble"
