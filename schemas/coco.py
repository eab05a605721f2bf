"""COCO instance-format structures (as written by the export stage)."""

from __future__ import annotations

from typing import TypedDict


class CocoImage(TypedDict):
    id: int
    file_name: str
    width: int
    height: int


class CocoRLE(TypedDict):
    size: list[int]  # [height, width]
    counts: str


class CocoAnnotation(TypedDict):
    id: int
    image_id: int
    category_id: int
    bbox: list[float]  # [x, y, w, h] pixels
    area: float
    segmentation: CocoRLE | list[list[float]]
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
