"""Supervised membership scorers: they learn from labelled real images.

Interface: `fit_generated(generated_X)` (label-free part), `fit_labels(real_X, labels)` on
labelled rows only (labels 0/1), `score(real_X)` a margin (> 0: used). `MembershipMethod`
cross-fits them, so no row is scored by a model that saw its own label.
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from gantrace.errors import ConfigError
from gantrace.matrix import METRICS, as_matrix
from gantrace.membership.scorers.unsupervised import ssim_matrix
from gantrace.nn.autoencoder import TRAINING_CONSTRAINTS, FeatureAutoencoder
from gantrace.params import COUNT, POSITIVE, SEED, Options, Part


class SupervisedScorer(Part):
    supervised = True
    margin = True

    def fit_generated(self, generated_X):
        return self

    def fit(self, generated_X, real_X, labels):
        return self.fit_generated(generated_X).fit_labels(real_X, labels)

    @staticmethod
    def _labelled(real_X, labels):
        real_X, labels = as_matrix(real_X, "real features"), np.asarray(labels)
        if labels.shape != (len(real_X),) or set(np.unique(labels)) != {0, 1}:
            raise ValueError("labels: need 0/1 labels with both classes present")
        return real_X, labels


class ClassCentroidsScorer(SupervisedScorer):
    """k-means with `n_clusters` centres on used and on not-used real images (Biomedical
    Imaging Goa 2024); margin = distance to the nearest not-used centre minus distance to
    the nearest used centre (`metric`, Manhattan by default), so > 0 when the nearest of the
    2k centres is a used one. k is capped at a class's size.
    """

    name = "class_centroids"
    stochastic = True  # k-means initialisation
    _parameter_constraints = {
        "n_clusters": [COUNT],
        "metric": [Options(*METRICS)],
        "n_init": [COUNT],
        "random_state": [SEED],
    }

    def __init__(self, n_clusters=5, metric="manhattan", n_init=10, random_state=0):
        self.n_clusters = n_clusters
        self.metric = metric
        self.n_init = n_init
        self.random_state = random_state
        self._validate_params()

    def fit_labels(self, real_X, labels):
        real_X, labels = self._labelled(real_X, labels)
        self.centres_ = {}
        for cls in (0, 1):
            rows = real_X[labels == cls]
            k = min(self.n_clusters, len(rows))
            km = KMeans(k, n_init=self.n_init, random_state=self.random_state).fit(rows)
            self.centres_[cls] = km.cluster_centers_
        return self

    def score(self, real_X):
        real_X = as_matrix(real_X, "real features")
        d = {
            c: pairwise_distances(real_X, m, metric=self.metric).min(axis=1)
            for c, m in self.centres_.items()
        }
        return d[0] - d[1]


class CentroidAutoencoderScorer(SupervisedScorer):
    """AI Multimedia Lab 2024 (Andrei et al., CEUR-WS Vol-3740, Sec. 3.1.2): an
    autoencoder trained on the generated images; e(x) is a real image's per-pixel squared
    reconstruction error, in the input's units (an error image).

    error "mse": the image's MSE m(x) = mean of e(x); the mean MSE of used and of not-used
    images are two centre values; the image goes to the nearer one: margin = m's signed
    distance past their midpoint, towards the used centre (> 0: nearer the used centre).
    error "ssim": the mean error images of used and not-used images are two centroid-like
    images; margin = SSIM(e, c_used) - SSIM(e, c_not_used) (`ssim_matrix` with `window`,
    data range = the larger centroid's peak).
    """

    name = "centroid_autoencoder"
    trains = True
    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "error": [Options("mse", "ssim")],
        "window": [COUNT],
    }

    def __init__(
        self,
        error="mse",
        code_size=32,
        hidden=256,
        epochs=50,
        lr=1e-3,
        batch_size=64,
        window=8,
        device="cpu",
        random_state=0,
    ):
        self.error = error
        self.code_size = code_size
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.window = window
        self.device = device
        self.random_state = random_state
        self._validate_params()
        self.model_ = FeatureAutoencoder(
            code_size,
            hidden,
            epochs,
            lr,
            batch_size,
            device,
            random_state,
            kind=self.name,
        )

    def fit_generated(self, generated_X):
        self.model_.fit(as_matrix(generated_X, "generated features"))
        return self

    def _errors(self, X):
        """Per-pixel squared errors in input units; the image's MSE alone for "mse"."""
        X = as_matrix(X, "real features")
        err = np.zeros(X.shape)  # constant (dropped) columns count as no error
        # the network works on standardised columns: scale its errors back to pixels
        scale = self.model_.scale_**2
        err[:, self.model_.keep_] = self.model_.reconstruction_error(X) * scale
        return err.mean(axis=1, keepdims=True) if self.error == "mse" else err

    def fit_labels(self, real_X, labels):
        real_X, labels = self._labelled(real_X, labels)
        err = self._errors(real_X)
        self.centroids_ = np.stack([err[labels == 0].mean(axis=0), err[labels == 1].mean(axis=0)])
        return self

    def score(self, real_X):
        err = self._errors(real_X)
        if self.error == "mse":
            # nearest centre, as a signed distance past their midpoint: the same decisions
            # as |m - c_not| - |m - c_used| > 0, and a ranking of every image
            c_not, c_used = self.centroids_[:, 0]
            return np.sign(c_used - c_not) * (err[:, 0] - (c_not + c_used) / 2)
        peak = float(self.centroids_.max()) or 1.0
        sim = ssim_matrix(err, self.centroids_, self.window, peak)
        return sim[:, 1] - sim[:, 0]

    def save(self, path):
        self.model_.save(path)


class PairClassifierScorer(SupervisedScorer):
    """SDVAHCS 2024: each real image is paired with its `n_neighbors` nearest generated
    images; pair features (|x - g|, x * g) feed a tabular classifier (`classifier`:
    logistic regression with `C`, or gradient boosting) trained on labelled rows' pairs.
    Margin = logit of the row's mean predicted probability of "used" over its pairs.
    """

    name = "pair_classifier"
    _parameter_constraints = {
        "n_neighbors": [COUNT],
        "classifier": [Options("logistic", "gradient_boosting")],
        "C": [POSITIVE],
        "random_state": [SEED],
    }

    def __init__(self, n_neighbors=3, classifier="logistic", C=1.0, random_state=0):
        self.n_neighbors = n_neighbors
        self.classifier = classifier
        self.C = C
        self.random_state = random_state
        self._validate_params()

    def fit_generated(self, generated_X):
        self.generated_ = as_matrix(generated_X, "generated features").astype(np.float64)
        if self.n_neighbors > len(self.generated_):
            raise ConfigError(
                f"pair_classifier.n_neighbors={self.n_neighbors} exceeds the "
                f"{len(self.generated_)} generated images"
            )
        self.nn_ = NearestNeighbors(n_neighbors=self.n_neighbors).fit(self.generated_)
        return self

    def _pairs(self, X):
        X = as_matrix(X, "real features").astype(np.float64)
        _, idx = self.nn_.kneighbors(X)
        x = np.repeat(X, self.n_neighbors, axis=0)
        g = self.generated_[idx.ravel()]
        return np.hstack([np.abs(x - g), x * g])

    def fit_labels(self, real_X, labels):
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        real_X, labels = self._labelled(real_X, labels)
        if self.classifier == "logistic":
            clf = LogisticRegression(C=self.C, max_iter=2000)
        else:
            clf = GradientBoostingClassifier(random_state=self.random_state)
        self.model_ = make_pipeline(StandardScaler(), clf)
        self.model_.fit(self._pairs(real_X), np.repeat(labels, self.n_neighbors))
        return self

    def score(self, real_X):
        p = self.model_.predict_proba(self._pairs(real_X))[:, 1]
        p = np.clip(p.reshape(-1, self.n_neighbors).mean(axis=1), 1e-9, 1 - 1e-9)
        return np.log(p / (1 - p))
