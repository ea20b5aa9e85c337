import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from gantrace.attribution.method import (
    CLUSTERERS,
    AgglomerativeClusterer,
    AttributionMethod,
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
    with pytest.raises(ConfigError, match=r"clusterer\.name.*agglomerative, dbscan_rerank, gmm"):
        AttributionMethod(n_clusters=3, clusterer={"name": "dbscan"})
    with pytest.raises(ConfigError, match=r"clusterer\.n_clusters"):
        AttributionMethod(n_clusters=3, clusterer={"name": "kmeans", "n_clusters": 3})
    with pytest.raises(ConfigError, match=r"clusterer\.eps"):
        CLUSTERERS.create({"name": "kmeans", "eps": 1})
    with pytest.raises(ConfigError, match="linkage"):
        CLUSTERERS.create({"name": "agglomerative", "linkage": "median"})
    with pytest.raises(ConfigError, match="ward"):
        CLUSTERERS.create({"name": "agglomerative", "metric": "cosine"})
    assert set(CLUSTERERS) == {
        "agglomerative",
        "argmax",
        "dbscan_rerank",
        "fingerprint",
        "gmm",
        "hdbscan_rerank",
        "kmeans",
    }


def test_argmax_classifies_and_keeps_the_most_predicted_classes():
    from gantrace.attribution.method import ArgmaxClusterer

    probs = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.1, 0.8, 0.0, 0.1], [0.2, 0.5, 0.0, 0.3]]
        + [[0.1, 0.1, 0.7, 0.1], [0.1, 0.0, 0.2, 0.7]]
    )
    np.testing.assert_array_equal(ArgmaxClusterer(4).fit_predict(probs), [0, 0, 1, 1, 2, 3])
    # three classes: columns 0 and 1 win twice, column 2 (the lower of the tied) is kept;
    # the last image goes to its largest kept column
    np.testing.assert_array_equal(ArgmaxClusterer(3).fit_predict(probs), [0, 0, 1, 1, 2, 2])
    method = AttributionMethod(n_clusters=2, clusterer="argmax")
    np.testing.assert_array_equal(method.fit_predict(probs), [1, 1, 2, 2, 1, 1])


def test_agglomerative_refuses_large_n():
    X, _ = _blobs(n_per=10)
    with pytest.raises(ConfigError, match="kmeans"):
        AgglomerativeClusterer(n_clusters=3, max_samples=29).fit_predict(X)
    assert len(AgglomerativeClusterer(n_clusters=3, max_samples=30).fit_predict(X)) == 30


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_gmm_inits_recover_blobs(init):
    X, truth = _blobs()
    spec = {"name": "gmm", "init": init, "covariance_type": "diag", "n_init": 3}
    labels = AttributionMethod(n_clusters=3, clusterer=spec).fit_predict(X)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_gmm_full_covariance_beats_kmeans_on_elongated_clusters():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 150)
    X = np.c_[rng.normal(scale=10, size=300), rng.normal(scale=0.3, size=300)]
    X[:, 1] += 2.0 * truth  # two long parallel stripes
    gmm = AttributionMethod(2, {"name": "gmm", "n_init": 3}).fit_predict(X)
    km = AttributionMethod(2, {"name": "kmeans"}).fit_predict(X)
    assert adjusted_rand_score(truth, gmm) > 0.9 > adjusted_rand_score(truth, km)


def test_density_rerank_fixes_planted_outlier():
    from gantrace.attribution.method import density_rerank

    X, truth = _blobs()
    labels = truth.copy()
    wrong = int(np.flatnonzero(truth == 0)[0])
    labels[wrong] = 1  # planted mislabel inside cluster 0
    density = truth.copy()  # a density clustering that found the blobs
    density[5] = -1  # one noise row keeps its (correct) label by its neighbours' vote
    fixed = density_rerank(X, labels, density, min_share=0.2, n_neighbors=5)
    np.testing.assert_array_equal(fixed, truth)
    # A merged density cluster holding two big labels leaves both alone.
    merged = np.where(truth == 2, 1, truth)
    np.testing.assert_array_equal(density_rerank(X, truth, merged), truth)


@pytest.mark.parametrize("name", ["dbscan_rerank", "hdbscan_rerank"])
def test_rerank_clusterers_fix_a_bad_base(name):
    X, truth = _blobs()
    # Single linkage with one cluster too many splits a loose point of blob 0 off as its
    # own cluster; density re-ranking gives it back to blob 0.
    X = X.copy()
    out = int(np.flatnonzero(truth == 0)[0])
    X[out] += 2.5  # a loose point of blob 0
    base = {"name": "agglomerative", "linkage": "single"}
    base_labels = AttributionMethod(4, base).fit_predict(X)
    assert adjusted_rand_score(truth, base_labels) < 1.0  # the base splits off the outlier
    spec = {"name": name, "base": base}
    labels = AttributionMethod(4, spec).fit_predict(X)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_rerank_config_errors():
    with pytest.raises(ConfigError, match="base"):
        CLUSTERERS.create({"name": "dbscan_rerank", "base": "dbscan_rerank"}, n_clusters=2)
    with pytest.raises(ConfigError, match="clusterer.name"):
        CLUSTERERS.create({"name": "dbscan_rerank", "base": "nope"}, n_clusters=2)
    with pytest.raises(ConfigError, match="gmm.init"):
        CLUSTERERS.create({"name": "gmm", "init": "kmeans+"}, n_clusters=2)


def test_autoencoder_reducer_is_saved_by_the_stage(tmp_path):
    from safetensors.numpy import load_file

    from gantrace.stages import _save_models

    X, truth = _blobs(n_per=15)
    spec = {"name": "autoencoder", "code_size": 3, "hidden": 16, "epochs": 15, "lr": 3e-3}
    method = AttributionMethod(3, {"name": "kmeans", "n_init": 3}, reducer=spec)
    assert adjusted_rand_score(truth, method.fit_predict(X)) == 1.0
    _save_models(method, tmp_path / "models")
    assert set(load_file(tmp_path / "models" / "reducer.safetensors")) >= {"mean", "scale"}
    plain = AttributionMethod(3, "kmeans")
    plain.fit(X)
    assert plain.trained_parts() == {}
