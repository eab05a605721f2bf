"""Open-vocabulary detectors behind one protocol: ``detect(images, prompts) -> list[Detections]``.

- ``transformers``: zero-shot detection models of transformers (Grounding DINO, MM-Grounding-DINO, OmDet-Turbo),
  from a hub id or a local folder.
- ``groundingdino``: the original package (optional extra ``sufra[groundingdino]``): config + checkpoint + local
  BERT folder.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from pydantic import BaseModel

from schemas.detections import Detections
from sufra.errors import SufraError


class DetectorSpec(BaseModel):
    backend: str = "transformers"
    model: str = "IDEA-Research/grounding-dino-tiny"  # hub id or local folder (transformers)
    config_path: str | None = None  # groundingdino: SwinT OGC config .py
    checkpoint: str | None = None  # groundingdino: .pth
    text_encoder: str | None = None  # groundingdino: local BERT folder
    box_threshold: float = 0.3
    text_threshold: float = 0.25


class Detector(Protocol):
    version: str

    def detect(self, images: list, prompts: list[list[str]]) -> list[Detections]:
        """``images``: PIL RGB images; ``prompts``: phrases per image. Boxes XYXY in each image's pixels."""
        ...


def caption(phrases: list[str]) -> str:
    """Grounding DINO's text format: lower-case phrases separated and ended by ' . '."""
    return " . ".join(p.strip().lower().rstrip(".") for p in phrases) + " ."


def match_phrase(found: str, phrases: list[str]) -> str:
    """Map a detector's (sub-)phrase back to the prompt phrase it most overlaps (word overlap, then first)."""
    words = set(found.lower().replace(".", " ").split())
    best = max(phrases, key=lambda p: (len(words & set(p.lower().split())), -phrases.index(p)))
    return best


def clip_to_image(det: Detections, width: int, height: int) -> Detections:
    """Clip boxes to the image (torchvision.ops.clip_boxes_to_image) and drop those left empty."""
    import torch
    from torchvision.ops import clip_boxes_to_image

    det.boxes = clip_boxes_to_image(torch.from_numpy(det.boxes), (height, width)).numpy()
    keep = (det.boxes[:, 2] > det.boxes[:, 0]) & (det.boxes[:, 3] > det.boxes[:, 1])
    return det.select(keep)


class TransformersDetector:
    def __init__(self, spec: DetectorSpec, device: str = "cpu", model=None, processor=None):
        """Loads ``spec.model`` (hub id or folder), or wraps an already built ``model`` + ``processor``."""
        import torch
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        from models.weights import resolve_pretrained

        if model is None:
            path = resolve_pretrained(spec.model)
            processor = AutoProcessor.from_pretrained(path)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(path)
        self.spec = spec
        self.device = device
        self.processor = processor
        self.model = model.to(device).eval()
        self.kind = self.model.config.model_type
        from models.weights import model_identity

        self.version = f"{self.kind}:{model_identity(spec.model)}"
        self._torch = torch

    def detect(self, images: list, prompts: list[list[str]]) -> list[Detections]:
        torch = self._torch
        sizes = [(im.height, im.width) for im in images]
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device == "cuda"):
            if self.kind == "omdet-turbo":
                inputs = self.processor(images=images, text=prompts, return_tensors="pt").to(self.device)
                outputs = self.model(**inputs)
                results = self.processor.post_process_grounded_object_detection(
                    outputs, text_labels=prompts, threshold=self.spec.box_threshold, target_sizes=sizes)
            else:
                inputs = self.processor(images=images, text=[caption(p) for p in prompts], padding=True,
                                        return_tensors="pt").to(self.device)
                outputs = self.model(**inputs)
                results = self.processor.post_process_grounded_object_detection(
                    outputs, inputs.input_ids, threshold=self.spec.box_threshold,
                    text_threshold=self.spec.text_threshold, target_sizes=sizes)
        out = []
        for result, phrases, (h, w) in zip(results, prompts, sizes, strict=True):
            det = Detections.from_transformers(result)
            det.phrases = [match_phrase(p, phrases) for p in det.phrases]
            out.append(clip_to_image(det, w, h))
        return out


class GroundingDinoPackageDetector:
    """The original Grounding DINO package (``groundingdino-py``; extra ``sufra[groundingdino]``)."""

    def __init__(self, spec: DetectorSpec, device: str = "cpu"):
        try:
            from groundingdino.util.inference import load_model
        except ImportError:
            raise SufraError("detector backend 'groundingdino' needs the extra: pip install 'sufra[groundingdino]'") from None
        from models.weights import fetch_checkpoint

        if not (spec.config_path and spec.checkpoint):
            raise SufraError("detector backend 'groundingdino' needs config_path and checkpoint")
        from groundingdino.util.slconfig import SLConfig

        config = SLConfig.fromfile(spec.config_path)
        if spec.text_encoder:
            config.text_encoder_type = spec.text_encoder
        self.spec = spec
        self.device = device
        self.model = load_model(spec.config_path, str(fetch_checkpoint(spec.checkpoint)), device=device)
        self.version = f"groundingdino:{spec.checkpoint}"

    def detect(self, images: list, prompts: list[list[str]]) -> list[Detections]:
        import groundingdino.datasets.transforms as T
        from groundingdino.util.inference import predict

        transform = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(),
                               T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        out = []
        for image, phrases in zip(images, prompts, strict=True):
            tensor, _ = transform(image, None)
            boxes, logits, found = predict(self.model, tensor, caption(phrases), self.spec.box_threshold,
                                           self.spec.text_threshold, device=self.device)
            w, h = image.size
            cx, cy, bw, bh = (boxes.numpy() * np.array([w, h, w, h])).T if len(boxes) else (np.zeros(0),) * 4
            xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) if len(boxes) else np.zeros((0, 4))
            out.append(clip_to_image(Detections(xyxy, logits.numpy(), [match_phrase(p, phrases) for p in found]), w, h))
        return out


DETECTORS = {"transformers": TransformersDetector, "groundingdino": GroundingDinoPackageDetector}


def build_detector(spec: DetectorSpec, device: str = "cpu") -> Detector:
    try:
        cls = DETECTORS[spec.backend]
    except KeyError:
        raise SufraError(f"unknown detector backend '{spec.backend}'; use {', '.join(DETECTORS)}") from None
    return cls(spec, device)
