"""Subset attribution (ImageCLEFmedical GANs 2025, subtask 2): which real-image subset each
generated image's generator was trained on.

Methods are a reducer and an assigner (`ASSIGNERS`: nearest_subset, supervised,
cluster_match), built from a config entry `subset_attribution.methods.<name>` by
`SubsetMethod.from_spec`.
"""

from gantrace.subset.assigners import ASSIGNERS, ClusterMatch, NearestSubset, SupervisedSubset
from gantrace.subset.method import SubsetMethod

__all__ = ["ASSIGNERS", "ClusterMatch", "NearestSubset", "SubsetMethod", "SupervisedSubset"]
