"""Frozen feature extractors: EfficientNet (last feature map), monocular depth (ZoeDepth / DPT through
transformers), and torchvision Mask R-CNN instance proposals for images without curated masks."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel
from sufra.schemas.detections import Detections

from sufra.core.errors import ModelUnavailableError, SufraError


class ExtractorSpec(BaseModel):
    backbone: str = "efficientnet_b0"  # torchvision efficientnet_b0 .. efficientnet_b7
    backbone_weights: str | None = "DEFAULT"  # DEFAULT (ImageNet, downloaded once), a .pth path, or None (random)
    depth_model: str | None = "Intel/zoedepth-nyu-kitti"  # hub id or folder (ZoeDepth, DPT, ...); None: no depth
    input_size: int = 512  # longest image side fed to the backbone


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_torchvision_weights(model, weights: str | None, builder_name: str):
    if weights is None:
        return model
    if weights == "DEFAULT":
        from torchvision.models import get_model_weights

        try:
            state = get_model_weights(builder_name).DEFAULT.get_state_dict(progress=False)
        except Exception as exc:
            raise ModelUnavailableError(
                f"cannot download torchvision weights for {builder_name} ({type(exc).__name__}); download them where "
                "there is internet (they are cached under ~/.cache/torch) or pass a .pth path") from None
    else:
        from sufra.models.weights import load_state

        state = load_state(weights, "weights file")
    model.load_state_dict(state)
    return model


class EfficientNetExtractor:
    """Image -> last feature map (1 x C x Hf x Wf), stride 32."""

    def __init__(self, spec: ExtractorSpec, device: str = "cpu"):
        import torchvision

        if not spec.backbone.startswith("efficientnet_b"):
            raise SufraError(f"backbone must be efficientnet_b0 .. efficientnet_b7, got '{spec.backbone}'")
        model = getattr(torchvision.models, spec.backbone)(weights=None)
        model = _load_torchvision_weights(model, spec.backbone_weights, spec.backbone)
        self.features = model.features.to(device).eval()
        self.channels = model.classifier[-1].in_features
        self.device = device
        self.input_size = spec.input_size
        self.version = f"{spec.backbone}:{spec.backbone_weights or 'random'}"

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
            return self.features(x.to(self.device)).float().cpu()


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
