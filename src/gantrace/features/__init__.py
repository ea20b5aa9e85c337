"""Image embeddings for membership and attribution: registry, extractors, shard runner.

from gantrace.features import build_extractor, extract_shard
ext = build_extractor({"name": "torchvision", "arch": "densenet121", "weights": "none"})
feats = ext.transform(images)  # uint8 (N, H, W) -> float32 (N, D)

Every spec takes `preprocess` (see `gantrace.preprocess`), applied before the region mask.
"""

from gantrace.features import (  # noqa: F401 - fill the registry
    classic,
    concat,
    contrastive,
    deep,
    finetuned,
    hf_vision,
    lite0,
    phase,
    residual,
    timm_models,
)
from gantrace.features.base import (
    FEATURES,
    REGIONS,
    FeatureExtractor,
    apply_region,
    build_extractor,
    check_spec,
)
from gantrace.features.classic import (
    LBPExtractor,
    PixelsExtractor,
    SpectrumExtractor,
    noise_residual,
)
from gantrace.features.concat import ConcatExtractor
from gantrace.features.contrastive import ContrastiveFeature
from gantrace.features.deep import Dinov2Extractor, TorchExtractor, TorchvisionExtractor
from gantrace.features.finetuned import LearnedFeature
from gantrace.features.hf_vision import Blip2Extractor, BlipExtractor, VitMaeExtractor
from gantrace.features.lite0 import EfficientNetLite0Extractor
from gantrace.features.phase import PhaseResidualExtractor
from gantrace.features.residual import DCTExtractor, ResidualExtractor
from gantrace.features.runner import extract_shard
from gantrace.features.timm_models import TimmExtractor

__all__ = [
    "FEATURES",
    "REGIONS",
    "Blip2Extractor",
    "BlipExtractor",
    "ConcatExtractor",
    "ContrastiveFeature",
    "DCTExtractor",
    "Dinov2Extractor",
    "EfficientNetLite0Extractor",
    "FeatureExtractor",
    "LBPExtractor",
    "LearnedFeature",
    "PhaseResidualExtractor",
    "PixelsExtractor",
    "ResidualExtractor",
    "SpectrumExtractor",
    "TorchExtractor",
    "TimmExtractor",
    "TorchvisionExtractor",
    "VitMaeExtractor",
    "apply_region",
    "build_extractor",
    "check_spec",
    "extract_shard",
    "noise_residual",
]
