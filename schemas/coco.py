"""COCO instance-format structures (as written by the export stage) and the one builder of an annotation."""

from __future__ import annotations

from typing import Any, TypedDict

from sufra.schemas.rle import RLE


class CocoImage(TypedDict):
    id: int
    file_name: str
    width: int
    height: int


CocoRLE = RLE
"""COCO compressed RLE is the project's one RLE type; in JSON it is ``RLE.model_dump()`` (``size`` [H, W], ``counts``)."""


class CocoAnnotation(TypedDict):
    id: int
    image_id: int
    category_id: int
    bbox: list[float]  # [x, y, w, h] pixels
    area: float
    segmentation: dict[str, Any] | list[list[float]]  # CocoRLE.model_dump() or polygons [x0, y0, x1, y1, ...]
    iscrowd: int
    score: float


class CocoCategory(TypedDict):
    id: int
    name: str
    supercategory: str


class CocoDataset(TypedDict):
    info: dict
    licenses: list[dict]
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]


def coco_annotation(rle: RLE, annotation_id: int, image_id: int, category_id: int, score: float,
                    segmentation: list[list[float]] | None = None, area: float | None = None) -> CocoAnnotation:
    """One COCO annotation of a mask.

    ``bbox`` is [x, y, w, h] pixels of the mask itself, rounded to 0.01 px (a reviewer may move a box without
    redrawing its mask: COCO wants the two consistent). ``segmentation`` is the RLE unless polygons are given;
    ``area`` defaults to the mask's pixel count; ``score`` is rounded to 4 decimals.
    """
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id,
            "bbox": [round(v, 2) for v in rle.bbox_xywh], "area": float(rle.area if area is None else area),
            "segmentation": rle.model_dump() if segmentation is None else segmentation, "iscrowd": 0,
            "score": round(float(score), 4)}
