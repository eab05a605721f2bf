"""Cache per-instance tensors of an export version: ``features/<model_key>/shard-<n>.safetensors`` + ``index.jsonl``.

One pass per image: the backbone and the depth model run once per image, then every instance of the image gets
F_roi (C x 7 x 7), M_roi (1 x 7 x 7), D_roi (1 x 7 x 7) and 8 depth statistics. A shard is written (atomically)
before its index lines, so a crash never leaves an index line without its tensors; a re-run skips cached instances.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, Field
from sufra.models.extractors import ExtractorSpec
from sufra.schemas.tables import INSTANCES

from sufra.core.store import DataRoot
from sufra.utils.boxes import xywh_to_xyxy
from sufra.utils.roi import depth_rois, depth_stats, feature_rois, mask_rois


class FeatureSettings(BaseModel):
    extractor: ExtractorSpec = Field(default_factory=ExtractorSpec)
    roi_size: int = 7
    shard_size: int = 512  # instances per shard
    device: str = "auto"


def model_key(settings: FeatureSettings, export_path: str, versions: dict[str, str]) -> str:
    blob = json.dumps({"extractor": settings.extractor.model_dump(), "roi": settings.roi_size, "versions": versions,
                       "export": export_path.rstrip("/")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def instance_tensors(image, boxes: torch.Tensor, masks: torch.Tensor, backbone: Callable, depth_model: Callable,
                     roi_size: int = 7) -> dict[str, torch.Tensor]:
    """All tensors of one image's instances; ``boxes`` N x 4 XYXY pixels, ``masks`` N x H x W bool."""
    feature_map = backbone(image)
    depth = depth_model(image)
    m = mask_rois(masks, boxes, roi_size)
    return {
        "F": feature_rois(feature_map, boxes, image.height, roi_size),
        "M": m,
        "D": depth_rois(depth, boxes, m, roi_size),
        "S": depth_stats(depth, masks),
    }


def load_extractors(settings: FeatureSettings):
    from sufra.models.build import pick_device
    from sufra.models.extractors import DepthExtractor, EfficientNetExtractor, FlatDepth
    from sufra.models.weights import load_once

    def build():
        device = pick_device(settings.device)
        backbone = EfficientNetExtractor(settings.extractor, device)
        depth = DepthExtractor(settings.extractor.depth_model, device) if settings.extractor.depth_model else FlatDepth()
        return backbone, depth

    return load_once(f"features:{settings.extractor.model_dump_json()}:{settings.device}", build)


def read_index(folder: Path) -> list[dict]:
    path = folder / "index.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def extract_features(root: DataRoot, export_path: str, out_root: Path, settings: FeatureSettings,
                     extractors=None, progress: Callable[[int], None] | None = None) -> dict:
    """Extract and cache tensors for every instance of the export; returns counts and the cache folder."""
    from safetensors.torch import save_file

    from sufra.utils.images import load_rgb

    export = Path(export_path)
    backbone, depth = extractors or load_extractors(settings)
    versions = {"backbone": backbone.version, "depth": depth.version}
    key = model_key(settings, str(export), versions)
    folder = out_root / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"settings": settings.model_dump(), "versions": versions,
                                                    "export": str(export), "channels": backbone.channels}, indent=1))
    done = {row["instance_id"] for row in read_index(folder)}
    instances = INSTANCES.to_records(pq.read_table(export / "instances.parquet"))
    splits = {r["image_id"]: r["split"] for r in pq.read_table(export / "splits.parquet").to_pylist()}
    formats = {r["image_id"]: r["format"] for r in pq.read_table(export / "images.parquet").to_pylist()}
    by_image = defaultdict(list)
    for inst in instances:
        if inst.instance_id not in done:
            by_image[inst.image_id].append(inst)
    shard_n = len(list(folder.glob("shard-*.safetensors")))
    buffer: dict[str, list[torch.Tensor]] = defaultdict(list)
    rows: list[dict] = []

    def flush() -> None:
        nonlocal shard_n, rows, buffer
        if not rows:
            return
        name = f"shard-{shard_n:05d}.safetensors"
        tensors = {k: torch.cat(v).contiguous() for k, v in buffer.items()}
        tmp = folder / f".tmp-{name}"
        save_file(tensors, str(tmp))
        tmp.replace(folder / name)
        with open(folder / "index.jsonl", "a") as fh:
            for row_n, row in enumerate(rows):
                fh.write(json.dumps({**row, "shard": name, "row": row_n}) + "\n")
        shard_n += 1
        rows, buffer = [], defaultdict(list)

    for image_id in sorted(by_image):
        insts = by_image[image_id]
        local = export / "images" / f"{image_id}.{formats[image_id]}"
        data = local.read_bytes() if local.exists() else root.read_image_bytes(image_id, formats[image_id])
        image = load_rgb(data)
        masks = torch.from_numpy(np.stack([i.mask.to_mask() for i in insts]))
        boxes = torch.from_numpy(xywh_to_xyxy([i.bbox for i in insts])).float()
        tensors = instance_tensors(image, boxes, masks, backbone, depth, settings.roi_size)
        for k, v in tensors.items():
            buffer[k].append(v.to(torch.float16) if k == "F" else v)
        rows.extend({"instance_id": i.instance_id, "image_id": image_id, "label": i.label, "split": splits[image_id]}
                    for i in insts)
        if progress:
            progress(1)
        if len(rows) >= settings.shard_size:
            flush()
    flush()
    return {"folder": str(folder), "model_key": key, "new_instances": sum(len(v) for v in by_image.values()),
            "cached_instances": len(done), "images": len(by_image)}


def load_cache(folder: Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """All shards of a cache folder as tensors (rows in index order) and the index rows."""
    from safetensors.torch import load_file

    index = read_index(folder)
    shards = {name: load_file(str(folder / name)) for name in sorted({r["shard"] for r in index})}
    keys = ("F", "M", "D", "S")
    out = {k: torch.stack([shards[r["shard"]][k][r["row"]] for r in index]) if index else torch.empty(0) for k in keys}
    out["F"] = out["F"].float() if index else out["F"]
    return out, index
