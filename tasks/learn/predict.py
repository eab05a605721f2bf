"""Predict dishes for new images: instance proposals (Mask R-CNN, with the annotate post-filters), the same
features the head was trained on, the fusion head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from sufra.models.extractors import ExtractorSpec, MaskRCNNProposer
from sufra.schemas.detections import Detections
from sufra.tasks.annotate.postfilter import PostFilterSettings, post_filter
from sufra.tasks.learn.features import instance_tensors
from sufra.tasks.learn.train import load_head


class PredictSettings(BaseModel):
    """How ``sufra predict`` proposes and ranks instances."""

    proposer_weights: str | None = "DEFAULT"  # Mask R-CNN: DEFAULT (COCO, downloaded once), a .pth path, None: random
    score_threshold: float = Field(0.5, ge=0, le=1)  # Mask R-CNN proposal score kept
    top_k: int = Field(3, ge=1)  # dishes listed per instance, most probable first
    device: str = "cpu"


@dataclass(frozen=True)
class Prediction:
    """The instances of one image with the head's dishes.

    ``detections``: the proposals (boxes N x 4 XYXY pixels, masks N x H x W bool, ``scores`` the proposal scores)
    with ``data["label"]`` (N dish ids, the head's top-1), ``data["label_score"]`` (N probabilities in [0, 1]) and
    ``data["top_labels"]`` (N lists of ``top_k`` ``(dish, probability)`` pairs, most probable first).
    """

    image: Path
    detections: Detections

    @property
    def label(self) -> str | None:
        """The image-level dish: the label of the most confident instance (None without instances)."""
        scores = self.detections.data.get("label_score") or []
        return self.detections.data["label"][int(np.argmax(scores))] if scores else None

    def to_record(self) -> dict:
        """The JSON line ``sufra predict`` prints: ``{"image", "instances": [{"box_xyxy", "mask_area",
        "predictions": [{"dish", "probability"}]}]}`` (boxes rounded to 0.1 px, probabilities to 4 digits)."""
        det = self.detections
        areas = [int(m.sum()) for m in det.masks] if det.masks is not None else [0] * len(det)
        instances = [
            {"box_xyxy": [round(float(v), 1) for v in det.boxes[n]], "mask_area": areas[n],
             "predictions": [{"dish": dish, "probability": round(float(p), 4)} for dish, p in det.data["top_labels"][n]]}
            for n in range(len(det))
        ]
        return {"image": str(self.image), "instances": instances}


def classify(det: Detections, probs: np.ndarray, classes: list[str], top_k: int) -> Detections:
    """``det`` with the head's labels in ``data``; ``probs``: N x C softmax probabilities, columns in ``classes``."""
    order = np.argsort(-probs, axis=1)[:, :top_k] if len(det) else np.zeros((0, top_k), int)
    top = [[(classes[k], float(probs[n, k])) for k in order[n]] for n in range(len(det))]
    return Detections(det.boxes, det.scores, list(det.phrases), masks=det.masks, mask_scores=det.mask_scores,
                      data={**{k: list(v) for k, v in det.data.items()}, "label": [t[0][0] for t in top],
                            "label_score": [t[0][1] for t in top], "top_labels": top})


def predict_images(paths: list[Path], checkpoint: str, settings: PredictSettings | None = None, proposer=None,
                   extractors=None) -> list[Prediction]:
    """One :class:`Prediction` per image, in order (a file that is not an image: one-line error)."""
    from sufra.models.extractors import DepthExtractor, EfficientNetExtractor, FlatDepth

    from sufra.core.errors import SufraError
    from sufra.utils.images import load_rgb

    settings = settings or PredictSettings()
    head, classes = load_head(checkpoint)
    features = torch.load(checkpoint, map_location="cpu", weights_only=False).get("features") or {}
    spec = ExtractorSpec(**features.get("settings", {}).get("extractor", {}))
    if extractors is None:
        depth = DepthExtractor(spec.depth_model, settings.device) if spec.depth_model else FlatDepth()
        extractors = (EfficientNetExtractor(spec, settings.device), depth)
    proposer = proposer or MaskRCNNProposer(settings.proposer_weights, settings.device, settings.score_threshold)
    results = []
    for path in paths:
        try:
            image = load_rgb(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise SufraError(f"cannot read image {path}: {exc}") from None
        det = post_filter(proposer.propose(image), image.width, image.height, PostFilterSettings())
        probs = np.zeros((0, len(classes)), np.float32)
        if len(det):
            tensors = instance_tensors(image, torch.from_numpy(det.boxes), torch.from_numpy(det.masks), *extractors)
            with torch.inference_mode():
                probs = torch.softmax(head(tensors["F"], tensors["M"], tensors["D"], tensors["S"]), dim=1).numpy()
        results.append(Prediction(Path(path), classify(det, probs, classes, settings.top_k)))
    return results


def draw(prediction: Prediction, out_dir: Path) -> Path:
    """Write ``<out_dir>/<image stem>-pred.png``: masks (alpha 0.5), boxes and ``dish probability`` per instance."""
    from PIL import Image
    from sufra.tasks.export.report import PALETTE
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from sufra.utils.images import load_rgb

    det = prediction.detections
    canvas = torch.from_numpy(np.array(load_rgb(prediction.image.read_bytes()))).permute(2, 0, 1)  # 3 x H x W uint8
    if len(det):
        colors = [PALETTE[n % len(PALETTE)] for n in range(len(det))]
        if det.masks is not None:
            canvas = draw_segmentation_masks(canvas, torch.from_numpy(det.masks), alpha=0.5, colors=colors)
        labels = [f"{dish} {score:.2f}" for dish, score in zip(det.data["label"], det.data["label_score"], strict=True)]
        canvas = draw_bounding_boxes(canvas, torch.from_numpy(det.boxes), labels=labels, colors=colors, width=3)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"{prediction.image.stem}-pred.png"
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(out_path)
    return out_path
