"""Image embeddings for membership and attribution: registry, extractors, shard runner.

from gantrace.features import build_extractor, extract_shard
ext = build_extractor({"extractor": "torchvision", "arch": "densenet121", "weights": "none"})
feats = ext.transform(images)  # uint8 (N, H, W) -> float32 (N, D)
"""

from gantrace.features import classic, deep, lite0  # noqa: F401 - fill the registry
from gantrace.features.base import (
    FEATURES,
    REGIONS,
    FeatureExtractor,
    apply_region,
    build_extractor,
)
from gantrace.features.classic import (
    LBPExtractor,
    PixelsExtractor,
    SpectrumExtractor,
    noise_residual,
)
from gantrace.features.deep import Dinov2Extractor, TorchExtractor, TorchvisionExtractor
from gantrace.features.lite0 import EfficientNetLite0Extractor
from gantrace.features.runner import ShardDataset, extract_shard

__all__ = [
    "FEATURES",
    "REGIONS",
    "Dinov2Extractor",
    "EfficientNetLite0Extractor",
    "FeatureExtractor",
    "LBPExtractor",
    "PixelsExtractor",
    "ShardDataset",
    "SpectrumExtractor",
    "TorchExtractor",
    "TorchvisionExtractor",
    "apply_region",
    "build_extractor",
    "extract_shard",
    "noise_residual",
]
