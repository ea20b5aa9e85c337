"""Estimating the number of generators: criteria, AttributionMethod with unknown k, k columns."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from gantrace import stages
from gantrace.attribution.method import AttributionMethod
from gantrace.attribution.nclusters import CRITERIA, NClustersEstimator, estimate_n_clusters
from gantrace.errors import ConfigError, RunFileError
from gantrace.evaluation.metrics import attribution_metrics


def _blobs(k, n_per=30, seed=1):
    return make_blobs(
        n_samples=n_per * k, centers=k, n_features=5, center_box=(-20, 20), random_state=seed
    )


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_each_criterion_recovers_the_number_of_blobs(criterion):
    for k in (3, 5):
        X, _ = _blobs(k)
        found, table = estimate_n_clusters(X, criterion, k_min=2, k_max=8)
        assert found == k, table
        assert list(table.k) == list(range(2, 9)) and table[criterion].notna().all()
    one, _ = estimate_n_clusters(_blobs(1)[0], criterion, k_min=1, k_max=6)
    assert one == 1  # a single blob is not split


def test_bad_criterion_or_range_fails_and_k_max_is_capped():
    X, _ = _blobs(3)
    with pytest.raises(ConfigError, match=r"estimate_k\.name.*bic, eigengap, gap, silhouette"):
        estimate_n_clusters(X, "elbow")
    with pytest.raises(ConfigError, match=r"estimate_k\.k_max"):
        estimate_n_clusters(X, k_min=5, k_max=3)
    with pytest.raises(ConfigError, match=r"estimate_k\.n_neighbors: unknown parameter"):
        NClustersEstimator("bic", n_neighbors=5)
    _, table = estimate_n_clusters(X[:6], "bic", k_max=10)
    assert table.k.max() == 5  # n - 1
    with pytest.raises(ConfigError, match="too few"):
        estimate_n_clusters(X[:2], k_min=2)


def test_subsample_is_seeded():
    X, _ = _blobs(4, n_per=40)

    def scores(seed, max_samples):  # eigengap itself has no randomness: only the draw
        est = NClustersEstimator("eigengap", max_samples=max_samples, random_state=seed)
        return est.fit(X).scores_

    assert scores(0, 50).equals(scores(0, 50)) and not scores(0, 50).equals(scores(1, 50))
    assert scores(0, 500).equals(scores(1, 500))  # every row used: the seed does not matter


def test_attribution_method_estimates_k_when_none():
    X, y = _blobs(4)
    runs = [AttributionMethod(n_clusters=None).fit_predict(X) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert adjusted_rand_score(y, runs[0]) == 1.0
    m = AttributionMethod(n_clusters=None, n_clusters_estimator={"name": "bic", "k_max": 6})
    m.fit(X)
    assert m.n_clusters_ == 4 and list(m.k_scores_.k) == [2, 3, 4, 5, 6]
    assert AttributionMethod(n_clusters=3).fit(X).n_clusters_ == 3  # given k is kept
    with pytest.raises(ConfigError, match=r"estimate_k\.name"):
        AttributionMethod(n_clusters=None, n_clusters_estimator={"name": "elbow"})


def test_metrics_count_found_and_true_generators():
    m = attribution_metrics(["a", "a", "b", "b", "c"], [1, 1, 1, 2, 2])
    assert m["k_found"] == 2 and m["k_true"] == 3


def test_run_file_labels_run_to_k_found_without_n_generators(tmp_path):
    import pandas as pd

    from gantrace import io

    table = pd.DataFrame({"image_id": list("abcde"), "cluster": [1, 2, 3, 4, 4]})
    io.write_table(table, tmp_path / "r.parquet")
    stages.submission("attribution", tmp_path / "r.parquet", tmp_path / "r.csv")  # 1..4 found
    with pytest.raises(RunFileError, match=r"labels outside \[1, 2, 3\]"):
        stages.submission("attribution", tmp_path / "r.parquet", tmp_path / "s.csv", 3)


def test_stability_chooses_the_largest_k_near_the_most_stable_and_is_seeded():
    stability = CRITERIA.create({"name": "stability", "tolerance": 0.05})
    assert stability.choose([2, 3, 4, 5], [1.0, 0.97, 0.99, 0.9]) == 2  # k = 4
    assert stability.choose([1, 2, 3], [1.0, 0.9, 0.99]) == 2  # k = 1 scores 1.0
    assert stability.choose([2, 3], [0.4, 0.2]) == 0  # nothing stable: the most stable
    X, _ = _blobs(6, n_per=20, seed=3)
    scores = lambda seed: NClustersEstimator(  # noqa: E731
        "stability", k_max=8, n_resamples=4, random_state=seed
    ).fit(X)
    first = scores(0)
    assert first.n_clusters_ == 6, first.scores_
    assert first.scores_.equals(scores(0).scores_)  # the same draws for the same seed
    assert not first.scores_.equals(scores(1).scores_)
    with pytest.raises(ConfigError, match=r"subsample"):
        NClustersEstimator("stability", subsample=1.0)
