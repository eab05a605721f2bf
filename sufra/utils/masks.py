"""Mask utilities: COCO compressed RLE through pycocotools (``size`` = [H, W], ``counts`` str) and mask IoU.

Masks are H x W (or N x H x W) bool arrays.
"""

from __future__ import annotations

import numpy as np


def mask_to_rle(mask: np.ndarray) -> dict:
    """H x W bool -> COCO compressed RLE with ``counts`` as str."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}).astype(bool)


def rle_area(rle: dict) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}))


def rle_bbox(rle: dict) -> list[float]:
    """[x, y, w, h] of the mask (pycocotools)."""
    from pycocotools import mask as mask_utils

    return [float(v) for v in mask_utils.toBbox({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")})]


def mask_iou(masks: np.ndarray) -> np.ndarray:
    """N x N IoU of N x H x W bool masks."""
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
