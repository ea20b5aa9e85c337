"""Every registered part declares its parameters once (gantrace.params) and is built from
config one way (gantrace.registry): declarations match constructors, clones match, and a
value is refused by its declaration, `True` included."""

import pytest

from gantrace.attribution.method import CLUSTERERS, GMMClusterer
from gantrace.attribution.nclusters import CRITERIA, NClustersEstimator
from gantrace.attribution.openset import OpenSetAttribution
from gantrace.benchmark_builder.generators import GENERATORS
from gantrace.errors import ConfigError
from gantrace.features.finetuned import CNNClassifier
from gantrace.membership.scorers import SCORERS
from gantrace.nn.autoencoder import FeatureAutoencoder
from gantrace.params import Interval, Part, as_constraint
from gantrace.reduce import REDUCERS
from gantrace.registry import Registry, spec_name
from gantrace.segmentation.unet import LungUNet

REGISTRIES = {r.kind: r for r in (REDUCERS, CLUSTERERS, CRITERIA, SCORERS, GENERATORS)}
REGISTERED = [(kind, name) for kind, r in REGISTRIES.items() for name in r.names()]
UNREGISTERED = [FeatureAutoencoder, NClustersEstimator, OpenSetAttribution, LungUNet, CNNClassifier]
ALL_PARTS = [REGISTRIES[k][n] for k, n in REGISTERED] + UNREGISTERED


def _ids(parts):
    return [p.__name__ for p in parts]


def undeclared(cls):
    """Constructor parameters without a declaration."""
    return sorted(set(cls.param_names()) - set(cls.constraints()))


def stale(cls):
    """Declarations of a class in the hierarchy that its own constructor does not take."""
    out = []
    for klass in cls.__mro__:
        own = vars(klass).get("_parameter_constraints")
        if own and issubclass(klass, Part):
            out += [f"{klass.__name__}.{k}" for k in sorted(set(own) - set(klass.param_names()))]
    return out


@pytest.mark.parametrize("cls", ALL_PARTS, ids=_ids(ALL_PARTS))
def test_declared_constraints_cover_exactly_the_constructor(cls):
    assert issubclass(cls, Part)
    assert undeclared(cls) == []
    assert stale(cls) == []


def test_the_declaration_check_finds_an_undeclared_and_a_stale_parameter():
    class Grown(GMMClusterer):
        def __init__(self, n_clusters=8, tol=1e-3, random_state=0):
            super().__init__(n_clusters=n_clusters, random_state=random_state)
            self.tol = tol

    class Shrunk(GMMClusterer):
        _parameter_constraints = {"tol": [Interval(float, 0)]}

    assert undeclared(Grown) == ["tol"] and stale(Grown) == []
    assert undeclared(Shrunk) == [] and stale(Shrunk) == ["Shrunk.tol"]


@pytest.mark.parametrize(("kind", "name"), REGISTERED)
def test_registered_name_is_the_class_name_attribute(kind, name):
    assert REGISTRIES[kind][name].name == name


@pytest.mark.parametrize(("kind", "name"), REGISTERED)
def test_clone_gives_equal_params(kind, name):
    part = REGISTRIES[kind][name]()
    copy = part.clone()
    assert type(copy) is type(part) and copy is not part
    assert copy.get_params() == part.get_params()
    assert sorted(part.get_params()) == part.param_names()


def test_clone_of_unregistered_parts_and_of_set_params():
    est = NClustersEstimator("bic", k_max=5, reg_covar=1e-3)
    assert est.clone().get_params() == est.get_params()
    assert est.clone().criterion_.reg_covar == 1e-3
    gmm = CLUSTERERS.create({"name": "gmm", "reg_covar": 1e-4}, n_clusters=3, random_state=2)
    assert gmm.clone().get_params() == {**GMMClusterer().get_params(), **gmm.get_params()}
    unet = LungUNet(epochs=2, decoder_channels=[16, 8, 4])
    assert unet.clone().get_params() == unet.get_params()
    cnn = CNNClassifier(width=8, device="cpu")
    assert cnn.clone().get_params() == cnn.get_params()


@pytest.mark.parametrize("cls", [GMMClusterer, CRITERIA["bic"]])
def test_reg_covar_true_is_refused(cls):
    with pytest.raises(ConfigError, match=r"reg_covar: expected a number > 0, got True"):
        cls(reg_covar=True)
    with pytest.raises(ConfigError, match=r"attribution\.methods\.x\.clusterer\.reg_covar"):
        CLUSTERERS.create(
            {"name": "gmm", "reg_covar": True}, where="attribution.methods.x.clusterer"
        )


def _numbers_only(forms):
    constraints = [as_constraint(f) for f in forms]
    return any(isinstance(c, Interval) for c in constraints) and not any(
        c.accepts(True) for c in constraints
    )


NUMERIC = [
    (cls, key)
    for cls in ALL_PARTS
    for key, forms in cls.constraints().items()
    if key in cls.param_names() and _numbers_only(forms)
]


@pytest.mark.parametrize(("cls", "key"), NUMERIC, ids=[f"{c.__name__}.{k}" for c, k in NUMERIC])
def test_true_is_no_number(cls, key):
    part = cls()
    with pytest.raises(ConfigError, match=rf"\.{key}: expected"):
        part.set_params(**{key: True})._validate_params()


def test_values_are_refused_under_the_config_key_or_the_part_name():
    with pytest.raises(ConfigError, match=r"^knn\.metric: expected one of .*got 'hamming'"):
        SCORERS.create({"name": "knn", "metric": "hamming"})
    with pytest.raises(ConfigError, match=r"^membership\.methods\.m\.scorer\.metric: expected"):
        SCORERS.create({"name": "knn", "metric": "hamming"}, where="membership.methods.m.scorer")
    with pytest.raises(
        ConfigError,
        match=r"scorer: unknown scorer 'kn' \(did you mean 'knn'\?\); set scorer\.name to",
    ):
        SCORERS.create({"name": "kn"})


def test_registries_list_names_in_their_given_order_and_spec_name():
    assert REDUCERS.names() == ["autoencoder", "none", "pca", "tsne"]
    assert CLUSTERERS.names()[-1] == "fingerprint"
    assert list(GENERATORS) == ["dcgan", "wgan_gp", "vae", "diffusion"]
    assert [n for n, _ in CRITERIA.items()] == ["bic", "eigengap", "gap", "silhouette", "stability"]
    plain = Registry("thing")
    plain.register(GMMClusterer, name="b")
    plain.register(GMMClusterer, name="a")
    assert plain.names() == ["a", "b"]  # registered one by one: sorted
    assert spec_name("pca") == spec_name({"name": "pca", "n_components": 3}) == "pca"
    assert spec_name(None) is None
