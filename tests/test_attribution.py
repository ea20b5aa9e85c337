import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from gantrace.attribution import (
    CLUSTERERS,
    AgglomerativeClusterer,
    AttributionMethod,
    build_clusterer,
    canonical_labels,
)
from gantrace.errors import ConfigError


def _blobs(n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(3, 8))
    truth = rng.permutation(np.repeat([0, 1, 2], n_per))
    return (centres[truth] + rng.standard_normal((len(truth), 8))).astype(np.float32), truth


@pytest.mark.parametrize(
    "clusterer",
    [
        {"name": "kmeans", "n_init": 3},
        {"name": "agglomerative"},
        {"name": "agglomerative", "linkage": "average", "metric": "manhattan"},
    ],
)
@pytest.mark.parametrize("reducer", [None, {"name": "pca", "n_components": 2}])
def test_recovers_blobs(clusterer, reducer):
    X, truth = _blobs()
    labels = AttributionMethod(n_clusters=3, clusterer=clusterer, reducer=reducer).fit_predict(X)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert set(labels) == {1, 2, 3} and labels.dtype.kind == "i"
    assert labels[0] == 1  # first row's cluster is numbered first


def test_relabel_by_first_appearance():
    np.testing.assert_array_equal(canonical_labels([7, 7, 2, 9, 2, 7]), [1, 1, 2, 3, 2, 1])
    np.testing.assert_array_equal(canonical_labels(np.array([0, 1, 0])), [1, 2, 1])
    X, _ = _blobs()
    a = AttributionMethod(n_clusters=3).fit_predict(X)
    firsts = [np.flatnonzero(a == c)[0] for c in (1, 2, 3)]
    assert firsts == sorted(firsts) and firsts[0] == 0


def test_deterministic_and_seed_independent_ids():
    X, _ = _blobs()
    runs = [AttributionMethod(n_clusters=3, random_state=s).fit_predict(X) for s in (0, 0, 5)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])  # same partition -> same ids


def test_config_errors():
    X, _ = _blobs(n_per=2)
    with pytest.raises(ConfigError, match="n_generators=7"):
        AttributionMethod(n_clusters=7).fit_predict(X)
    with pytest.raises(ConfigError, match="n_generators"):
        AttributionMethod(n_clusters=0)
    with pytest.raises(ConfigError, match=r"clusterer\.name.*kmeans, agglomerative"):
        AttributionMethod(n_clusters=3, clusterer={"name": "dbscan"})
    with pytest.raises(ConfigError, match=r"clusterer\.n_clusters"):
        AttributionMethod(n_clusters=3, clusterer={"name": "kmeans", "n_clusters": 3})
    with pytest.raises(ConfigError, match=r"clusterer\.eps"):
        build_clusterer({"name": "kmeans", "eps": 1})
    with pytest.raises(ConfigError, match="linkage"):
        build_clusterer({"name": "agglomerative", "linkage": "median"})
    with pytest.raises(ConfigError, match="ward"):
        build_clusterer({"name": "agglomerative", "metric": "cosine"})
    assert set(CLUSTERERS) == {"kmeans", "agglomerative"}


def test_agglomerative_refuses_large_n():
    X, _ = _blobs(n_per=10)
    with pytest.raises(ConfigError, match="kmeans"):
        AgglomerativeClusterer(n_clusters=3, max_samples=29).fit_predict(X)
    assert len(AgglomerativeClusterer(n_clusters=3, max_samples=30).fit_predict(X)) == 30
