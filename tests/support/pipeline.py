"""Tiny generated data roots at a given stage: curated, annotated (hand-made instances), settings for tiny models."""

import datetime as dt

import numpy as np
from sufra.schemas import ANNOTATIONS, INSTANCES, SPLITS
from sufra.schemas.rle import RLE
from sufra.schemas.tables import AnnotationRecord, InstanceRecord
from sufra.tasks.annotate.postfilter import PostFilterSettings
from sufra.tasks.curate.dedup import CurateSettings, dedup_and_split, hash_shard, images_to_hash
from sufra.tasks.curate.hashing import DedupSettings

from sufra.core.store import DataRoot
from tests.support.imaging import jpeg, scene, store

SINGLE = CurateSettings(dedup=DedupSettings(workers=1))


def run_curate(root: DataRoot, country: str = "egypt", settings: CurateSettings = SINGLE, run_id: str = "c1"):
    hash_shard(root, images_to_hash(root, country), settings.dedup, run_id)
    return dedup_and_split(root, country, settings, run_id)


NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def build_dataset(root: DataRoot, country="egypt", dishes=("koshari", "mahshi", "taameya"), per_dish=8, seed=0):
    """Curated images with hand-made instances (two per image: left and right block, overlapping a little)."""
    items = [(dish, jpeg(scene(seed * 1000 + d * 100 + i))) for d, dish in enumerate(dishes) for i in range(per_dish)]
    store(root, country, items, run_id=f"collect-{seed}")
    run_curate(root, country, SINGLE, run_id=f"curate-{seed}")
    instances, annotations = [], []
    for split in root.read_records(SPLITS, country):
        h, w = 240, 320
        masks = [rect(h, w, 10, 20, 150, 200), rect(h, w, 140, 30, 300, 220)]
        for n, mask in enumerate(masks):
            rle = RLE.from_mask(mask)
            instances.append(InstanceRecord(instance_id=f"{split.image_id[:12]}-{n}", image_id=split.image_id, country=country,
                                            label=split.dish, phrase=split.dish, bbox=rle.bbox_xywh, box_score=0.9 - 0.1 * n,
                                            mask=rle, mask_score=0.8 + 0.1 * n, area=rle.area, config_hash="cfg",
                                            model_versions={"detector": "test"}, created_at=NOW))
        annotations.append(AnnotationRecord(image_id=split.image_id, country=country, dish=split.dish, split=split.split,
                                            status="auto_accepted", n_instances=2, width=w, height=h, config_hash="cfg",
                                            annotated_at=NOW))
    root.write_table(INSTANCES, country, instances, "annotate")
    root.write_table(ANNOTATIONS, country, annotations, "annotate")
    return instances


def annotate_settings(tiny_models, **overrides):
    from sufra.tasks.annotate.instances import AnnotateSettings

    values = dict(detector=tiny_models["detector"], segmenter=tiny_models["sam"], batch_size=4, shard_size=8,
                  postfilter=PostFilterSettings(min_area_ratio=0.0005))
    values.update(overrides)
    return AnnotateSettings(**values)


def curated_root(tmp_path, n):

    root = DataRoot(tmp_path / "data")
    store(root, "egypt", [(["koshari", "mahshi"][i % 2], jpeg(scene(1000 + i))) for i in range(n)])
    run_curate(root, settings=SINGLE)
    return root


def split_row(image_id, split, dish="koshari"):
    return dict(image_id=image_id, country="egypt", dish=dish, split=split, group_id=image_id)


