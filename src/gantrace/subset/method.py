"""A subset-attribution method: an optional reducer, then an assigner (gantrace.subset.assigners)."""

import numpy as np

from gantrace.matrix import as_matrix
from gantrace.params import trained_parts
from gantrace.reduce import build_reducer
from gantrace.subset.assigners import ASSIGNERS, ClusterMatch


class SubsetMethod:
    """Reducer (fitted on every image it is given: generated, real, and `train`) + assigner.

    `run` returns the subset index (0..k-1) of every generated row.
    """

    @classmethod
    def from_spec(cls, spec, n_folds, random_state, where="assigner"):
        """The method a config entry `subset_attribution.methods.<name>` describes."""
        return cls(spec["assigner"], spec.get("reducer"), n_folds, random_state, where)

    def __init__(self, assigner, reducer=None, n_folds=5, random_state=0, where="assigner"):
        self.reducer, self.random_state = reducer, random_state
        # a bad spec fails here, before any feature is read
        self.assigner_ = ASSIGNERS.create(
            assigner, where, n_folds=n_folds, random_state=random_state
        )
        if isinstance(self.assigner_, ClusterMatch):  # its clusterer, with a count injected
            self.assigner_.build_clusterer(2, where=f"{where}.clusterer")
        self.reducer_ = build_reducer(reducer, random_state=random_state)

    @property
    def needs_labels(self):
        return self.assigner_.needs_labels

    def run(self, X, real_X, real_subset, n_subsets, labels=None, train=None):
        X = as_matrix(X, "generated features")
        real_X = as_matrix(real_X, "real features")
        blocks = [X, real_X] + ([as_matrix(train[0], "training features")] if train else [])
        reduced = self.reducer_.fit_transform(np.concatenate(blocks))
        rx = reduced[len(X) : len(X) + len(real_X)]
        tx = reduced[len(X) + len(real_X) :]
        return self.assigner_.assign(
            reduced[: len(X)],
            rx,
            real_subset,
            n_subsets,
            labels=labels,
            train=(tx, train[1]) if train else None,
        )

    def trained_parts(self):
        return trained_parts({"reducer": self.reducer_})
