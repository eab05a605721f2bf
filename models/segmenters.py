"""Box-prompted segmenters behind one protocol: ``segment(image, detections) -> detections with masks``.

One image embedding per image and all of that image's boxes in one prompt batch.
- ``sam``: segment_anything (``vit_b|vit_l|vit_h`` or any :class:`~models.build.SamArch`), checkpoint path or URL
  (the official URLs are fetched into the cache on first use).
- ``sam2``: SAM 2.1 through transformers ``Sam2Model`` (hub id or local folder): the fast tier.

A backend is a class registered with ``@register_segmenter("<backend>")`` (timm's ``register_model``);
``build_segmenter(spec)`` looks the backend up in ``SEGMENTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from pydantic import BaseModel
from sufra.schemas.detections import Detections

from sufra.core.errors import SufraError
from sufra.core.registry import Registry

SEGMENTER_SPEC_FORMS = "sam:MODEL_TYPE[:CHECKPOINT] or sam2:HUB_ID_OR_FOLDER"


class SegmenterSpec(BaseModel):
    backend: str = "sam"
    model_type: str = "vit_b"  # sam: key of models.build.SAM_ARCHS
    checkpoint: str | None = None  # sam: path or URL (default: the official URL of model_type)
    model: str = "facebook/sam2.1-hiera-tiny"  # sam2: hub id or local folder

    @classmethod
    def parse(cls, text: str) -> SegmenterSpec:
        """``sam[:MODEL_TYPE[:CHECKPOINT]]`` (model type default ``vit_b``; the checkpoint may be a path or URL)
        or ``sam2:HUB_ID_OR_FOLDER``; anything else raises a one-line :class:`SufraError`."""
        backend, _, rest = text.strip().partition(":")
        if backend == "sam":
            model_type, _, checkpoint = rest.partition(":")
            return cls(backend="sam", model_type=model_type or "vit_b", checkpoint=checkpoint or None)
        if backend == "sam2" and rest:
            return cls(backend="sam2", model=rest)
        raise SufraError(f"--segmenter must be {SEGMENTER_SPEC_FORMS}, got '{text}'")


class Segmenter(Protocol):
    version: str

    def segment(self, image: np.ndarray, detections: Detections) -> Detections:
        """``image``: H x W x 3 uint8 RGB; ``detections``: boxes N x 4 XYXY pixels of that image -> the same
        detections with ``masks`` (N x H x W bool) and ``mask_scores`` (N predicted IoU)."""
        ...


SEGMENTERS: Registry[Callable[..., Segmenter]] = Registry("segmenter backend")


def register_segmenter(backend: str) -> Callable[[type], type]:
    """Class decorator: the segmenter built for ``SegmenterSpec(backend=backend)``."""
    return SEGMENTERS.register(backend)


def _no_boxes(image: np.ndarray, detections: Detections) -> Detections:
    h, w = image.shape[:2]
    return detections.with_masks(np.zeros((0, h, w), bool), np.zeros(0, np.float32))


@register_segmenter("sam")
class SamSegmenter:
    def __init__(self, spec: SegmenterSpec, device: str = "cpu", model=None):
        import torch
        from segment_anything import SamPredictor
        from sufra.models.build import SAM_ARCHS, SAM_CHECKPOINT_URLS, build_sam, fuse_sam_attention
        from sufra.models.weights import fetch_checkpoint, load_state

        if model is None:
            if spec.model_type not in SAM_ARCHS:
                raise SufraError(f"unknown SAM model_type '{spec.model_type}'; use {', '.join(SAM_ARCHS)}")
            source = spec.checkpoint or SAM_CHECKPOINT_URLS.get(spec.model_type)
            if source is None:
                raise SufraError(f"SAM model_type '{spec.model_type}' has no official checkpoint: pass one")
            model = build_sam(SAM_ARCHS[spec.model_type])
            model.load_state_dict(load_state(fetch_checkpoint(source), "SAM checkpoint"))
        fuse_sam_attention(model)
        self.model = model.to(device).eval()
        self.predictor = SamPredictor(self.model)
        self.device = device
        self.version = f"sam:{spec.model_type}:{(spec.checkpoint or 'official').rsplit('/', 1)[-1]}"
        self._torch = torch

    def segment(self, image: np.ndarray, detections: Detections) -> Detections:
        torch = self._torch
        h, w = image.shape[:2]
        if len(detections) == 0:
            return _no_boxes(image, detections)
        with torch.inference_mode():
            self.predictor.set_image(image)  # the image embedding, once
            prompt = self.predictor.transform.apply_boxes_torch(
                torch.as_tensor(detections.boxes, dtype=torch.float32, device=self.device), (h, w))
            masks, scores, _ = self.predictor.predict_torch(None, None, boxes=prompt, multimask_output=False)
        self.predictor.reset_image()
        return detections.with_sam_masks(masks, scores)  # N x 1 x H x W, N x 1


@register_segmenter("sam2")
class Sam2Segmenter:
    def __init__(self, spec: SegmenterSpec, device: str = "cpu", model=None, processor=None):
        """Loads ``spec.model`` (hub id or folder), or wraps an already built ``model`` + ``processor``."""
        import torch
        from sufra.models.weights import resolve_pretrained
        from transformers import Sam2Model, Sam2Processor

        if model is None:
            path = resolve_pretrained(spec.model)
            processor = Sam2Processor.from_pretrained(path)
            model = Sam2Model.from_pretrained(path)
        self.processor = processor
        self.model = model.to(device).eval()
        self.device = device
        from sufra.models.weights import model_identity

        self.version = f"sam2:{model_identity(spec.model)}"
        self._torch = torch

    def segment(self, image: np.ndarray, detections: Detections) -> Detections:
        torch = self._torch
        if len(detections) == 0:
            return _no_boxes(image, detections)
        boxes = detections.boxes.astype(float).tolist()
        inputs = self.processor(images=image, input_boxes=[boxes], return_tensors="pt").to(self.device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device == "cuda"):
            outputs = self.model(**inputs, multimask_output=False)
        masks = self.processor.post_process_masks(outputs.pred_masks.float().cpu(), inputs["original_sizes"].cpu())[0]
        return detections.with_sam_masks(masks, outputs.iou_scores[0])  # N x 1 x H x W bool, N x 1


def build_segmenter(spec: SegmenterSpec, device: str = "cpu") -> Segmenter:
    return SEGMENTERS.lookup(spec.backend)(spec, device)
