"""Detections, the one type between models and outputs: indexing, validation, and every adapter's round trip."""

import datetime as dt

import numpy as np
import pytest
import torch
from sufra.schemas.coco import CocoRLE
from sufra.schemas.detections import Detections, convert_boxes
from sufra.schemas.rle import RLE
from sufra.schemas.tables import INSTANCES, InstanceRecord

from sufra.utils.boxes import xywh_to_xyxy, xyxy_to_xywh

NOW = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
H, W = 24, 32


def rect(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def three() -> Detections:
    """Three detections with masks whose boxes are the masks' own boxes (XYXY, x1/y1 exclusive)."""
    boxes = np.array([[2, 3, 12, 9], [10, 10, 30, 22], [0, 0, 5, 4]], np.float32)
    masks = np.stack([rect(*b.astype(int)) for b in boxes])
    return Detections(boxes, np.array([0.9, 0.5, 0.25]), ["koshari", "rice", "food"], masks=masks,
                      mask_scores=np.array([0.8, 0.7, 0.6]), data={"instance_id": ["i0", "i1", "i2"]},
                      labels=["koshari", "koshari", "mahshi"])


# -- indexing --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, phrases", [
    (0, ["koshari"]),
    (-1, ["food"]),
    (np.int64(1), ["rice"]),
    (slice(1, None), ["rice", "food"]),
    (slice(None, None, -1), ["food", "rice", "koshari"]),
    ([2, 0], ["food", "koshari"]),
    (np.array([1]), ["rice"]),
    ([], []),
    (np.array([True, False, True]), ["koshari", "food"]),
    ([False, False, False], []),
])
def test_getitem_returns_detections_with_every_field_subset(key, phrases):
    det = three()
    order = [det.phrases.index(p) for p in phrases]
    sub = det[key]
    assert isinstance(sub, Detections) and sub.phrases == phrases and len(sub) == len(phrases)
    assert np.array_equal(sub.boxes, det.boxes[order].reshape(-1, 4)) and np.array_equal(sub.scores, det.scores[order])
    assert sub.masks.shape == (len(phrases), H, W) and np.array_equal(sub.masks, det.masks[order])
    assert np.array_equal(sub.mask_scores, det.mask_scores[order])
    assert sub.labels == [det.labels[i] for i in order] and sub.data == {"instance_id": [f"i{i}" for i in order]}
    assert det.select(key if not isinstance(key, (int, np.integer, slice)) else order).phrases == phrases


@pytest.mark.parametrize("key, message", [
    (3, "index 3 out of range for 3"),
    (-4, "index -4 out of range for 3"),
    (np.array([True, False]), "boolean mask of shape"),
    (np.array([0.5]), "cannot index with float64"),
])
def test_getitem_rejects_bad_keys(key, message):
    with pytest.raises(IndexError, match=message):
        three()[key]


@pytest.mark.parametrize("shape", [(0, H, W), (0, 0, 0), (2, 0, 5)])
def test_mask_areas_of_empty_masks(shape):
    det = Detections(np.zeros((shape[0], 4)), np.zeros(shape[0]), ["a"] * shape[0], masks=np.zeros(shape, bool))
    assert det.mask_areas_px().tolist() == [0] * shape[0] and len(det[det.mask_areas_px() > 0]) == 0


def test_mask_areas_need_masks():
    assert three().mask_areas_px().tolist() == [60, 240, 20]
    with pytest.raises(ValueError, match="segment the detections first"):
        three()._copy(masks=None).mask_areas_px()


def test_subsets_and_copies_do_not_share_lists():
    det = three()
    sub = det[[0, 1]]
    sub.data["instance_id"][0] = "changed"
    sub.labels[0] = "changed"
    labelled = det.with_labels(["a", "b", "c"])
    assert det.data["instance_id"][0] == "i0" and det.labels[0] == "koshari" and labelled.labels == ["a", "b", "c"]


# -- validation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    (dict(phrases=["a"]), "3 boxes but 3 scores and 1 phrases"),
    (dict(scores=np.ones(2)), "3 boxes but 2 scores"),
    (dict(masks=np.zeros((2, H, W), bool)), r"masks must be N x H x W with N=3, got \(2, 24, 32\)"),
    (dict(masks=np.zeros((3, H), bool)), "masks must be N x H x W"),
    (dict(mask_scores=np.ones(4)), "4 mask_scores for 3 detections"),
    (dict(labels=["a", "b"]), "2 labels for 3 detections"),
    (dict(data={"x": [1]}), r"data\['x'\] has 1 values for 3 detections"),
])
def test_detections_validate_every_field(changes, message):
    det = three()
    values = dict(boxes=det.boxes, scores=det.scores, phrases=det.phrases, masks=det.masks, mask_scores=det.mask_scores,
                  data=det.data, labels=det.labels)
    values.update(changes)
    with pytest.raises(ValueError, match=message):
        Detections(**values)


def test_dtypes_are_normalised():
    det = Detections([[1, 2, 3, 4]], [1], ("a",), masks=np.ones((1, 2, 2), np.uint8), mask_scores=[0.5], labels=("x",))
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (1, 4) and det.scores.dtype == np.float32
    assert det.masks.dtype == bool and det.mask_scores.dtype == np.float32
    assert det.phrases == ["a"] and det.labels == ["x"]


# -- boxes -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_fmt, boxes, out_fmt, expected", [
    ("xyxy", [[10, 20, 30, 60]], "xywh", [[10, 20, 20, 40]]),
    ("xywh", [[10, 20, 20, 40]], "xyxy", [[10, 20, 30, 60]]),
    ("cxcywh", [[20, 40, 20, 40]], "xyxy", [[10, 20, 30, 60]]),
    ("xyxy", [[10, 20, 30, 60]], "cxcywh", [[20, 40, 20, 40]]),
    ("xywh", [1.5, 2.5, 3.0, 4.0], "xyxy", [[1.5, 2.5, 4.5, 6.5]]),
    ("xywh", np.zeros((0, 4)), "xyxy", np.zeros((0, 4))),
])
def test_box_conversion(in_fmt, boxes, out_fmt, expected):
    out = convert_boxes(boxes, in_fmt, out_fmt)
    assert out.dtype == np.float64 and out.shape == np.asarray(expected).shape
    assert np.allclose(out, expected)
    assert np.allclose(convert_boxes(torch.tensor(np.asarray(boxes, np.float32)), in_fmt, out_fmt), expected)


def test_box_helpers_are_inverse():
    xywh = np.array([[3.25, 4.5, 10.0, 7.75], [0, 0, 1, 1]])
    assert np.allclose(xywh_to_xyxy(xywh), [[3.25, 4.5, 13.25, 12.25], [0, 0, 1, 1]])
    assert np.allclose(xyxy_to_xywh(xywh_to_xyxy(xywh)), xywh)


# -- model adapters --------------------------------------------------------------------------------------------
def test_from_groundingdino_scales_centre_boxes_to_pixels():
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.2, 0.4]])
    det = Detections.from_groundingdino(boxes, torch.tensor([0.6, 0.4]), ["koshari", "food"], width=200, height=100)
    assert np.allclose(det.boxes, [[50, 25, 150, 75], [0, 0, 40, 40]]) and det.boxes.dtype == np.float32
    assert np.allclose(det.scores, [0.6, 0.4]) and det.phrases == ["koshari", "food"] and det.masks is None
    empty = Detections.from_groundingdino(torch.zeros((0, 4)), torch.zeros(0), [], 200, 100)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def test_from_transformers_reads_the_post_processed_dict():
    result = {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "scores": torch.tensor([0.7]), "text_labels": ["rice"]}
    det = Detections.from_transformers(result)
    assert det.boxes.tolist() == [[1, 2, 3, 4]] and det.phrases == ["rice"] and det.scores[0] == pytest.approx(0.7)


@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize("shape", [(3, 1, H, W), (3, H, W)])
def test_with_sam_masks_takes_single_mask_output(as_torch, shape):
    det = three()._copy(masks=None, mask_scores=None)
    masks = np.zeros(shape, bool)
    masks[1, ...] = True
    scores = np.array([[0.1], [0.2], [0.3]], np.float32)
    if as_torch:
        masks, scores = torch.from_numpy(masks), torch.from_numpy(scores).to(torch.bfloat16)
    out = det.with_sam_masks(masks, scores)
    assert out.masks.shape == (3, H, W) and out.masks[1].all() and not out.masks[0].any()
    assert np.allclose(out.mask_scores, [0.1, 0.2, 0.3], atol=1e-2) and det.masks is None
    assert out.phrases == det.phrases and out.labels == det.labels


def test_with_sam_masks_rejects_multimask_output_and_wrong_counts():
    det = three()
    with pytest.raises(ValueError, match="single-mask output"):
        det.with_sam_masks(np.zeros((3, 3, H, W), bool), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="masks must be N x H x W with N=3"):
        det.with_sam_masks(np.zeros((2, 1, H, W), bool), np.zeros((2, 1)))


# -- RLE -------------------------------------------------------------------------------------------------------
def test_one_rle_type_everywhere():
    from sufra.schemas import tables

    from sufra.utils import masks as mask_utils

    assert tables.RLE is RLE and CocoRLE is RLE and mask_utils.RLE is RLE
    assert InstanceRecord.model_fields["mask"].annotation == RLE | None
    masks = three().masks
    assert RLE.from_masks(masks) == [RLE.from_mask(m) for m in masks] and RLE.from_masks(np.zeros((0, 4, 4))) == []
    rle = RLE.from_mask(masks[1])
    assert (rle.height, rle.width, rle.area) == (H, W, 240.0)
    assert rle.bbox_xywh == [10.0, 10.0, 20.0, 12.0] and rle.bbox_xyxy == [10.0, 10.0, 30.0, 22.0]
    assert RLE.coerce(rle.model_dump()) == rle and RLE.coerce(rle) is rle
    with pytest.raises(ValueError, match="H x W"):
        RLE.from_mask(masks)


# -- instances table -------------------------------------------------------------------------------------------
def test_records_round_trip():
    det = three()
    records = det.to_records(image_id="img", country="egypt", created_at=NOW, model_versions={"detector": "d"},
                             config_hash="cfg")
    assert [r.instance_id for r in records] == ["i0", "i1", "i2"] and [r.label for r in records] == det.labels
    assert [r.bbox for r in records] == [[2, 3, 10, 6], [10, 10, 20, 12], [0, 0, 5, 4]]
    assert [r.area for r in records] == [60, 240, 20] and [r.phrase for r in records] == det.phrases
    assert [r.box_score for r in records] == pytest.approx([0.9, 0.5, 0.25])
    assert [r.mask_score for r in records] == pytest.approx([0.8, 0.7, 0.6])
    assert all(r.source == "auto" and r.config_hash == "cfg" and r.model_versions == {"detector": "d"} for r in records)
    assert INSTANCES.to_records(INSTANCES.to_arrow(records)) == records  # through the Parquet schema
    back = Detections.from_records(records)
    assert np.array_equal(back.boxes, det.boxes) and np.array_equal(back.masks, det.masks)
    assert back.labels == det.labels and back.phrases == det.phrases and back.data == det.data
    assert np.allclose(back.scores, det.scores) and np.allclose(back.mask_scores, det.mask_scores)
    assert back.to_records(image_id="img", country="egypt", created_at=NOW, model_versions={"detector": "d"},
                           config_hash="cfg") == records


def test_records_bbox_from_the_box_and_rows_without_mask_or_mask_score():
    det = three()
    det.boxes[0] = [2.004, 3.0, 12.5, 9.0]
    rows = det.to_records("img", "egypt", NOW, instance_ids=["a", "b", "c"], source="review", bbox_from="box",
                          bbox_decimals=2)
    assert rows[0].bbox == [2.0, 3.0, 10.5, 6.0] and rows[0].area == 60 and rows[0].source == "review"
    no_masks = det._copy(masks=None, mask_scores=None).to_records("img", "egypt", NOW)
    assert [r.mask for r in no_masks] == [None] * 3 and no_masks[1].area == pytest.approx(20 * 12)
    mixed = [rows[0].model_copy(update={"mask_score": None}), rows[1].model_copy(update={"mask": None})]
    back = Detections.from_records(mixed)
    assert np.isnan(back.mask_scores[0]) and not back.masks[1].any()
    again = back.to_records("img", "egypt", NOW, source="review", bbox_from="box", bbox_decimals=2)
    assert again[0].mask_score is None and again[0].mask == rows[0].mask
    assert Detections.from_records([]).to_records("img", "egypt", NOW) == []


@pytest.mark.parametrize("change, message", [
    (dict(labels=None), "no labels"),
    (dict(data={}), "pass instance_ids"),
])
def test_to_records_needs_labels_and_ids(change, message):
    with pytest.raises(ValueError, match=message):
        three()._copy(**change).to_records("img", "egypt", NOW)


# -- COCO ------------------------------------------------------------------------------------------------------
def test_coco_annotations_decode_to_the_masks():
    from pycocotools import mask as mask_utils

    det = three()
    annotations = det.to_coco_annotations(image_id=7, category_ids=[1, 1, 2], first_annotation_id=11)
    assert [a["id"] for a in annotations] == [11, 12, 13] and [a["category_id"] for a in annotations] == [1, 1, 2]
    assert [a["bbox"] for a in annotations] == [[2, 3, 10, 6], [10, 10, 20, 12], [0, 0, 5, 4]]
    assert [a["area"] for a in annotations] == [60, 240, 20] and [a["score"] for a in annotations] == [0.9, 0.5, 0.25]
    assert all(a["image_id"] == 7 and a["iscrowd"] == 0 for a in annotations)
    for a, mask in zip(annotations, det.masks, strict=True):
        assert set(a["segmentation"]) == {"size", "counts"} and isinstance(a["segmentation"]["counts"], str)
        coco = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(coco).astype(bool), mask)
    assert {a["category_id"] for a in det.to_coco_annotations(7, 4)} == {4}
    with pytest.raises(ValueError, match="2 category ids for 3"):
        det.to_coco_annotations(7, [1, 2])
    with pytest.raises(ValueError, match="no masks"):
        det._copy(masks=None).to_coco_annotations(7, 1)


# -- Label Studio ----------------------------------------------------------------------------------------------
def test_labelstudio_round_trip():
    det = three()
    result = det.to_labelstudio(W, H)
    assert [r["id"] for r in result] == ["i0b", "i0m", "i1b", "i1m", "i2b", "i2m"]
    assert [r["type"] for r in result[:2]] == ["rectanglelabels", "brushlabels"]
    box = result[2]["value"]
    assert box == {"x": 100 * 10 / W, "y": 100 * 10 / H, "width": 100 * 20 / W, "height": 100 * 12 / H, "rotation": 0,
                   "rectanglelabels": ["koshari"]}
    assert result[0]["score"] == pytest.approx(0.9) and result[1]["score"] == pytest.approx(0.8)
    assert result[5]["value"]["brushlabels"] == ["mahshi"] and result[5]["original_width"] == W
    back = Detections.from_labelstudio(result, W, H, default_label="koshari")
    assert back.data == {"region_id": ["i0", "i1", "i2"]} and back.labels == ["koshari", "koshari", "mahshi"]
    assert np.array_equal(back.masks, det.masks) and np.allclose(back.boxes, det.boxes, atol=1e-4)
    assert back.scores.tolist() == [1, 1, 1] and back.mask_scores.tolist() == [1, 1, 1]
    unlabelled = det._copy(labels=None, mask_scores=None).to_labelstudio(W, H, region_ids=["r0", "r1", "r2"])
    assert unlabelled[1]["value"]["brushlabels"] == ["koshari"] and unlabelled[3]["value"]["brushlabels"] == ["rice"]
    assert unlabelled[1]["score"] == pytest.approx(0.9) and unlabelled[0]["id"] == "r0b"  # no mask score: box score


def test_labelstudio_lone_regions_and_relabels():
    det = three()
    result = det.to_labelstudio(W, H)
    lone_box = result[0]  # i0: box without brush -> a rectangular mask
    lone_brush = result[3]  # i1: brush without box -> the mask's box
    relabelled = [dict(result[4], value={**result[4]["value"], "rectanglelabels": ["molokhia"]}), result[5]]
    decision = {"from_name": "decision", "type": "choices", "value": {"choices": ["accept"]}}
    back = Detections.from_labelstudio([decision, lone_box, lone_brush, *relabelled], W, H, default_label="koshari")
    assert back.data["region_id"] == ["i0", "i1", "i2"]
    assert np.array_equal(back.masks[0], det.masks[0]) and np.allclose(back.boxes[0], det.boxes[0], atol=1e-4)
    assert np.array_equal(back.boxes[1], det.boxes[1]) and back.labels[1] == "koshari"
    assert back.labels[2] == "mahshi"  # box says molokhia, brush mahshi: both differ from the dish, first sorted wins
    assert Detections.from_labelstudio([decision], W, H, "koshari").masks.shape == (0, H, W)
