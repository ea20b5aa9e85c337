"""Concatenated features of several extractors ("multiformer", CSMorgan 2024: BLIP + DINOv2)."""

import numpy as np
import torch
import torch.nn.functional as F

from gantrace.errors import ConfigError
from gantrace.features.base import (
    FEATURES,
    FeatureExtractor,
    check_choice,
    check_int,
    check_spec,
    register,
)


@register
class ConcatExtractor(FeatureExtractor):
    """Features of each part (L2-normalised per image by default) side by side.

    Parts share the concat's input: preprocessing belongs on the concat, not on a part.
    `seed` (when set) seeds every part that has a seed and sets none itself.
    """

    name = "concat"
    defaults = {"parts": None, "normalise": "l2", "batch_size": 32, "seed": None}

    def check_params(self):
        p = self.params
        check_choice(self.name, "normalise", p["normalise"], ("l2", "none"))
        if p["seed"] is not None:
            p["seed"] = check_int(self.name, "seed", p["seed"], minimum=0)
        if not isinstance(p["parts"], (list, tuple)) or not p["parts"]:
            raise ConfigError(
                f"{self.config_key}: concat needs 'parts', a non-empty list of extractor specs "
                f"such as [{{extractor: blip}}, {{extractor: dinov2}}], got {p['parts']!r}"
            )
        self.parts = []
        for i, spec in enumerate(p["parts"]):
            key = f"{self.config_key}.parts[{i}]"
            if isinstance(spec, dict) and spec.get("preprocess") not in (None, "none", []):
                raise ConfigError(
                    f"{key}.preprocess: parts share the concat's input; set preprocess on "
                    f"{self.config_key} instead"
                )
            cls = FEATURES.get(spec.get("extractor")) if isinstance(spec, dict) else None
            if cls is not None and p["seed"] is not None and "seed" in cls.defaults:
                spec = {"seed": p["seed"], **spec}
            self.parts.append(check_spec(spec, key))
        p["parts"] = [{"extractor": part.name, **part.get_params()} for part in self.parts]
        self.uses_torch = any(part.uses_torch for part in self.parts)
        self.versions_of = tuple(dict.fromkeys(v for part in self.parts for v in part.versions_of))
        self.device = torch.device("cpu")

    def check_weights(self):
        for part in self.parts:
            part.check_weights()

    def required_weights(self):
        return [entry for part in self.parts for entry in part.required_weights()]

    def weights_description(self):
        return "; ".join(f"{p.name}:{p.weights_description()}" for p in self.parts)

    def provenance(self):
        prov = super().provenance()
        prov["parts"] = [part.provenance() for part in self.parts]
        return prov

    def to(self, device):
        self.device = torch.device(device)
        for part in self.parts:
            if part.uses_torch:
                part.to(self.device)
        return self

    def _join(self, blocks):
        if self.params["normalise"] == "l2":
            blocks = [F.normalize(b.float(), dim=1) for b in blocks]
        return torch.cat(blocks, dim=1)

    def forward_batch(self, images):
        """uint8 (N, H, W) tensor -> (N, sum of part dims) tensor on the device (shard runner)."""
        blocks = []
        for part in self.parts:
            if part.uses_torch:
                blocks.append(part.forward_batch(images).float())
            else:
                feats = part.extract(images.cpu().numpy())
                blocks.append(torch.from_numpy(feats).to(self.device))
        return self._join(blocks)

    def extract(self, images):
        blocks = [torch.from_numpy(np.asarray(part.extract(images))) for part in self.parts]
        return self._join(blocks).numpy().astype(np.float32, copy=False)
