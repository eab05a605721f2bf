"""The one type detectors and segmenters produce, and stages exchange (after supervision's ``Detections``).

Adapters in (``from_transformers``, ``from_groundingdino``, ``with_sam_masks``, ``from_records``, ``from_labelstudio``)
and out (``to_records``, ``to_coco_annotations``, ``to_labelstudio``) keep code after the model ignorant of which
model ran and of every output format's conventions. Heavy libraries (torch/torchvision, pycocotools, the Label
Studio SDK's brush converter) are imported inside the adapters that need them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sufra.schemas.coco import CocoAnnotation, coco_annotation
from sufra.schemas.rle import RLE
from sufra.schemas.tables import InstanceRecord

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]


def convert_boxes(boxes: Any, in_fmt: BoxFormat, out_fmt: BoxFormat) -> np.ndarray:
    """N x 4 boxes from one format to another (``torchvision.ops.box_convert``), as float64 numpy.

    ``xyxy``: corners; ``xywh``: top-left corner + size (COCO); ``cxcywh``: centre + size. Units are unchanged.
    ``boxes``: numpy array, list or torch tensor.
    """
    import torch
    from torchvision.ops import box_convert

    tensor = boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else torch.as_tensor(np.asarray(boxes, np.float64))
    tensor = tensor.to(torch.float64).reshape(-1, 4)
    return box_convert(tensor, in_fmt, out_fmt).numpy()


@dataclass
class Detections:
    """Instances found in one image.

    - ``boxes``: N x 4 float32, XYXY, pixels of the original image.
    - ``scores``: N float32 box (detector) scores in [0, 1].
    - ``phrases``: N prompt phrases the detector matched.
    - ``masks``: N x H x W bool (same H, W as the image) or ``None`` before segmentation.
    - ``mask_scores``: N float32 (segmenter's predicted IoU; NaN where a source had none) or ``None``.
    - ``data``: free per-detection extras (lists of length N), e.g. ``instance_id``, ``region_id``.
    - ``labels``: N dish ids, or ``None`` before classification (the annotate stage labels them with the image's dish).
    """

    boxes: np.ndarray
    scores: np.ndarray
    phrases: list[str]
    masks: np.ndarray | None = None
    mask_scores: np.ndarray | None = None
    data: dict[str, list[Any]] = field(default_factory=dict)
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.phrases = list(self.phrases)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.phrases) != n:
            raise ValueError(f"Detections: {n} boxes but {len(self.scores)} scores and {len(self.phrases)} phrases")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3 or len(self.masks) != n:
                raise ValueError(f"Detections: masks must be N x H x W with N={n}, got {self.masks.shape}")
        if self.mask_scores is not None:
            self.mask_scores = np.asarray(self.mask_scores, dtype=np.float32).reshape(-1)
            if len(self.mask_scores) != n:
                raise ValueError(f"Detections: {len(self.mask_scores)} mask_scores for {n} detections")
        if self.labels is not None:
            self.labels = list(self.labels)
            if len(self.labels) != n:
                raise ValueError(f"Detections: {len(self.labels)} labels for {n} detections")
        for key, values in self.data.items():
            if len(values) != n:
                raise ValueError(f"Detections: data['{key}'] has {len(values)} values for {n} detections")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [])

    # -- subsets and copies ------------------------------------------------------------------------------------
    def __getitem__(self, key: int | slice | np.ndarray | list[int] | list[bool]) -> Detections:
        """A subset (always a ``Detections``, one detection for an int): int, slice, index array or bool mask of N."""
        n = len(self)
        if isinstance(key, (int, np.integer)):
            if not -n <= int(key) < n:
                raise IndexError(f"Detections: index {int(key)} out of range for {n} detections")
            index = np.array([int(key) % n])
        elif isinstance(key, slice):
            index = np.arange(n)[key]
        else:
            index = np.asarray(key)
            if index.dtype == bool:
                if index.shape != (n,):
                    raise IndexError(f"Detections: boolean mask of shape {index.shape} for {n} detections")
                index = np.nonzero(index)[0]
            elif index.size == 0:
                index = np.zeros(0, int)
            elif not np.issubdtype(index.dtype, np.integer):
                raise IndexError(f"Detections: cannot index with {index.dtype} values")
            index = index.astype(int).reshape(-1)
        return Detections(
            boxes=self.boxes[index], scores=self.scores[index], phrases=[self.phrases[i] for i in index],
            masks=None if self.masks is None else self.masks[index],
            mask_scores=None if self.mask_scores is None else self.mask_scores[index],
            data={k: [v[i] for i in index] for k, v in self.data.items()},
            labels=None if self.labels is None else [self.labels[i] for i in index],
        )

    def select(self, keep: np.ndarray | list[int] | list[bool]) -> Detections:
        """A subset by index array or boolean mask (same as ``self[keep]``)."""
        return self[keep]

    def _copy(self, **changes: Any) -> Detections:
        values = dict(boxes=self.boxes, scores=self.scores, phrases=list(self.phrases), masks=self.masks,
                      mask_scores=self.mask_scores, data={k: list(v) for k, v in self.data.items()},
                      labels=None if self.labels is None else list(self.labels))
        values.update(changes)
        return Detections(**values)

    def with_masks(self, masks: np.ndarray, mask_scores: np.ndarray | None) -> Detections:
        """A copy with a segmenter's masks (N x H x W) and scores (N), validated like any new Detections."""
        return self._copy(masks=masks, mask_scores=mask_scores)

    def with_sam_masks(self, masks: Any, iou_scores: Any) -> Detections:
        """A copy with SAM / SAM 2 output for these boxes (single-mask output, one mask per box prompt).

        ``masks``: N x 1 x H x W or N x H x W bool (numpy or torch, e.g. ``SamPredictor.predict_torch`` or
        ``Sam2Processor.post_process_masks``); ``iou_scores``: N x 1 or N predicted IoU.
        """
        masks, iou_scores = _numpy(masks), _numpy(iou_scores)
        if masks.ndim == 4:
            if masks.shape[1] != 1:
                raise ValueError(f"Detections: SAM masks must be N x 1 x H x W (single-mask output), got {masks.shape}")
            masks = masks[:, 0]
        return self.with_masks(masks.astype(bool), iou_scores.astype(np.float32).reshape(-1))

    def with_labels(self, labels: list[str]) -> Detections:
        """A copy with N dish ids."""
        return self._copy(labels=labels)

    def mask_areas_px(self) -> np.ndarray:
        """N int64 foreground pixels of each mask (``masks`` must be set)."""
        if self.masks is None:
            raise ValueError("Detections: no masks yet; segment the detections first (Segmenter.segment)")
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    # -- adapters from models ----------------------------------------------------------------------------------
    @classmethod
    def from_transformers(cls, result: dict, phrases_key: str = "text_labels") -> Detections:
        """From a transformers ``post_process_grounded_object_detection`` result dict (one image)."""
        phrases = result.get(phrases_key) or result.get("labels") or []
        phrases = [p if isinstance(p, str) else str(p) for p in phrases]
        return cls(result["boxes"].detach().float().cpu().numpy(), result["scores"].detach().float().cpu().numpy(), phrases)

    @classmethod
    def from_groundingdino(cls, boxes_cxcywh_normalised: Any, logits: Any, phrases: list[str], width: int,
                           height: int) -> Detections:
        """From ``groundingdino.util.inference.predict``: N x 4 CXCYWH boxes in [0, 1] of the image, N scores
        (max token logit after sigmoid) and N phrases; ``width``/``height``: pixels of the original image."""
        scale = np.array([width, height, width, height], np.float64)
        boxes = convert_boxes(_numpy(boxes_cxcywh_normalised).reshape(-1, 4).astype(np.float64) * scale, "cxcywh", "xyxy")
        return cls(boxes, _numpy(logits).astype(np.float32).reshape(-1), list(phrases))

    # -- instances table -----------------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: list[InstanceRecord]) -> Detections:
        """``instances`` rows of one image -> Detections (boxes from ``bbox`` XYWH; masks decoded from the RLEs,
        all-False where a row has none; ``mask_scores`` NaN where a row has none; ``data['instance_id']``)."""
        if not records:
            return cls.empty()._copy(labels=[], data={"instance_id": []})
        masks = None
        sizes = {tuple(r.mask.size) for r in records if r.mask is not None}
        if len(sizes) > 1:
            raise ValueError(f"Detections.from_records: masks of different sizes {sorted(sizes)} (not one image)")
        if sizes:
            (size,) = sizes
            masks = np.stack([r.mask.to_mask() if r.mask is not None else np.zeros(size, bool) for r in records])
        mask_scores = None
        if any(r.mask_score is not None for r in records):
            mask_scores = [np.nan if r.mask_score is None else r.mask_score for r in records]
        return cls(boxes=convert_boxes([r.bbox for r in records], "xywh", "xyxy"), scores=[r.box_score for r in records],
                   phrases=[r.phrase for r in records], masks=masks, mask_scores=mask_scores,
                   data={"instance_id": [r.instance_id for r in records]}, labels=[r.label for r in records])

    def to_records(self, image_id: str, country: str, created_at: dt.datetime, instance_ids: list[str] | None = None,
                   source: Literal["auto", "review"] = "auto", model_versions: dict[str, str] | None = None,
                   config_hash: str | None = None, bbox_from: Literal["mask", "box"] = "mask",
                   bbox_decimals: int | None = None) -> list[InstanceRecord]:
        """One ``instances`` row per detection (``labels`` must be set).

        ``instance_ids`` default to ``data['instance_id']``. ``bbox`` is XYWH pixels of the mask (``bbox_from='mask'``,
        COCO-consistent) or of the box, rounded to ``bbox_decimals`` if given; ``area`` is the mask's pixel count
        (the box's area without masks); ``mask`` the mask's RLE.
        """
        if self.labels is None:
            raise ValueError("Detections.to_records: no labels (dish ids); set them first (with_labels)")
        if instance_ids is None:
            instance_ids = self.data.get("instance_id")
            if instance_ids is None:
                raise ValueError("Detections.to_records: pass instance_ids (or data['instance_id'])")
        if len(instance_ids) != len(self):
            raise ValueError(f"Detections.to_records: {len(instance_ids)} instance_ids for {len(self)} detections")
        rles = RLE.from_masks(self.masks) if self.masks is not None else [None] * len(self)
        boxes_xywh = convert_boxes(self.boxes, "xyxy", "xywh") if len(self) else np.zeros((0, 4))
        out = []
        for n, rle in enumerate(rles):
            if rle is not None and bbox_from == "mask":
                bbox = rle.bbox_xywh
            else:
                bbox = [float(v) for v in boxes_xywh[n]]
            if bbox_decimals is not None:
                bbox = [round(v, bbox_decimals) for v in bbox]
            area = rle.area if rle is not None else float(boxes_xywh[n, 2] * boxes_xywh[n, 3])
            mask_score = None if self.mask_scores is None or np.isnan(self.mask_scores[n]) else float(self.mask_scores[n])
            out.append(InstanceRecord(
                instance_id=instance_ids[n], image_id=image_id, country=country, label=self.labels[n],
                phrase=self.phrases[n], bbox=bbox, box_score=float(self.scores[n]), mask=rle, mask_score=mask_score,
                area=area, source=source, model_versions=dict(model_versions or {}), config_hash=config_hash,
                created_at=created_at))
        return out

    # -- COCO ----------------------------------------------------------------------------------------------------
    def to_coco_annotations(self, image_id: int, category_ids: list[int] | int,
                            first_annotation_id: int = 1) -> list[CocoAnnotation]:
        """COCO instance annotations (RLE segmentation, bbox XYWH of the mask, area = mask pixels, score = box score);
        ``category_ids``: one per detection or one for all; ids count up from ``first_annotation_id``."""
        if self.masks is None:
            raise ValueError("Detections.to_coco_annotations: no masks yet; segment the detections first")
        categories = [category_ids] * len(self) if isinstance(category_ids, int) else list(category_ids)
        if len(categories) != len(self):
            raise ValueError(f"Detections.to_coco_annotations: {len(categories)} category ids for {len(self)} detections")
        return [coco_annotation(rle, first_annotation_id + n, image_id, categories[n], float(self.scores[n]))
                for n, rle in enumerate(RLE.from_masks(self.masks))]

    # -- Label Studio ----------------------------------------------------------------------------------------------
    def to_labelstudio(self, width: int, height: int, region_ids: list[str] | None = None) -> list[dict]:
        """Label Studio pre-annotation ``result`` regions: per detection a ``rectanglelabels`` box (percent of the
        image, id ``<region>b``) and, with masks, a ``brushlabels`` mask (Label Studio brush RLE, id ``<region>m``).

        Labels are ``labels`` (``phrases`` before classification); region ids default to ``data['instance_id']``.
        The brush score is the mask score (the box score where there is none); an empty mask gets no brush.
        """
        if region_ids is None:
            region_ids = self.data.get("instance_id") or [str(n) for n in range(len(self))]
        labels = self.labels if self.labels is not None else self.phrases
        boxes_xywh = convert_boxes(self.boxes, "xyxy", "xywh") if len(self) else np.zeros((0, 4))
        result = []
        for n, region in enumerate(region_ids):
            common = {"to_name": "image", "original_width": width, "original_height": height, "image_rotation": 0}
            result.append({**common, "id": f"{region}b", "from_name": "box", "type": "rectanglelabels",
                           "value": {**labelstudio_percent_box(boxes_xywh[n].tolist(), width, height),
                                     "rectanglelabels": [labels[n]]},
                           "score": float(self.scores[n])})
            if self.masks is not None and self.masks[n].any():  # no brush for a row without mask (from_records)
                mask_score = None if self.mask_scores is None else float(self.mask_scores[n])
                result.append({**common, "id": f"{region}m", "from_name": "mask", "type": "brushlabels",
                               "value": {"format": "rle", "rle": labelstudio_brush_rle(self.masks[n]), "brushlabels": [labels[n]]},
                               "score": mask_score if mask_score is not None and not np.isnan(mask_score) else float(self.scores[n])})
        return result

    @classmethod
    def from_labelstudio(cls, result: list[dict], width: int, height: int, default_label: str) -> Detections:
        """Regions of a Label Studio annotation ``result`` -> Detections (one per region id, sorted; scores 1.0).

        A brush region and a box sharing a region id (as ``to_labelstudio`` writes them) are one detection: mask from
        the brush, box from the rectangle; a lone box gets a rectangular mask, a lone brush its mask's box. Of a pair
        the label that differs from ``default_label`` (the image's dish) wins (a relabel may touch only one of
        them). ``data['region_id']`` holds the region ids; ``labels`` and ``phrases`` the labels. Empty masks stay
        (the caller decides).
        """
        boxes, brushes = {}, {}
        for region in result:
            value = region.get("value", {})
            key = str(region.get("id", ""))
            if region.get("type") == "rectanglelabels":
                boxes[key[:-1] if key.endswith("b") else key] = region
            elif region.get("type") == "brushlabels" and value.get("format") == "rle":
                brushes[key[:-1] if key.endswith("m") else key] = region
        keys = sorted(set(boxes) | set(brushes))
        masks, boxes_xywh, labels = [], [], []
        for key in keys:
            box, brush = boxes.get(key), brushes.get(key)
            if brush is not None:
                mask = labelstudio_brush_mask(brush["value"]["rle"], width, height)
                label = (brush["value"].get("brushlabels") or [default_label])[0]
            else:
                v = box["value"]
                x0, y0 = round(v["x"] * width / 100), round(v["y"] * height / 100)
                x1, y1 = round((v["x"] + v["width"]) * width / 100), round((v["y"] + v["height"]) * height / 100)
                mask = np.zeros((height, width), bool)
                mask[y0:y1, x0:x1] = True
                label = (v.get("rectanglelabels") or [default_label])[0]
            if box is not None and brush is not None:
                pair = {*(box["value"].get("rectanglelabels") or []), *(brush["value"].get("brushlabels") or [])}
                changed = sorted(pair - {default_label})
                label = changed[0] if changed else default_label
            if box is not None:
                v = box["value"]
                boxes_xywh.append([v["x"] * width / 100, v["y"] * height / 100, v["width"] * width / 100,
                                   v["height"] * height / 100])
            else:
                boxes_xywh.append(RLE.from_mask(mask).bbox_xywh)
            masks.append(mask)
            labels.append(label)
        n = len(keys)
        return cls(boxes=convert_boxes(boxes_xywh, "xywh", "xyxy") if n else np.zeros((0, 4)), scores=np.ones(n),
                   phrases=list(labels), masks=np.stack(masks) if n else np.zeros((0, height, width), bool),
                   mask_scores=np.ones(n), data={"region_id": keys}, labels=labels)


def labelstudio_percent_box(bbox_xywh: list[float], width: int, height: int) -> dict:
    """[x, y, w, h] pixels -> Label Studio rectangle value (percent of the image width/height, no rotation)."""
    x, y, w, h = bbox_xywh
    return {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width, "height": 100 * h / height, "rotation": 0}


def labelstudio_brush_rle(mask: np.ndarray) -> list[int]:
    """H x W bool -> Label Studio brush RLE (the SDK's encoder, ``label_studio_sdk.converter.brush``)."""
    from label_studio_sdk.converter.brush import mask2rle

    return mask2rle(np.asarray(mask).astype(np.uint8) * 255)


def labelstudio_brush_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Label Studio brush RLE -> H x W bool (the SDK's decoder; alpha channel of its RGBA image)."""
    from label_studio_sdk.converter.brush import decode_rle

    return decode_rle(rle).reshape(height, width, 4)[:, :, 3] > 0


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device/dtype) or array-like -> numpy (bf16/half become float32)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)
