"""The paper's mask post-filters, as pure functions on :class:`~sufra.schemas.detections.Detections`
(masks N x H x W bool): tiny masks, duplicates, unions of two others, whole-image boxes."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel
from sufra.schemas.detections import Detections

from sufra.utils.masks import mask_iou


class PostFilterSettings(BaseModel):
    min_area_ratio: float = 0.002  # masks smaller than this share of the image are dropped (tiny)
    duplicate_iou: float = 0.85  # of two masks above this IoU the lower-scoring one is dropped
    union_containment: float = 0.9  # A and B each this much inside C ...
    union_coverage: float = 0.8  # ... and covering this much of C: C is the union A+B and is dropped
    drop_full_image_boxes: bool = True
    full_image_box_ratio: float = 0.95  # box area share of the image above which a box is "the whole image"


def drop_tiny(det: Detections, image_area: int, min_area_ratio: float) -> Detections:
    return det[det.mask_areas_px() >= min_area_ratio * image_area]


def drop_duplicates(det: Detections, iou_threshold: float) -> Detections:
    """Of masks overlapping above ``iou_threshold``, keep the best-scoring (mask score, then box score)."""
    if len(det) < 2:
        return det
    iou = mask_iou(det.masks)
    quality = det.mask_scores if det.mask_scores is not None else det.scores
    order = np.lexsort((-det.scores, -quality))
    keep: list[int] = []
    for i in order:
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(int(i))
    return det.select(sorted(keep))


def drop_unions(det: Detections, containment: float, coverage: float) -> Detections:
    """Drop a mask C that is the union of two others A and B (keep the separate A and B, drop A+B)."""
    n = len(det)
    if n < 3:
        return det
    flat = det.masks.reshape(n, -1)
    area = flat.sum(1).astype(np.float64)
    inter = flat.astype(np.float32) @ flat.T.astype(np.float32)
    drop = np.zeros(n, bool)
    for c in range(n):
        inside = [a for a in range(n) if a != c and area[a] > 0 and inter[a, c] / area[a] >= containment and area[a] < area[c]]
        for x in range(len(inside)):
            for y in range(x + 1, len(inside)):
                a, b = inside[x], inside[y]
                union = np.logical_or(flat[a], flat[b])
                if np.logical_and(union, flat[c]).sum() / max(area[c], 1) >= coverage:
                    drop[c] = True
                    break
            if drop[c]:
                break
    return det.select(~drop)


def drop_full_image_boxes(det: Detections, width: int, height: int, ratio: float) -> Detections:
    box_area = (det.boxes[:, 2] - det.boxes[:, 0]).clip(0) * (det.boxes[:, 3] - det.boxes[:, 1]).clip(0)
    return det.select(box_area < ratio * width * height)


def post_filter(det: Detections, width: int, height: int, settings: PostFilterSettings) -> Detections:
    """The paper's filters in order: whole-image boxes (optional), tiny masks, duplicates, unions."""
    if settings.drop_full_image_boxes:
        det = drop_full_image_boxes(det, width, height, settings.full_image_box_ratio)
    if det.masks is None or len(det) == 0:
        return det
    det = drop_tiny(det, width * height, settings.min_area_ratio)
    det = drop_duplicates(det, settings.duplicate_iou)
    return drop_unions(det, settings.union_containment, settings.union_coverage)
