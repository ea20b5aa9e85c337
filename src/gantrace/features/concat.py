"""Concatenated features of several extractors ("multiformer", CSMorgan 2024: BLIP + DINOv2)."""

import numpy as np
import torch
import torch.nn.functional as F

from gantrace.errors import ConfigError
from gantrace.features.base import FEATURES, FeatureExtractor, check_spec, with_seed
from gantrace.params import InstanceOf, Interval, ListOf, Options
from gantrace.registry import KEY


@FEATURES.register
class ConcatExtractor(FeatureExtractor):
    """Features of each part (L2-normalised per image by default) side by side.

    Parts share the concat's input: preprocessing belongs on the concat, not on a part.
    `seed` (when set) seeds every part that has a seed and sets none itself.
    """

    name = "concat"
    _parameter_constraints = {
        "parts": [
            None,  # refused below, with an example
            ListOf(InstanceOf(str, dict, what="an extractor spec such as {name: blip}")),
        ],
        "normalise": [Options("l2", "none")],
        "seed": [None, Interval(int, 0)],
    }

    def __init__(
        self,
        parts=None,
        normalise="l2",
        batch_size=32,
        seed=None,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            parts=parts,
            normalise=normalise,
            batch_size=batch_size,
            seed=seed,
            preprocess=preprocess,
        )
        if parts is None:
            raise ConfigError(
                f"{self.config_key}.parts: concat needs 'parts', a non-empty list of extractor "
                f"specs such as [{{{KEY}: blip}}, {{{KEY}: dinov2}}]"
            )
        if seed is not None:
            self.params["seed"] = int(seed)
        self.parts = []
        for i, spec in enumerate(parts):
            key = f"{self.config_key}.parts[{i}]"
            if isinstance(spec, dict) and spec.get("preprocess") not in (None, "none", []):
                raise ConfigError(
                    f"{key}.preprocess: parts share the concat's input; set preprocess on "
                    f"{self.config_key} instead"
                )
            if seed is not None:
                spec = with_seed(spec, int(seed))
            self.parts.append(check_spec(spec, key))
        # the feature files' attrs record each part's type under `extractor`
        self.params["parts"] = [{"extractor": p.name, **p.get_params()} for p in self.parts]
        self.uses_torch = any(part.uses_torch for part in self.parts)
        self.versions_of = tuple(dict.fromkeys(v for part in self.parts for v in part.versions_of))
        self.device = torch.device("cpu")

    def _init_params(self):
        return {**self.get_params(), "parts": [{KEY: p.name, **p.get_params()} for p in self.parts]}

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
