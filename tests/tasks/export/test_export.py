"""Export: COCO (pycocotools, torchvision), Parquet, label maps, multi-label, reproducibility, atomicity, report."""

import filecmp
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sufra.schemas import INSTANCES, REVIEWS, SCHEMA_VERSION
from sufra.schemas.rle import RLE
from sufra.schemas.tables import InstanceRecord, ReviewRecord
from sufra.tasks.export.release import ExportSettings, write_export

from sufra.core.catalog import load_country
from sufra.core.errors import SufraError
from sufra.core.store import DataRoot
from tests.support.pipeline import NOW, build_dataset, rect


@pytest.fixture
def exported(tmp_path):
    root = DataRoot(tmp_path / "data")
    instances = build_dataset(root)
    path, selection = write_export(root, [load_country("egypt")], "v1", ExportSettings())
    return root, Path(path), instances, selection


def test_coco_loads_and_self_evaluation_is_perfect(exported):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, path, instances, _ = exported
    total = 0
    for split in ("train", "val", "test"):
        gt = COCO(str(path / f"instances_{split}.json"))
        total += len(gt.getAnnIds())
        if not gt.getAnnIds():
            continue
        for ann in gt.loadAnns(gt.getAnnIds()):
            assert gt.annToMask(ann).sum() == ann["area"] and ann["iscrowd"] == 0
        for iou_type in ("segm", "bbox"):
            dets = gt.loadRes([{**a, "score": 1.0} for a in gt.loadAnns(gt.getAnnIds())])
            evaluator = COCOeval(gt, dets, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            assert evaluator.stats[0] == pytest.approx(1.0), (split, iou_type)
    assert total == len(instances)


def test_torchvision_coco_detection_loads(exported):
    from torchvision.datasets import CocoDetection

    _, path, _, _ = exported
    dataset = CocoDetection(str(path / "images"), str(path / "instances_train.json"))
    image, target = dataset[0]
    assert image.size == (320, 240) and len(target) == 2


def test_parquet_reads_back_equal_to_the_tables(exported):
    import pyarrow.dataset as ds

    root, path, instances, selection = exported
    table = pq.read_table(path / "instances.parquet")
    assert sorted(table["instance_id"].to_pylist()) == sorted(i.instance_id for i in instances)
    assert INSTANCES.to_records(table) == sorted(instances, key=lambda i: (i.image_id, i.instance_id))
    assert table.schema.metadata[b"sufra.schema_version"] == SCHEMA_VERSION.encode() == b"1.1" and b"sufra.catalog_hash" in table.schema.metadata
    assert ds.dataset(str(path / "splits.parquet")).to_table().num_rows == len(selection.images)
    import pandas as pd

    assert len(pd.read_parquet(path / "images.parquet")) == len(selection.images)


def test_label_maps_and_multilabel_match_masks(exported):
    from PIL import Image

    _, path, _, selection = exported
    categories = dict(line.split(",") for line in (path / "label_maps" / "categories.csv").read_text().split()[1:])
    by_image = {}
    for inst in selection.instances:
        by_image.setdefault(inst.image_id, []).append(inst)
    multilabel = {r["image_id"]: r for r in pq.read_table(path / "multilabel.parquet").to_pylist()}
    for image_id, insts in by_image.items():
        label = np.asarray(Image.open(path / "label_maps" / f"{image_id}.png"))
        masks = [i.mask.to_mask() for i in insts]
        only = [m & ~np.logical_or.reduce([o for o in masks if o is not m]) for m in masks]
        for inst, own in zip(insts, only, strict=True):
            assert (label[own] == int(next(k for k, v in categories.items() if v == inst.label))).all()
        overlap = masks[0] & masks[1]
        winner = max(insts, key=lambda i: i.mask_score)
        assert (label[overlap] == int(next(k for k, v in categories.items() if v == winner.label))).all()
        assert (label[~np.logical_or.reduce(masks)] == 0).all()
        assert multilabel[image_id]["dishes"] == [insts[0].label]


def test_second_export_is_byte_identical(tmp_path):
    root = DataRoot(tmp_path / "data")
    build_dataset(root)
    a, _ = write_export(root, [load_country("egypt")], "v1", ExportSettings(images="copy"))
    b, _ = write_export(root, [load_country("egypt")], "v2", ExportSettings(images="copy"))
    names = sorted(str(p.relative_to(a)) for p in Path(a).rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in Path(b).rglob("*") if p.is_file())
    different = [n for n in names if not filecmp.cmp(Path(a) / n, Path(b) / n, shallow=False)]
    # the version string itself is written in the metadata, card, report and COCO info
    assert all(n.endswith((".parquet", ".json", ".md", ".html")) for n in different)
    v1_again, _ = write_export(root, [load_country("egypt")], "v1", ExportSettings(images="copy", overwrite=True))
    for n in names:
        assert filecmp.cmp(Path(a) / n, Path(v1_again) / n, shallow=False) or not (Path(a) / n).exists(), n


def test_category_ids_stable_between_versions(tmp_path):
    root = DataRoot(tmp_path / "data")
    build_dataset(root, dishes=("mahshi", "koshari"))
    v1, _ = write_export(root, [load_country("egypt")], "v1", ExportSettings(images="none"))
    build_dataset(root, dishes=("molokhia",), seed=1)
    v2, _ = write_export(root, [load_country("egypt")], "v2", ExportSettings(images="none"))
    cats = [{c["name"]: c["id"] for c in json.loads((Path(v) / "instances_train.json").read_text())["categories"]} for v in (v1, v2)]
    assert cats[0] == cats[1] and cats[0]["koshari"] == 1 and cats[0]["mahshi"] == 5


def test_review_wins_and_rejected_images_leave(tmp_path):
    root = DataRoot(tmp_path / "data")
    instances = build_dataset(root, dishes=("koshari",), per_dish=6)
    images = sorted({i.image_id for i in instances})
    reviewed_mask = RLE.from_mask(rect(240, 320, 50, 50, 100, 100))
    root.write_table(INSTANCES, "egypt", [InstanceRecord(
        instance_id="rev-1", image_id=images[0], country="egypt", label="koshari", phrase="koshari",
        bbox=reviewed_mask.bbox_xywh, box_score=1.0, mask=reviewed_mask, area=reviewed_mask.area, source="review",
        created_at=NOW)], "review")
    root.write_table(REVIEWS, "egypt", [
        ReviewRecord(image_id=images[0], country="egypt", decision="corrected", reviewer="amira", reviewed_at=NOW),
        ReviewRecord(image_id=images[1], country="egypt", decision="rejected", reviewer="amira", reviewed_at=NOW)], "review")
    _, selection = write_export(root, [load_country("egypt")], "v1", ExportSettings(images="none"))
    exported = {i.image_id: [] for i in selection.instances}
    for i in selection.instances:
        exported[i.image_id].append(i.instance_id)
    assert exported[images[0]] == ["rev-1"]
    assert images[1] not in exported and len(selection.images) == 5
    assert selection.review_outcomes["rejected"] == 1 and selection.review_outcomes["corrected"] == 1


def test_export_is_atomic(tmp_path, monkeypatch):
    import sufra.tasks.export.report

    root = DataRoot(tmp_path / "data")
    build_dataset(root, dishes=("koshari",), per_dish=4)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sufra.tasks.export.report, "render_report", boom)
    with pytest.raises(RuntimeError):
        write_export(root, [load_country("egypt")], "v1", ExportSettings())
    folder = tmp_path / "data" / "exports" / "egypt"
    assert not (folder / "v1").exists() and list(folder.iterdir()) == []
    monkeypatch.undo()
    write_export(root, [load_country("egypt")], "v1", ExportSettings())
    with pytest.raises(SufraError, match="exists"):
        write_export(root, [load_country("egypt")], "v1", ExportSettings())


def test_multi_country_export_qualifies_categories(tmp_path):
    root = DataRoot(tmp_path / "data")
    build_dataset(root, "egypt", ("koshari",), per_dish=4)
    build_dataset(root, "peru", ("ceviche_peruano",), per_dish=4, seed=2)
    path, selection = write_export(root, [load_country("egypt"), load_country("peru")], "v1", ExportSettings(images="none"))
    names = {c["name"]: c["id"] for c in json.loads((Path(path) / "instances_train.json").read_text())["categories"]}
    assert names["egypt/koshari"] == 1001 and names["peru/ceviche_peruano"] == 2001
    assert Path(path).parent.name == "all" and len(selection.images) == 8


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None and not os.environ.get("CI"), reason="Debian chromium not installed (bootstrap --dev installs it)")
def test_report_renders_in_headless_chromium(exported, tmp_path):
    from PIL import Image

    _, path, _, _ = exported
    html = (path / "report.html").read_text()
    assert "Images per class" in html and html.count("data:image/jpeg;base64,") >= 3
    shot = Path(os.environ.get("SUFRA_REPORT_SHOT", tmp_path / "report.png"))
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    (path / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank
    card = (path / "README.md").read_text()
    assert "| koshari |" in card and "Imbalance ratio" in card


def test_polygon_segmentation_option(tmp_path):
    from pycocotools.coco import COCO

    root = DataRoot(tmp_path / "data")
    build_dataset(root, dishes=("koshari",), per_dish=3)
    path, selection = write_export(root, [load_country("egypt")], "v1", ExportSettings(segmentation="polygon", images="none"))
    areas = {}
    for split in ("train", "val", "test"):
        coco = COCO(str(Path(path) / f"instances_{split}.json"))
        for ann in coco.loadAnns(coco.getAnnIds()):
            assert isinstance(ann["segmentation"], list) and len(ann["segmentation"][0]) >= 6
            areas[ann["id"]] = (coco.annToMask(ann).sum(), ann["area"])
    assert areas and all(abs(drawn - stored) <= 0.05 * stored for drawn, stored in areas.values())
