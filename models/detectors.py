"""Open-vocabulary detectors behind one protocol: ``detect(images, prompts) -> list[Detections]``.

- ``transformers``: zero-shot detection models of transformers (Grounding DINO, MM-Grounding-DINO, OmDet-Turbo),
  from a hub id or a local folder.
- ``groundingdino``: the original package (optional extra ``sufra[groundingdino]``): config + checkpoint + local
  BERT folder.

A backend is a class registered with ``@register_detector("<backend>")`` (timm's ``register_model``);
``build_detector(spec)`` looks the backend up in ``DETECTORS``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel
from sufra.schemas.detections import Detections

from sufra.core.errors import SufraError
from sufra.core.registry import Registry


class DetectorSpec(BaseModel):
    backend: str = "transformers"
    model: str = "IDEA-Research/grounding-dino-tiny"  # hub id or local folder (transformers)
    config_path: str | None = None  # groundingdino: model config .py (default: the package's SwinT OGC)
    checkpoint: str | None = None  # groundingdino: .pth path or URL (default: official SwinT OGC)
    text_encoder: str | None = None  # groundingdino: local BERT folder or hub id (default bert-base-uncased)
    image_size: int | None = None  # groundingdino: shorter side fed to the model (default 800)
    box_threshold: float = 0.3
    text_threshold: float = 0.25

    @classmethod
    def parse(cls, text: str, base: DetectorSpec) -> DetectorSpec:
        """``groundingdino[:CHECKPOINT]`` (the original package; checkpoint path or URL, default the official one)
        or a transformers hub id / local folder; every other field (thresholds ...) comes from ``base``."""
        text = text.strip()
        if not text:
            raise SufraError(f"--detector must be {DETECTOR_SPEC_FORMS}, got an empty string")
        name, _, checkpoint = text.partition(":")
        if name == "groundingdino":
            return base.model_copy(update={"backend": "groundingdino", "checkpoint": checkpoint or None})
        return base.model_copy(update={"backend": "transformers", "model": text})


DETECTOR_SPEC_FORMS = "groundingdino[:CHECKPOINT] or a transformers HUB_ID_OR_FOLDER"


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


DETECTORS: Registry[Callable[..., Detector]] = Registry("detector backend")


def register_detector(backend: str) -> Callable[[type], type]:
    """Class decorator: the detector built for ``DetectorSpec(backend=backend)``."""
    return DETECTORS.register(backend)


@register_detector("transformers")
class TransformersDetector:
    def __init__(self, spec: DetectorSpec, device: str = "cpu", model=None, processor=None):
        """Loads ``spec.model`` (hub id or folder), or wraps an already built ``model`` + ``processor``."""
        import torch
        from sufra.models.weights import resolve_pretrained
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        if model is None:
            path = resolve_pretrained(spec.model)
            processor = AutoProcessor.from_pretrained(path)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(path)
        self.spec = spec
        self.device = device
        self.processor = processor
        self.model = model.to(device).eval()
        self.kind = self.model.config.model_type
        from sufra.models.weights import model_identity

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


GROUNDINGDINO_SWINT_OGC_URL = "https://huggingface.co/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swint_ogc.pth"


@register_detector("groundingdino")
class GroundingDinoPackageDetector:
    """The original Grounding DINO package (``groundingdino-py``; extra ``sufra[groundingdino]``).

    Defaults: the package's own SwinT OGC config, the official SwinT OGC checkpoint (downloaded once into the
    cache) and ``bert-base-uncased`` from the Hugging Face cache; ``text_encoder`` may name a local BERT folder.
    """

    def __init__(self, spec: DetectorSpec, device: str = "cpu"):
        # groundingdino-py 0.4.0 imports timm's deprecated path: a FutureWarning on every start, nothing to act on
        warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated", category=FutureWarning)
        try:
            import groundingdino
            from groundingdino.models import build_model
            from groundingdino.util.misc import clean_state_dict
            from groundingdino.util.slconfig import SLConfig
        except ImportError:
            raise SufraError("detector backend 'groundingdino' needs the extra: pip install 'sufra[groundingdino]'") from None

        from sufra.models.weights import fetch_checkpoint, load_state, model_identity, resolve_pretrained

        config_path = Path(spec.config_path or Path(groundingdino.__file__).parent / "config" / "GroundingDINO_SwinT_OGC.py")
        if not config_path.is_file():
            raise SufraError(f"groundingdino config '{config_path}' does not exist")
        checkpoint = fetch_checkpoint(spec.checkpoint or GROUNDINGDINO_SWINT_OGC_URL)
        args = SLConfig.fromfile(str(config_path))
        # the BERT is resolved here (local folder, cache, or one bounded download), never by the package itself
        args.text_encoder_type = resolve_pretrained(spec.text_encoder or args.text_encoder_type)
        args.device = device
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its text encoder path
            model = build_model(args)
        # official checkpoints carry their training args
        state = load_state(checkpoint, "groundingdino checkpoint", safe_globals=(argparse.Namespace,))
        misfit = f"groundingdino checkpoint '{checkpoint.name}' does not fit config '{config_path.name}'"
        try:
            missing, _ = model.load_state_dict(clean_state_dict(state.get("model", state)), strict=False)
        except RuntimeError as exc:  # shape mismatches
            detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
            raise SufraError(f"{misfit}: {detail or type(exc).__name__}") from None
        if missing:
            raise SufraError(f"{misfit}: {len(missing)} weights missing (e.g. {missing[0]})")
        self.spec = spec
        self.device = device
        self.model = model.to(device).eval()
        self.version = f"groundingdino:{model_identity(str(checkpoint))}"

    def detect(self, images: list, prompts: list[list[str]]) -> list[Detections]:
        import groundingdino.datasets.transforms as T
        from groundingdino.util.inference import predict

        size = self.spec.image_size or 800
        transform = T.Compose([T.RandomResize([size], max_size=round(size * 1333 / 800)), T.ToTensor(),
                               T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        out = []
        for image, phrases in zip(images, prompts, strict=True):
            tensor, _ = transform(image, None)
            boxes, logits, found = predict(self.model, tensor, caption(phrases), self.spec.box_threshold,
                                           self.spec.text_threshold, device=self.device)
            w, h = image.size
            det = Detections.from_groundingdino(boxes, logits, [match_phrase(p, phrases) for p in found], w, h)
            out.append(clip_to_image(det, w, h))
        return out


def build_detector(spec: DetectorSpec, device: str = "cpu") -> Detector:
    return DETECTORS.lookup(spec.backend)(spec, device)
