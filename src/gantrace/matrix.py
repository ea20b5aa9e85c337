"""Feature matrices: the check every part runs on the rows it is given (a data check, not a
parameter check), and the one vocabulary of distances and linkages between rows that
attribution and membership parts are configured with."""

import numpy as np

METRICS = ("euclidean", "cosine", "manhattan")  # scikit-learn's pairwise_distances names
LINKAGES = ("ward", "average", "complete", "single")  # scikit-learn's AgglomerativeClustering


def as_matrix(X, what="features"):
    X = np.asarray(X)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ValueError(f"{what}: expected a finite 2-D array, got shape {X.shape}")
    return X
