"""Mask utilities on H x W (or N x H x W) bool arrays: mask IoU; RLE lives in :class:`sufra.schemas.rle.RLE`.

The ``mask_to_rle`` / ``rle_*`` functions are thin aliases of ``RLE`` kept for callers written before it; they
accept an ``RLE`` or its ``model_dump()`` dict (``size`` = [H, W], ``counts`` str).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sufra.schemas.rle import RLE

__all__ = ["RLE", "mask_iou", "mask_to_rle", "rle_area", "rle_bbox", "rle_to_mask"]


def mask_to_rle(mask: np.ndarray) -> RLE:
    """H x W bool -> :class:`RLE` (``RLE.from_mask``)."""
    return RLE.from_mask(mask)


def rle_to_mask(rle: RLE | dict[str, Any]) -> np.ndarray:
    """RLE -> H x W bool (``RLE.to_mask``)."""
    return RLE.coerce(rle).to_mask()


def rle_area(rle: RLE | dict[str, Any]) -> float:
    """Foreground pixels (``RLE.area``)."""
    return RLE.coerce(rle).area


def rle_bbox(rle: RLE | dict[str, Any]) -> list[float]:
    """[x, y, w, h] of the mask (``RLE.bbox_xywh``)."""
    return RLE.coerce(rle).bbox_xywh


def mask_iou(masks: np.ndarray) -> np.ndarray:
    """N x N IoU of N x H x W bool masks."""
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
