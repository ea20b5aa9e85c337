"""Membership scorers: higher score = more likely USED to train the generator.

Unsupervised scorers: `fit(generated_X)` then `score(real_X)`; those that compare real
images with each other also take `fit_reference(real_X)` (all real rows, no labels).
Supervised scorers (`supervised = True`): `fit_generated(generated_X)`, then
`fit_labels(real_X, labels)` on labelled rows, then `score(real_X)`, a margin (> 0: used).
Scorers with `margin = True` have a meaningful natural threshold at 0.
Every scorer is a `gantrace.params.Part` in the SCORERS registry:
`SCORERS.create({"name": "knn", "k": 3})`.
"""

from gantrace.membership.scorers.hierarchical import HierarchicalDistanceScorer
from gantrace.membership.scorers.patches import PatchMatchScorer
from gantrace.membership.scorers.reference import (
    CalibratedKNNScorer,
    DensityRatioScorer,
    EpsilonBallScorer,
)
from gantrace.membership.scorers.supervised import (
    CentroidAutoencoderScorer,
    ClassCentroidsScorer,
    PairClassifierScorer,
)
from gantrace.membership.scorers.unsupervised import (
    AdditiveScorer,
    ClusterDistanceScorer,
    ColumnScorer,
    KNNScorer,
    ModeThresholdScorer,
    SimilarityScorer,
    TwoMeansScorer,
)
from gantrace.membership.scorers.vcmi import (
    VCMIEnsemble,
    VCMIRanking,
    VCMIRetrieval,
    VCMIThresholdMax,
)
from gantrace.registry import Registry

SCORERS = Registry(
    "scorer",
    (
        AdditiveScorer,
        CalibratedKNNScorer,
        CentroidAutoencoderScorer,
        ClassCentroidsScorer,
        ClusterDistanceScorer,
        ColumnScorer,
        DensityRatioScorer,
        EpsilonBallScorer,
        HierarchicalDistanceScorer,
        KNNScorer,
        ModeThresholdScorer,
        PairClassifierScorer,
        PatchMatchScorer,
        SimilarityScorer,
        TwoMeansScorer,
        VCMIEnsemble,
        VCMIRanking,
        VCMIRetrieval,
        VCMIThresholdMax,
    ),
)

__all__ = [
    "SCORERS",
    "AdditiveScorer",
    "CalibratedKNNScorer",
    "DensityRatioScorer",
    "EpsilonBallScorer",
    "HierarchicalDistanceScorer",
    "CentroidAutoencoderScorer",
    "ClassCentroidsScorer",
    "ClusterDistanceScorer",
    "ColumnScorer",
    "KNNScorer",
    "ModeThresholdScorer",
    "PairClassifierScorer",
    "PatchMatchScorer",
    "SimilarityScorer",
    "TwoMeansScorer",
    "VCMIEnsemble",
    "VCMIRanking",
    "VCMIRetrieval",
    "VCMIThresholdMax",
]
