"""The export stage as plain functions: choose what a dataset version holds, write Parquet, COCO, label maps, a
multi-label table, a dataset card and a report into ``exports/<country>/<version>/``.

Reproducible: the same inputs and settings give byte-identical Parquet and JSON (sorted rows, sequential ids, no
wall-clock time). Atomic: everything is written into a hidden staging folder renamed to its final name at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from sufra.schemas.coco import CocoAnnotation, CocoCategory, CocoDataset, CocoImage, coco_annotation
from sufra.schemas.rle import RLE
from sufra.schemas.tables import (
    ANNOTATIONS,
    DUPLICATES,
    IMAGES,
    INSTANCES,
    REVIEWS,
    SCHEMA_VERSION,
    SPLITS,
    InstanceRecord,
    Table,
)
from sufra.tasks.export.statistics import long_tail

from sufra.core.catalog import Country
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot

SPLIT_ORDER = ("train", "val", "test")


class ExportSettings(BaseModel):
    segmentation: Literal["rle", "polygon"] = "rle"
    images: Literal["link", "copy", "none"] = "link"
    label_maps: bool = True
    include_needs_review: bool = True  # export automatic instances of images still waiting for review
    samples_per_dish: int = 6  # in the report
    overwrite: bool = False


@dataclass
class Category:
    id: int
    name: str  # dish id, or "<country>/<dish>" in a multi-country export
    country: str
    dish: str


@dataclass
class Selection:
    """What one dataset version holds."""

    categories: list[Category]
    images: list[dict] = field(default_factory=list)  # rows of the images table (+ "split")
    instances: list[InstanceRecord] = field(default_factory=list)
    splits: list[dict] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    review_outcomes: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    licenses: Counter = field(default_factory=Counter)
    run_ids: list[str] = field(default_factory=list)


def categories_for(catalogs: list[Country]) -> list[Category]:
    """Stable ids: a dish keeps the 1-based position it has in its catalog file (new dishes are appended there);
    a multi-country export offsets each country by 1000 in alphabetical order of the country slug."""
    multi = len(catalogs) > 1
    out = []
    for rank, catalog in enumerate(sorted(catalogs, key=lambda c: c.country)):
        for dish, position in catalog.category_ids().items():
            out.append(Category(id=(rank + 1) * 1000 + position if multi else position,
                                name=f"{catalog.country}/{dish}" if multi else dish, country=catalog.country, dish=dish))
    return out


def _current_instances(instances: list[InstanceRecord], annotation: dict | None, review: dict | None) -> list[InstanceRecord]:
    """Reviewed instances win (a correction that removed every instance leaves none); an acceptance without
    regions keeps the automatic ones of the image's latest annotation configuration."""
    reviewed = [i for i in instances if i.source == "review" and not i.deleted]
    if review is not None and (review["decision"] == "corrected" or (review["decision"] == "accepted" and reviewed)):
        return reviewed
    if annotation is None:
        return []
    return [i for i in instances if i.source == "auto" and i.config_hash == annotation["config_hash"] and not i.deleted]


def select(root: DataRoot, catalogs: list[Country], settings: ExportSettings) -> Selection:
    categories = categories_for(catalogs)
    selection = Selection(categories=categories)
    cat_by_key = {(c.country, c.dish): c for c in categories}
    for catalog in sorted(catalogs, key=lambda c: c.country):
        country = catalog.country
        images = {r["image_id"]: r for r in root.read_table(IMAGES, country).to_pylist() if r["status"] == "ok"}
        splits = {r["image_id"]: r for r in root.read_table(SPLITS, country).to_pylist()}
        dropped = {r["image_id"] for r in root.read_table(DUPLICATES, country).to_pylist() if r["dropped"]}
        annotations = {r["image_id"]: r for r in root.read_table(ANNOTATIONS, country).to_pylist()}
        reviews = {r["image_id"]: r for r in root.read_table(REVIEWS, country).to_pylist()}
        by_image: dict[str, list[InstanceRecord]] = defaultdict(list)
        for inst in root.read_records(INSTANCES, country):
            by_image[inst.image_id].append(inst)
        selection.stats["duplicates_dropped"] += len(dropped)
        for image_id in sorted(splits):
            row = images.get(image_id)
            if row is None or image_id in dropped:
                continue
            review = reviews.get(image_id)
            annotation = annotations.get(image_id)
            if review is not None:
                selection.review_outcomes[review["decision"]] += 1
                if review["decision"] == "rejected":
                    selection.stats["excluded_review_rejected"] += 1
                    continue
            elif annotation is not None:
                if annotation["status"] == "needs_review" and not settings.include_needs_review:
                    selection.stats["excluded_needs_review"] += 1
                    continue
                selection.review_outcomes[f"unreviewed_{annotation['status']}"] += 1
            current = [i for i in _current_instances(by_image[image_id], annotation, review) if (country, i.label) in cat_by_key]
            if not current:
                selection.stats["excluded_no_instances"] += 1
                continue
            split = splits[image_id]["split"]
            selection.images.append({**row, "split": split})
            selection.splits.append(splits[image_id])
            selection.instances.extend(sorted(current, key=lambda i: i.instance_id))
            selection.sources[row["engine"]] += 1
            selection.licenses[row["license"] or "unknown"] += 1
        selection.run_ids.extend(sorted(p.rsplit("/", 1)[-1][:-5] for p in root.fs.glob(root.path("runs", "*.json"))))
    selection.images.sort(key=lambda r: r["image_id"])
    selection.splits.sort(key=lambda r: r["image_id"])
    selection.instances.sort(key=lambda i: (i.image_id, i.instance_id))
    return selection


# -- writers ---------------------------------------------------------------------------------------------------
def _write_parquet(table: Table, rows, path: Path, metadata: dict[str, str]) -> None:
    data = table.to_arrow(rows) if not isinstance(rows, pa.Table) else rows
    meta = dict(data.schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in metadata.items()})
    pq.write_table(data.replace_schema_metadata(meta), path, compression="zstd")


def coco_for_split(selection: Selection, split: str, image_ids: dict[str, int], settings: ExportSettings,
                   info: dict) -> CocoDataset:
    cat_id = {(c.country, c.dish): c.id for c in selection.categories}
    images: list[CocoImage] = []
    wanted = set()
    for row in selection.images:
        if row["split"] == split:
            wanted.add(row["image_id"])
            images.append({"id": image_ids[row["image_id"]], "file_name": f"{row['image_id']}.{row['format']}",
                           "width": row["width"], "height": row["height"]})
    annotations: list[CocoAnnotation] = []
    for n, inst in enumerate(selection.instances):
        if inst.image_id not in wanted:
            continue
        polygons = rle_to_polygons(inst.mask) if settings.segmentation == "polygon" else None
        # bbox from the mask (a reviewer may move a box without redrawing its mask): COCO wants them consistent
        annotations.append(coco_annotation(inst.mask, n + 1, image_ids[inst.image_id], cat_id[(inst.country, inst.label)],
                                           inst.box_score, segmentation=polygons, area=inst.area))
    return {
        "info": {**info, "split": split},
        "licenses": [{"id": i + 1, "name": name, "url": ""} for i, name in enumerate(sorted(selection.licenses))],
        "images": images,
        "annotations": annotations,
        "categories": [CocoCategory(id=c.id, name=c.name, supercategory=c.country) for c in selection.categories],
    }


def rle_to_polygons(rle: RLE) -> list[list[float]]:
    """Outer contours of a mask as COCO polygons (needs OpenCV: ``pip install opencv-python-headless``)."""
    try:
        import cv2
    except ImportError:
        raise SufraError("polygon segmentation needs OpenCV: pip install opencv-python-headless (or use --segmentation rle)") from None
    contours, _ = cv2.findContours(RLE.coerce(rle).to_mask().astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def label_map(instances: list[InstanceRecord], width: int, height: int, cat_id: dict) -> np.ndarray:
    """FoodSeg103-style semantic map: one class id per pixel, 0 = background; overlaps go to the higher score."""
    dtype = np.uint8 if max(cat_id.values(), default=0) < 256 else np.uint16
    out = np.zeros((height, width), dtype)
    for inst in sorted(instances, key=lambda i: (i.mask_score if i.mask_score is not None else i.box_score, i.instance_id)):
        out[inst.mask.to_mask()] = cat_id[(inst.country, inst.label)]
    return out


def write_export(root: DataRoot, catalogs: list[Country], version: str, settings: ExportSettings,
                 name: str | None = None) -> tuple[str, Selection]:
    """Write one dataset version; returns its final path. Raises if it exists (unless ``overwrite``)."""
    from sufra.tasks.export.report import render_card, render_report

    if not version or "/" in version or version.startswith("."):
        raise SufraError(f"bad export version '{version}': use something like v1 or 2026-11-23")
    name = name or (catalogs[0].country if len(catalogs) == 1 else "all")
    final = root.path("exports", name, version)
    if root.fs.exists(final) and not settings.overwrite:
        raise SufraError(f"export {final} exists; choose another version or pass --overwrite")
    selection = select(root, catalogs, settings)
    if not selection.images:
        raise SufraError(f"nothing to export for {name}: no curated, annotated image (run collect, curate, annotate)")
    staging = Path(root.local_path(root.path("exports", name)) or _local_tmp()) / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        _write_all(root, catalogs, selection, staging, version, settings, name)
        (staging / "README.md").write_text(render_card(selection, catalogs, version, name, long_tail(selection)), encoding="utf-8")
        (staging / "report.html").write_text(render_report(root, selection, name, version, long_tail(selection), settings), encoding="utf-8")
        _publish(root, staging, final, settings.overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final, selection


def _local_tmp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="sufra-export-")


def _publish(root: DataRoot, staging: Path, final: str, overwrite: bool) -> None:
    if root.is_local:
        if overwrite and os.path.exists(final):
            old = f"{final}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        return
    remote_tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    root.fs.put(str(staging), remote_tmp, recursive=True)
    if overwrite and root.fs.exists(final):
        root.fs.rm(final, recursive=True)
    root.fs.mv(remote_tmp, final, recursive=True)


def _write_all(root: DataRoot, catalogs: list[Country], selection: Selection, out: Path, version: str,
               settings: ExportSettings, name: str) -> None:
    from sufra.core.store import package_versions

    catalog_hash = hashlib.sha256("".join(c.content_hash() for c in sorted(catalogs, key=lambda c: c.country)).encode()).hexdigest()[:16]
    versions = package_versions()
    metadata = {"sufra.export_version": version, "sufra.catalog_hash": catalog_hash,
                "sufra.pipeline_versions": json.dumps(versions, sort_keys=True),
                "sufra.run_ids": json.dumps(selection.run_ids)}
    image_rows = [{k: v for k, v in row.items() if k != "split"} for row in selection.images]
    _write_parquet(IMAGES, image_rows, out / "images.parquet", metadata)
    _write_parquet(INSTANCES, selection.instances, out / "instances.parquet", metadata)
    _write_parquet(SPLITS, selection.splits, out / "splits.parquet", metadata)
    cat_id = {(c.country, c.dish): c.id for c in selection.categories}
    labels_by_image: dict[str, list] = defaultdict(list)
    for inst in selection.instances:
        labels_by_image[inst.image_id].append(inst)
    multilabel = pa.table({
        "image_id": [r["image_id"] for r in selection.images],
        "split": [r["split"] for r in selection.images],
        "dishes": [sorted({f"{i.country}/{i.label}" if len(catalogs) > 1 else i.label for i in labels_by_image[r["image_id"]]}) for r in selection.images],
        "category_ids": [sorted({cat_id[(i.country, i.label)] for i in labels_by_image[r["image_id"]]}) for r in selection.images],
    })
    pq.write_table(multilabel.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()}),
                   out / "multilabel.parquet", compression="zstd")
    newest = max((r["fetched_at"] for r in selection.images), default=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    info = {"description": f"sufra {name} food dataset", "version": version, "year": newest.year,
            "date_created": newest.isoformat(), "schema_version": SCHEMA_VERSION, "catalog_hash": catalog_hash,
            "contributor": "sufra pipeline (automatic annotations unless reviewed)"}
    image_ids = {r["image_id"]: n + 1 for n, r in enumerate(selection.images)}
    for split in SPLIT_ORDER:
        coco = coco_for_split(selection, split, image_ids, settings, info)
        (out / f"instances_{split}.json").write_text(json.dumps(coco, sort_keys=True, separators=(",", ":")))
    if settings.images != "none":
        (out / "images").mkdir()
        for row in selection.images:
            source = root.image_path(row["image_id"], row["format"])
            target = out / "images" / f"{row['image_id']}.{row['format']}"
            local = root.local_path(source)
            if settings.images == "link" and local:
                target.symlink_to(os.path.abspath(local))
            else:
                target.write_bytes(root.read_bytes(source))
    if settings.label_maps:
        from PIL import Image

        folder = out / "label_maps"
        folder.mkdir()
        lines = ["id,name"] + ["0,background"] + [f"{c.id},{c.name}" for c in selection.categories]
        (folder / "categories.csv").write_text("\n".join(lines) + "\n")
        for row in selection.images:
            array = label_map(labels_by_image[row["image_id"]], row["width"], row["height"], cat_id)
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, "PNG")
            (folder / f"{row['image_id']}.png").write_bytes(buffer.getvalue())
