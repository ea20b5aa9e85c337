"""VCMI's membership rules (ImageCLEFmedical GANs 2023, best F1 0.801).

As in the team's public code (github.com/helenaMontenegro/imageclef23-medical-gans,
`similarity_methods/similarity_methods.py`), every rule reads similarities (`metric`:
ssim, cosine similarity, or minus a euclidean / manhattan distance) between the real
images (the pool given to `fit_reference`, no labels) and the generated ones. With g(x) =
best similarity of real image x to any generated image and r(x) = best similarity of x to
any OTHER real image (one exact copy of x itself left out), each variant returns a margin,
> 0 meaning used:

- threshold_max: g(x) - max over the pool of r(j): used if some generated image is closer
  than the closest pair of distinct real images (`reference: own` compares with r(x)).
- retrieval: every generated image retrieves its `k` most similar real images of the pool;
  margin = (times x is retrieved) - (min_retrievals - 0.5).
- ranking: each generated image ranks the pool by similarity (0 = least similar, 1 = most);
  margin = x's mean rank over the generated images - `quantile`: used when x sits, on
  average, in the more similar part of the generated images' lists (the team compares the
  mean rank with the mean over all real images, which is the middle: quantile 0.5).
- ensemble: the team's combination, used = retrieval and (ranking or threshold_max). Its
  score keeps that decision and orders images within each side by the mean of the three
  rules' scores rank-normalised to [0, 1] (the raw margins are on unrelated scales):
  score = (+1 if used else -1) + mean rank-normalised score - 0.5, so > 0 exactly when used.
"""

import numpy as np

from gantrace.matrix import as_matrix
from gantrace.membership.scorers.unsupervised import (
    SIMILARITIES,
    mask_own_copies,
    row_index,
    similarity_matrix,
)
from gantrace.params import COUNT, Interval, Options, Part


def rank_normalised(values):
    """Ranks of `values` scaled to [0, 1] (ties share their mean rank; one value: 0.5)."""
    from scipy.stats import rankdata  # scipy: only where a ranking rule runs

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return np.full(len(values), 0.5)
    return (rankdata(values) - 1) / (len(values) - 1)


class _VCMI(Part):
    """The four rules' shared parameters; each variant takes the ones its rule uses."""

    margin = True
    variant = None
    _parameter_constraints = {
        "metric": [SIMILARITIES],
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

    def _mean_rank(self, X):
        """Per row of X: its rank among the pool in each generated image's similarity list
        (pool images strictly less similar, over pool size - 1), averaged over them."""
        total = np.zeros(len(X))
        for s in range(0, len(self.generated_), self.block_size):
            blk = self.generated_[s : s + self.block_size]
            pool = np.sort(self._sim(blk, self.reference_), axis=1)
            for row, sims in zip(pool, self._sim(blk, X)):
                total += np.searchsorted(row, sims, side="left")
        return total / len(self.generated_) / max(len(self.reference_) - 1, 1)

    def _margins(self, X):
        X = as_matrix(X, "real features").astype(np.float64)
        g, counts = np.empty(len(X)), np.empty(len(X))
        for s in range(0, len(X), self.block_size):
            sim = self._sim(X[s : s + self.block_size], self.generated_)
            g[s : s + len(sim)] = sim.max(axis=1)
            counts[s : s + len(sim)] = (sim >= self.retrieval_cut_).sum(axis=1)
        own = self._best_real(X) if self.reference == "own" else self.reference_r_.max()
        margins = {
            "threshold_max": g - own,
            "retrieval": counts - (self.min_retrievals - 0.5),
        }
        if self.variant in ("ranking", "ensemble"):
            margins["ranking"] = self._mean_rank(X) - self.quantile
        return margins

    def score(self, real_X):
        if not hasattr(self, "reference_"):
            raise RuntimeError(f"{self.name}: call fit_reference(real_X) before score")
        margins = self._margins(real_X)
        if self.variant == "ensemble":
            used = (margins["retrieval"] > 0) & (
                (margins["ranking"] > 0) | (margins["threshold_max"] > 0)
            )
            order = np.mean([rank_normalised(m) for m in margins.values()], axis=0)
            return np.where(used, 1.0, -1.0) + order - 0.5
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
