"""The annotate stage as plain functions: prompts from the catalog, detection, class-agnostic NMS, one SAM
embedding per image with all boxes, the paper's post-filters, RLE instances and an image-level status."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
from pydantic import BaseModel, Field
from sufra.models.detectors import DetectorSpec
from sufra.models.segmenters import SegmenterSpec
from sufra.schemas.detections import Detections
from sufra.schemas.tables import ANNOTATIONS, DUPLICATES, IMAGES, SPLITS, AnnotationRecord, InstanceRecord
from sufra.tasks.annotate.postfilter import PostFilterSettings, drop_full_image_boxes, post_filter

from sufra.core.catalog import Country
from sufra.core.store import DataRoot, utcnow


class AnnotateSettings(BaseModel):
    preset: str = "fast"
    detector: DetectorSpec | None = None  # overrides the preset's detector
    segmenter: SegmenterSpec | None = None  # overrides the preset's segmenter
    generic_phrases: list[str] = Field(default_factory=lambda: ["food", "dish"])
    nms_iou: float = 0.5  # class-agnostic NMS over boxes (torchvision.ops.nms)
    max_instances: int = 20  # per image, best boxes first
    postfilter: PostFilterSettings = Field(default_factory=PostFilterSettings)
    review_min_score: float = 0.35  # an instance under this box score sends the image to review
    review_max_instances: int = 6  # more instances than this sends the image to review
    batch_size: int | None = None  # images per detector forward; default 4 on GPU, 1 on CPU (padding mixed
    # aspect ratios to one batch costs compute and batching gains nothing there)
    shard_size: int = 64  # images per task
    device: str = "auto"
    splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"])

    def resolved(self) -> tuple[DetectorSpec, SegmenterSpec]:
        from sufra.models.presets import preset

        chosen = preset(self.preset)
        return self.detector or chosen.detector, self.segmenter or chosen.segmenter


@dataclass
class AnnotateItem:
    image_id: str
    dish: str
    split: str
    path: str
    cross_class: bool = False


def config_hash(settings: AnnotateSettings, versions: dict[str, str]) -> str:
    """Cache key: model versions (location-independent) + every setting that changes the output (not where the
    weights lie, batch/shard sizes or device)."""
    detector, _ = settings.resolved()
    relevant = settings.model_dump(exclude={"batch_size", "shard_size", "device", "splits", "detector", "segmenter", "preset"})
    relevant["thresholds"] = {"box": detector.box_threshold, "text": detector.text_threshold}
    blob = json.dumps({"settings": relevant, "versions": versions}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prompts_for(catalog: Country, dish: str, generic: list[str]) -> list[str]:
    phrases = list(catalog.dish(dish).prompts)
    return phrases + [g for g in generic if g not in phrases]


def items_to_annotate(root: DataRoot, country: str, settings: AnnotateSettings, cfg_hash: str) -> list[AnnotateItem]:
    """Curated (kept, in a wanted split) images without an annotation under the same config hash."""
    splits = root.read_table(SPLITS, country).to_pylist()
    dups = root.read_table(DUPLICATES, country).to_pylist()
    dropped = {r["image_id"] for r in dups if r["dropped"]}
    cross = {r["image_id"] for r in dups if r["kind"] == "cross_class"}
    done_table = root.read_table(ANNOTATIONS, country, columns=["image_id", "config_hash"])
    done = set(done_table.filter(pc.equal(done_table["config_hash"], cfg_hash))["image_id"].to_pylist())
    images = root.read_table(IMAGES, country, columns=["image_id", "format"]).to_pylist()
    fmt = {r["image_id"]: r["format"] for r in images}
    out = []
    for row in sorted(splits, key=lambda r: r["image_id"]):
        image_id = row["image_id"]
        if row["split"] in settings.splits and image_id not in dropped and image_id not in done and image_id in fmt:
            out.append(AnnotateItem(image_id, row["dish"], row["split"], root.image_path(image_id, fmt[image_id]),
                                    image_id in cross))
    return out


def nms(det: Detections, iou: float, max_instances: int) -> Detections:
    import torch
    from torchvision.ops import nms as tv_nms

    if len(det) == 0:
        return det
    keep = tv_nms(torch.from_numpy(det.boxes), torch.from_numpy(det.scores), iou).numpy()
    return det.select(keep[:max_instances])


def image_status(det: Detections, item: AnnotateItem, settings: AnnotateSettings) -> tuple[str, str | None]:
    if len(det) == 0:
        return "rejected", "no instance found"
    reasons = []
    if item.cross_class:
        reasons.append("near-duplicate of an image of another dish")
    if float(det.scores.min()) < settings.review_min_score:
        reasons.append(f"box score {float(det.scores.min()):.2f} < {settings.review_min_score}")
    if len(det) > settings.review_max_instances:
        reasons.append(f"{len(det)} instances > {settings.review_max_instances}")
    return ("needs_review", "; ".join(reasons)) if reasons else ("auto_accepted", None)


def instance_id(image_id: str, cfg_hash: str, n: int) -> str:
    return hashlib.sha256(f"{image_id}:{cfg_hash}:{n}".encode()).hexdigest()[:24]


def to_records(item: AnnotateItem, country: str, det: Detections, width: int, height: int, cfg_hash: str,
               versions: dict[str, str], settings: AnnotateSettings) -> tuple[list[InstanceRecord], AnnotationRecord]:
    """Instances (detections with a non-empty mask, labelled with the image's dish) and the image's status, judged
    on those survivors only. Instance ids keep each detection's position in ``det`` (stable across re-runs)."""
    now = utcnow()
    keep = np.nonzero(det.mask_areas_px() > 0)[0] if len(det) else np.zeros(0, int)
    survivors = det[keep].with_labels([item.dish] * len(keep))
    instances = survivors.to_records(
        image_id=item.image_id, country=country, created_at=now,
        instance_ids=[instance_id(item.image_id, cfg_hash, int(n)) for n in keep], source="auto",
        model_versions=versions, config_hash=cfg_hash, bbox_from="mask")
    status, reason = image_status(survivors, item, settings)
    annotation = AnnotationRecord(image_id=item.image_id, country=country, dish=item.dish, split=item.split, status=status,
                                  reason=reason, n_instances=len(instances), width=width, height=height,
                                  config_hash=cfg_hash, model_versions=versions, annotated_at=now)
    return instances, annotation


def detector_batch_size(settings: AnnotateSettings, device: str) -> int:
    return settings.batch_size or (4 if str(device).startswith("cuda") else 1)


def annotate_batch(images: list, prompts: list[list[str]], detector, segmenter, settings: AnnotateSettings) -> list[Detections]:
    """Boxes (one detector forward for the batch), class-agnostic NMS, masks (one image embedding and all boxes of
    an image in one prompt), post-filters: the final detections of each image."""
    out = []
    for image, det in zip(images, detector.detect(images, prompts), strict=True):
        det = nms(det, settings.nms_iou, settings.max_instances)
        if settings.postfilter.drop_full_image_boxes:  # not worth a mask (post_filter drops them again, idempotent)
            det = drop_full_image_boxes(det, image.width, image.height, settings.postfilter.full_image_box_ratio)
        det = segmenter.segment(np.asarray(image), det)
        out.append(post_filter(det, image.width, image.height, settings.postfilter))
    return out


def annotate_items(root: DataRoot, country: str, items: list[AnnotateItem], catalog: Country, detector, segmenter,
                   settings: AnnotateSettings, cfg_hash: str) -> Iterator[tuple[list[InstanceRecord], AnnotationRecord]]:
    """Stream images batch by batch (memory does not grow with the number of images)."""
    from sufra.utils.images import load_rgb

    versions = {"detector": detector.version, "segmenter": segmenter.version}
    batch_size = detector_batch_size(settings, getattr(detector, "device", "cpu"))
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        images = [load_rgb(root.read_bytes(item.path)) for item in batch]
        prompts = [prompts_for(catalog, item.dish, settings.generic_phrases) for item in batch]
        for item, image, det in zip(batch, images, annotate_batch(images, prompts, detector, segmenter, settings), strict=True):
            yield to_records(item, country, det, image.width, image.height, cfg_hash, versions, settings)
        del images


def load_models(settings: AnnotateSettings):
    """Detector and segmenter for the settings, built once per process."""
    from sufra.models.build import pick_device
    from sufra.models.detectors import build_detector
    from sufra.models.segmenters import build_segmenter
    from sufra.models.weights import load_once

    detector_spec, segmenter_spec = settings.resolved()
    key = json.dumps([detector_spec.model_dump(), segmenter_spec.model_dump(), settings.device], sort_keys=True)

    def build():
        device = pick_device(settings.device)
        return build_detector(detector_spec, device), build_segmenter(segmenter_spec, device)

    return load_once(f"annotate:{key}", build)
