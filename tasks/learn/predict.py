"""Predict dishes for new images: instance proposals (Mask R-CNN, with the annotate post-filters), the same
features the head was trained on, the fusion head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sufra.models.extractors import ExtractorSpec, MaskRCNNProposer
from sufra.tasks.annotate.postfilter import PostFilterSettings, post_filter
from sufra.tasks.learn.features import instance_tensors
from sufra.tasks.learn.train import load_head


def predict_images(paths: list[Path], checkpoint: str, proposer_weights: str | None = "DEFAULT",
                   score_threshold: float = 0.5, device: str = "cpu", proposer=None, extractors=None) -> list[dict]:
    """Per image: instances (box XYXY pixels, mask area) with the head's top classes and probabilities."""
    from sufra.models.extractors import DepthExtractor, EfficientNetExtractor, FlatDepth

    from sufra.core.errors import SufraError
    from sufra.utils.images import load_rgb

    head, classes = load_head(checkpoint)
    features = torch.load(checkpoint, map_location="cpu", weights_only=False).get("features") or {}
    spec = ExtractorSpec(**features.get("settings", {}).get("extractor", {}))
    if extractors is None:
        depth = DepthExtractor(spec.depth_model, device) if spec.depth_model else FlatDepth()
        extractors = (EfficientNetExtractor(spec, device), depth)
    proposer = proposer or MaskRCNNProposer(proposer_weights, device, score_threshold)
    results = []
    for path in paths:
        try:
            image = load_rgb(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise SufraError(f"cannot read image {path}: {exc}") from None
        det = post_filter(proposer.propose(image), image.width, image.height, PostFilterSettings())
        items = []
        if len(det):
            boxes = torch.from_numpy(det.boxes)
            tensors = instance_tensors(image, boxes, torch.from_numpy(det.masks), *extractors)
            with torch.inference_mode():
                probs = torch.softmax(head(tensors["F"], tensors["M"], tensors["D"], tensors["S"]), dim=1).numpy()
            for n in range(len(det)):
                order = np.argsort(-probs[n])[:3]
                items.append({"box_xyxy": [round(float(v), 1) for v in det.boxes[n]], "mask_area": int(det.masks[n].sum()),
                              "predictions": [{"dish": classes[k], "probability": round(float(probs[n, k]), 4)} for k in order]})
        results.append({"image": str(path), "instances": items, "masks": det.masks})
    return results


def draw(image_path: Path, result: dict, out_path: Path) -> None:
    from PIL import Image, ImageDraw
    from sufra.tasks.export.report import PALETTE

    from sufra.utils.images import load_rgb

    image = load_rgb(Path(image_path).read_bytes())
    array = np.asarray(image).astype(np.float32)
    for n, mask in enumerate(result["masks"]):
        array[mask] = array[mask] * 0.5 + np.array(PALETTE[n % len(PALETTE)]) * 0.5
    canvas = Image.fromarray(array.clip(0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    for n, item in enumerate(result["instances"]):
        x0, y0, x1, y1 = item["box_xyxy"]
        top = item["predictions"][0]
        pen.rectangle([x0, y0, x1, y1], outline=PALETTE[n % len(PALETTE)], width=3)
        pen.text((x0 + 4, y0 + 4), f"{top['dish']} {top['probability']:.2f}", fill="white")
    canvas.save(out_path)
