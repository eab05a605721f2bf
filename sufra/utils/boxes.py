"""Box utilities on N x 4 arrays (pixels): format conversion through ``torchvision.ops.box_convert``.

Formats: ``xyxy`` corners (what :class:`~sufra.schemas.detections.Detections` holds), ``xywh`` top-left corner +
size (COCO, the ``bbox`` column of ``instances``), ``cxcywh`` centre + size (Grounding DINO).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sufra.schemas.detections import BoxFormat, convert_boxes

__all__ = ["BoxFormat", "convert_boxes", "xywh_to_xyxy", "xyxy_to_xywh"]


def xywh_to_xyxy(boxes_xywh: Any) -> np.ndarray:
    """N x 4 (or one [x, y, w, h]) -> N x 4 float64 XYXY."""
    return convert_boxes(boxes_xywh, "xywh", "xyxy")


def xyxy_to_xywh(boxes_xyxy: Any) -> np.ndarray:
    """N x 4 (or one [x0, y0, x1, y1]) -> N x 4 float64 XYWH."""
    return convert_boxes(boxes_xyxy, "xyxy", "xywh")
