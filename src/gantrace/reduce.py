"""Feature reducers (fit on generated images only): one registry, REDUCERS."""

from numbers import Integral

import numpy as np
from sklearn.decomposition import PCA

from gantrace.errors import ConfigError
from gantrace.matrix import as_matrix
from gantrace.nn.autoencoder import TRAINING_CONSTRAINTS, FeatureAutoencoder
from gantrace.params import COUNT, POSITIVE, SEED, Interval, Part
from gantrace.registry import Registry


class IdentityReducer(Part):
    """The `none` reducer: features pass through unchanged."""

    name = "none"

    def fit(self, X):
        return self

    def transform(self, X):
        return as_matrix(X)

    def fit_transform(self, X):
        return self.fit(X).transform(X)


class PCAReducer(Part):
    """Standardise columns (constant ones dropped), then PCA.

    A float `n_components` in (0, 1) keeps that fraction of variance; an int keeps that
    many components.
    """

    name = "pca"
    _parameter_constraints = {
        "n_components": [Interval(float, 0, 1, closed="neither"), COUNT],
        "whiten": [bool],
        "random_state": [SEED],
    }

    def __init__(self, n_components=0.95, whiten=False, random_state=0):
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state
        self._validate_params()

    def fit(self, X):
        X = as_matrix(X).astype(np.float64)
        # ptp is exactly zero for a constant column; a std computed from a mean is not.
        self.keep_ = np.ptp(X, axis=0) > 0
        usable = min(len(X), int(self.keep_.sum()))
        if usable == 0:
            raise ValueError("pca: every feature column is constant; nothing to reduce")
        if isinstance(self.n_components, Integral) and self.n_components > usable:
            raise ConfigError(
                f"pca.n_components={self.n_components} exceeds the {usable} usable "
                "dimensions (non-constant columns, rows); lower it or use a variance fraction"
            )
        X = X[:, self.keep_]
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0)
        self.pca_ = PCA(self.n_components, whiten=self.whiten, random_state=self.random_state)
        self.pca_.fit((X - self.mean_) / self.scale_)
        return self

    def transform(self, X):
        X = as_matrix(X).astype(np.float64)[:, self.keep_]
        return self.pca_.transform((X - self.mean_) / self.scale_)

    def fit_transform(self, X):
        return self.fit(X).transform(X)


class AutoencoderReducer(Part):
    """Code layer of an MLP autoencoder trained on the rows it is fitted on (CSMorgan 2024).

    Columns are standardised first; `hidden` width and `epochs` set the model size and
    training length; `device` is "cpu" (default, reproducible), "auto" or "cuda[:N]".
    """

    name = "autoencoder"
    trains = True
    _parameter_constraints = TRAINING_CONSTRAINTS

    def __init__(
        self,
        code_size=32,
        hidden=256,
        epochs=50,
        lr=1e-3,
        batch_size=64,
        device="cpu",
        random_state=0,
    ):
        self.code_size = code_size
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self._validate_params()
        self.model_ = FeatureAutoencoder(
            code_size, hidden, epochs, lr, batch_size, device, random_state
        )

    def fit(self, X):
        self.model_.fit(as_matrix(X))
        return self

    def transform(self, X):
        return self.model_.encode(as_matrix(X))

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def save(self, path):
        self.model_.save(path)


class TSNEReducer(Part):
    """2-D (or `n_components`-D) t-SNE embedding (SDVAHCS 2024), after standardising columns.

    t-SNE places only the rows it is fitted on: there is no `transform` for unseen rows, so
    it serves attribution only. `perplexity` is lowered to (n - 1) / 3 for small inputs.
    """

    name = "tsne"
    stochastic = True  # random initialisation of the embedding
    transforms_unseen = False
    _parameter_constraints = {
        "n_components": [Interval(int, 1, 3)],  # Barnes-Hut t-SNE allows at most 3
        "perplexity": [POSITIVE],
        "max_iter": [Interval(int, 250)],
        "random_state": [SEED],
    }

    def __init__(self, n_components=2, perplexity=30.0, max_iter=1000, random_state=0):
        self.n_components = n_components
        self.perplexity = perplexity
        self.max_iter = max_iter
        self.random_state = random_state
        self._validate_params()

    def fit_transform(self, X):
        from sklearn.manifold import TSNE

        X = as_matrix(X).astype(np.float64)
        X = X[:, np.ptp(X, axis=0) > 0]
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        perplexity = min(float(self.perplexity), max((len(X) - 1) / 3, 1.0))
        model = TSNE(
            self.n_components,
            perplexity=perplexity,
            max_iter=self.max_iter,
            init="pca",
            learning_rate="auto",
            random_state=self.random_state,
        )
        return model.fit_transform(X)

    def fit(self, X):
        self.fit_transform(X)
        return self

    def transform(self, X):
        raise ConfigError(
            "reducer.name: tsne embeds only the rows it is fitted on and cannot transform "
            "unseen rows; use pca or autoencoder here"
        )


REDUCERS = Registry("reducer", (AutoencoderReducer, IdentityReducer, PCAReducer, TSNEReducer))


def build_reducer(spec, **injected):
    """None means no reduction; otherwise a spec such as `{"name": "pca", "n_components": 64}`."""
    return REDUCERS.create("none" if spec is None else spec, **injected)
