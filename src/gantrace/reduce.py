"""Feature reducers (fit on generated images only) and the config-spec builder shared by
attribution and membership."""

import inspect
from numbers import Integral, Real

import numpy as np
from sklearn.decomposition import PCA

from gantrace.errors import ConfigError


def build_from_spec(spec, registry, kind, **injected):
    """Turn `{"name": ..., **params}` (or a bare name) into `registry[name](**params)`.

    `injected` values (n_clusters, random_state) belong to the enclosing method: they are
    passed to classes that accept them and may not be set in the spec itself.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(
            f"{kind}: expected a mapping with a 'name' key, one of {', '.join(registry)}; "
            f"got {spec!r}"
        )
    params = dict(spec)
    name = params.pop("name")
    if name not in registry:
        raise ConfigError(
            f"{kind}.name: unknown {kind} {name!r}; valid options: {', '.join(registry)}"
        )
    accepted = set(inspect.signature(registry[name]).parameters)
    for key in params:
        if key in injected:
            raise ConfigError(
                f"{kind}.{key}: set by the enclosing method; remove it from the {name!r} spec"
            )
        if key not in accepted:
            valid = ", ".join(sorted(accepted - set(injected))) or "none"
            raise ConfigError(f"{kind}.{key}: unknown parameter of {name!r}; valid: {valid}")
    params.update({k: v for k, v in injected.items() if k in accepted})
    return registry[name](**params)


def check_choice(key, value, options):
    if value not in options:
        raise ConfigError(f"{key}: got {value!r}; valid options: {', '.join(options)}")


def check_int(key, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")


def as_matrix(X, what="features"):
    X = np.asarray(X)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ValueError(f"{what}: expected a finite 2-D array, got shape {X.shape}")
    return X


class IdentityReducer:
    """The `none` reducer: features pass through unchanged."""

    def fit(self, X):
        return self

    def transform(self, X):
        return as_matrix(X)

    def fit_transform(self, X):
        return self.fit(X).transform(X)


class PCAReducer:
    """Standardise columns (constant ones dropped), then PCA.

    A float `n_components` in (0, 1) keeps that fraction of variance; an int keeps that
    many components.
    """

    def __init__(self, n_components=0.95, whiten=False, random_state=0):
        if isinstance(n_components, Real) and not isinstance(n_components, Integral):
            if not 0 < n_components < 1:
                raise ConfigError(
                    f"pca.n_components: a float must lie in (0, 1), got {n_components}"
                )
        else:
            check_int("pca.n_components", n_components)
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state

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


class AutoencoderReducer:
    """Code layer of an MLP autoencoder trained on the rows it is fitted on (CSMorgan 2024).

    Columns are standardised first; `hidden` width and `epochs` set the model size and
    training length; `device` is "cpu" (default, reproducible), "auto" or "cuda[:N]".
    """

    trains = True

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
        from gantrace.nn.autoencoder import FeatureAutoencoder

        self.code_size = code_size
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
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


class TSNEReducer:
    """2-D (or `n_components`-D) t-SNE embedding (SDVAHCS 2024), after standardising columns.

    t-SNE places only the rows it is fitted on: there is no `transform` for unseen rows, so
    it serves attribution only. `perplexity` is lowered to (n - 1) / 3 for small inputs.
    """

    transforms_unseen = False

    def __init__(self, n_components=2, perplexity=30.0, max_iter=1000, random_state=0):
        check_int("tsne.n_components", n_components)
        if n_components > 3:
            raise ConfigError("tsne.n_components: Barnes-Hut t-SNE allows at most 3")
        if isinstance(perplexity, bool) or not isinstance(perplexity, Real) or perplexity <= 0:
            raise ConfigError(f"tsne.perplexity: expected a positive number, got {perplexity!r}")
        check_int("tsne.max_iter", max_iter, minimum=250)
        self.n_components = n_components
        self.perplexity = perplexity
        self.max_iter = max_iter
        self.random_state = random_state

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


REDUCERS = {
    "autoencoder": AutoencoderReducer,
    "none": IdentityReducer,
    "pca": PCAReducer,
    "tsne": TSNEReducer,
}


def spec_name(spec):
    return spec if isinstance(spec, str) else (spec or {}).get("name")


def trained_parts(parts):
    """{role: part} of the parts that train a network (class attribute `trains`)."""
    return {role: p for role, p in parts.items() if getattr(p, "trains", False)}


def build_reducer(spec, **injected):
    """None means no reduction; otherwise a spec such as `{"name": "pca", "n_components": 64}`."""
    return build_from_spec("none" if spec is None else spec, REDUCERS, "reducer", **injected)
