"""Annotate: tiny random models saved and loaded through the public loaders; pure post-filters; RLE."""

from pathlib import Path

import numpy as np
import pytest
from sufra.models.detectors import build_detector, caption, match_phrase
from sufra.models.segmenters import build_segmenter
from sufra.schemas.detections import Detections
from sufra.schemas.rle import RLE
from sufra.tasks.annotate.postfilter import (
    PostFilterSettings,
    drop_duplicates,
    drop_full_image_boxes,
    drop_tiny,
    drop_unions,
    post_filter,
)

from sufra.core.errors import ModelUnavailableError, SufraError
from sufra.utils.masks import mask_to_rle, rle_area, rle_bbox, rle_to_mask
from tests.support.imaging import scene
from tests.support.pipeline import annotate_settings, curated_root


def box_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def dets(masks, scores=None):
    masks = np.array(masks)
    n = len(masks)
    boxes = np.array([[0, 0, 10, 10]] * n, np.float32)
    return Detections(boxes, scores if scores is not None else np.linspace(0.9, 0.5, n), [f"p{i}" for i in range(n)],
                      masks=masks, mask_scores=np.full(n, 0.9, np.float32))


# -- post-filters with hand-made masks ---------------------------------------------------------------------------
def test_tiny_masks_are_dropped():
    d = dets([box_mask(100, 100, 0, 0, 50, 50), box_mask(100, 100, 0, 0, 2, 2)])
    assert drop_tiny(d, 100 * 100, 0.01).phrases == ["p0"]


def test_duplicate_masks_keep_the_better_one():
    a = box_mask(100, 100, 10, 10, 60, 60)
    b = box_mask(100, 100, 11, 10, 60, 61)
    c = box_mask(100, 100, 70, 70, 90, 90)
    d = dets([a, b, c], scores=np.array([0.5, 0.9, 0.7], np.float32))
    d.mask_scores = np.array([0.8, 0.95, 0.9], np.float32)
    assert drop_duplicates(d, 0.85).phrases == ["p1", "p2"]


def test_union_mask_is_dropped_parts_kept():
    a = box_mask(100, 100, 0, 0, 40, 100)
    b = box_mask(100, 100, 60, 0, 100, 100)
    union = a | b
    other = box_mask(100, 100, 45, 45, 55, 55)
    d = dets([union, a, b, other])
    assert drop_unions(d, 0.9, 0.8).phrases == ["p1", "p2", "p3"]
    assert drop_unions(dets([a, b, other]), 0.9, 0.8).phrases == ["p0", "p1", "p2"]  # nothing to drop


def test_full_image_boxes_dropped_when_asked():
    d = Detections(np.array([[0, 0, 100, 100], [10, 10, 50, 50]], np.float32), np.array([0.9, 0.8]), ["a", "b"])
    assert drop_full_image_boxes(d, 100, 100, 0.95).phrases == ["b"]
    masks = np.stack([box_mask(100, 100, 0, 0, 100, 100), box_mask(100, 100, 10, 10, 50, 50)])
    d.masks, d.mask_scores = masks, np.array([0.9, 0.9])
    keep_all = PostFilterSettings(drop_full_image_boxes=False, min_area_ratio=0)
    assert post_filter(d, 100, 100, keep_all).phrases == ["a", "b"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rle_round_trip(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((57, 83), bool)
    mask[rng.integers(0, 20) : rng.integers(30, 57), rng.integers(0, 40) : rng.integers(41, 83)] = True
    mask ^= rng.random(mask.shape) < 0.05
    rle = RLE.from_mask(mask)
    assert isinstance(rle.counts, str) and rle.size == [57, 83]
    assert np.array_equal(rle.to_mask(), mask)
    assert rle.area == mask.sum()
    ys, xs = np.nonzero(mask)
    assert rle.bbox_xywh == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert rle.bbox_xyxy == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # the utilities are aliases of the one type, for an RLE or its COCO JSON dict alike
    dumped = rle.model_dump()
    assert mask_to_rle(mask) == rle and np.array_equal(rle_to_mask(dumped), mask)
    assert rle_area(dumped) == rle.area and rle_bbox(dumped) == rle.bbox_xywh


def test_detections_validate_shapes():
    with pytest.raises(ValueError, match="phrases"):
        Detections(np.zeros((2, 4)), np.zeros(2), ["a"])


def test_caption_and_phrase_mapping():
    assert caption(["Koshari", "bowl of rice."]) == "koshari . bowl of rice ."
    assert match_phrase("bowl rice", ["koshari", "bowl of rice", "food"]) == "bowl of rice"


# -- backends from tiny random configs -------------------------------------------------------------------------
def test_tiny_grounding_dino_loads_and_detects(tiny_models):
    detector = build_detector(tiny_models["detector"])
    images = [scene(1), scene(2, (200, 300))]
    out = detector.detect(images, [["koshari", "food"], ["mahshi", "dish"]])
    assert len(out) == 2
    for det, image, phrases in zip(out, images, [["koshari", "food"], ["mahshi", "dish"]], strict=True):
        assert len(det) > 0 and det.boxes.shape[1] == 4
        assert set(det.phrases) <= set(phrases)
        assert det.boxes[:, [0, 2]].max() <= image.width + 1 and det.boxes[:, [1, 3]].max() <= image.height + 1


@pytest.fixture(scope="module")
def tiny_package_gdino(tmp_path_factory):
    from sufra.models.tiny import save_tiny_groundingdino_package

    return save_tiny_groundingdino_package(tmp_path_factory.mktemp("gdino-package"), ["koshari", "mahshi", "food", "dish"])


def test_groundingdino_package_backend_loads_and_detects(tiny_package_gdino, tmp_path):
    import shutil

    detector = build_detector(tiny_package_gdino)
    images = [scene(1), scene(2, (200, 300))]
    prompts = [["koshari", "food"], ["mahshi", "dish"]]
    out = detector.detect(images, prompts)
    assert len(out) == 2
    for det, image, phrases in zip(out, images, prompts, strict=True):
        assert len(det) > 0 and det.boxes.shape == (len(det), 4) and det.boxes.dtype == np.float32
        assert set(det.phrases) <= set(phrases)
        assert (det.boxes[:, 2] > det.boxes[:, 0]).all() and (det.boxes[:, 3] > det.boxes[:, 1]).all()
        assert det.boxes[:, [0, 2]].max() <= image.width and det.boxes[:, [1, 3]].max() <= image.height
    # the same weights elsewhere: same version (the annotate cache key), same boxes
    moved = tmp_path / "moved"
    shutil.copytree(Path(tiny_package_gdino.checkpoint).parent, moved)
    spec = tiny_package_gdino.model_copy(update={k: str(moved / Path(getattr(tiny_package_gdino, k)).name)
                                                 for k in ("config_path", "checkpoint", "text_encoder")})
    again = build_detector(spec)
    assert again.version == detector.version
    np.testing.assert_allclose(again.detect(images[:1], prompts[:1])[0].boxes, out[0].boxes, rtol=1e-5, atol=1e-3)


def test_groundingdino_package_backend_errors_are_one_line(tiny_package_gdino, tmp_path):
    import torch
    from sufra.models.segmenters import SegmenterSpec

    wrong = tmp_path / "wrong.pth"
    for weights, message in [(torch.zeros(4, 256), r"\d+ weights missing \(e\.g\. transformer\."), (torch.zeros(4, 32), "size mismatch")]:
        torch.save({"model": {"transformer.level_embed": weights}}, wrong)
        with pytest.raises(SufraError, match=r"does not fit config 'GroundingDINO_tiny.py': " + message) as info:
            build_detector(tiny_package_gdino.model_copy(update={"checkpoint": str(wrong)}))
        assert "\n" not in str(info.value)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        build_detector(tiny_package_gdino.model_copy(update={"checkpoint": str(tmp_path / "nope.pth")}))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(ModelUnavailableError, match="cannot read groundingdino checkpoint .*not a PyTorch checkpoint") as info:
        build_detector(tiny_package_gdino.model_copy(update={"checkpoint": str(garbage)}))
    assert "\n" not in str(info.value)
    with pytest.raises(ModelUnavailableError, match="cannot read SAM checkpoint .*not a PyTorch checkpoint"):
        build_segmenter(SegmenterSpec(backend="sam", model_type="tiny", checkpoint=str(garbage)))
    with pytest.raises(SufraError, match="config .* does not exist"):
        build_detector(tiny_package_gdino.model_copy(update={"config_path": str(tmp_path / "nope.py")}))


@pytest.mark.parametrize("backend", ["sam", "sam2"])
def test_tiny_segmenters_load_and_segment(tiny_models, backend):
    segmenter = build_segmenter(tiny_models[backend])
    image = np.asarray(scene(3))
    boxes = np.array([[10, 10, 100, 100], [50, 60, 200, 220]], np.float32)
    det = Detections(boxes, np.array([0.9, 0.6]), ["koshari", "food"], data={"k": [1, 2]})
    out = segmenter.segment(image, det)
    assert isinstance(out, Detections) and det.masks is None  # a new Detections, the input untouched
    assert out.masks.shape == (2, 240, 320) and out.masks.dtype == bool and out.mask_scores.shape == (2,)
    assert out.mask_scores.dtype == np.float32 and np.isfinite(out.mask_scores).all()
    assert np.array_equal(out.boxes, boxes) and out.phrases == ["koshari", "food"] and out.data == {"k": [1, 2]}
    empty = segmenter.segment(image, Detections.empty())
    assert empty.masks.shape == (0, 240, 320) and len(empty.mask_scores) == 0


def test_fused_sam_attention_matches_segment_anything():
    """Our encoder attention (SDPA + decomposed rel-pos mask) is the stock one: same outputs, same state_dict, and
    the segmenter's masks equal those of segment_anything's own predictor on the same weights."""
    import copy

    import torch
    from segment_anything import SamPredictor
    from sufra.models.build import SAM_ARCHS, build_sam, fuse_sam_attention
    from sufra.models.segmenters import SamSegmenter, SegmenterSpec

    torch.manual_seed(0)
    stock = build_sam(SAM_ARCHS["tiny"])
    for block in stock.image_encoder.blocks:  # rel-pos tables start at zero: give them values to get wrong
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    fused = copy.deepcopy(stock)
    fuse_sam_attention(fused)
    assert {type(b.attn).__name__ for b in fused.image_encoder.blocks} == {"SdpaRelPosAttention"}
    assert fused.state_dict().keys() == stock.state_dict().keys()
    x = torch.randn(2, 3, 256, 256)
    with torch.inference_mode():
        expected, got = stock.image_encoder(x), fused.image_encoder(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    image = np.asarray(scene(5))
    boxes = np.array([[10, 10, 150, 120], [60, 40, 300, 230]], np.float32)
    out = SamSegmenter(SegmenterSpec(model_type="tiny"), model=copy.deepcopy(stock)).segment(
        image, Detections(boxes, np.ones(2), ["a", "b"]))
    masks, scores = out.masks, out.mask_scores
    predictor = SamPredictor(stock)
    predictor.set_image(image)
    for i, box in enumerate(boxes):
        one, score, _ = predictor.predict(box=box, multimask_output=False)
        assert (one[0] != masks[i]).mean() < 1e-3 and abs(score[0] - scores[i]) < 1e-4


def test_sam_checkpoint_from_url_is_cached(tiny_models, tmp_path, monkeypatch, engine_server):
    monkeypatch.setenv("SUFRA_MODEL_CACHE", str(tmp_path / "cache"))
    data = open(tiny_models["sam"].checkpoint, "rb").read()
    engine_server.images["sam_tiny"] = (data, "application/octet-stream")
    spec = tiny_models["sam"].model_copy(update={"checkpoint": engine_server.image_url("sam_tiny")})
    build_segmenter(spec)
    build_segmenter(spec)
    assert engine_server.requests["/img/sam_tiny.jpg"] == 1  # fetched once, then from the cache
    assert (tmp_path / "cache" / "checkpoints" / "sam_tiny.jpg").read_bytes() == data


def test_missing_weights_fail_fast_with_one_line(monkeypatch, tmp_path):
    import time

    from sufra.models.detectors import DetectorSpec
    from sufra.models.segmenters import SegmenterSpec

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache") as info:
        build_detector(DetectorSpec(model="sufra-test/does-not-exist"))
    assert "\n" not in str(info.value) and time.monotonic() - start < 10
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        build_segmenter(SegmenterSpec(backend="sam", model_type="vit_b", checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(SufraError, match="unknown SAM model_type"):
        build_segmenter(SegmenterSpec(backend="sam", model_type="vit_x"))


@pytest.mark.slow
def test_annotate_flow_end_to_end(tiny_models, tmp_path, prefect_harness):
    from sufra.flows.annotate import annotate
    from sufra.schemas import ANNOTATIONS, INSTANCES

    root = curated_root(tmp_path, 20)
    settings = annotate_settings(tiny_models)
    counts = annotate(country="egypt", data_root=str(root.root), settings=settings)
    annotations = root.read_records(ANNOTATIONS, "egypt")
    instances = root.read_records(INSTANCES, "egypt")
    assert len(annotations) == 20 and counts["images"] == 20
    assert {a.status for a in annotations} <= {"auto_accepted", "needs_review", "rejected"}
    assert sum(a.n_instances for a in annotations) == len(instances) > 0
    for inst in instances:
        mask = rle_to_mask(inst.mask.model_dump())
        assert mask.sum() == inst.area > 0
        assert inst.bbox == rle_bbox(inst.mask.model_dump())
        assert inst.label in ("koshari", "mahshi") and inst.source == "auto"
        assert inst.model_versions["segmenter"].startswith("sam:tiny")
    again = annotate(country="egypt", data_root=str(root.root), settings=settings)
    assert again["images"] == 0  # cached: same models and settings
    changed = annotate(country="egypt", data_root=str(root.root), settings=annotate_settings(tiny_models, nms_iou=0.3))
    assert changed["images"] == 20  # a setting that changes the output invalidates the cache


MEMORY_SCRIPT = """
import json, resource, sys
from sufra.core.store import DataRoot
from sufra.core.catalog import load_country
from sufra.tasks.annotate.instances import AnnotateSettings, annotate_items, config_hash, items_to_annotate, load_models
settings = AnnotateSettings.model_validate_json(open(sys.argv[2]).read())
root = DataRoot(sys.argv[1])
items = items_to_annotate(root, "egypt", settings, "x")[: int(sys.argv[3])]
detector, segmenter = load_models(settings)
n = 0
for inst, ann in annotate_items(root, "egypt", items, load_country("egypt"), detector, segmenter, settings, "x"):
    n += 1
print(json.dumps({"n": n, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_images(tiny_models, tmp_path):
    import json
    import subprocess
    import sys

    root = curated_root(tmp_path, 400)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(annotate_settings(tiny_models, batch_size=8).model_dump_json())
    peaks = {}
    for n in (40, 400):
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(root.root), str(settings_file), str(n)],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        assert result["n"] == n
        peaks[n] = result["peak_kb"]
    assert peaks[400] <= peaks[40] * 1.10, peaks


def test_to_records_status_uses_the_surviving_detections():
    from sufra.tasks.annotate.instances import AnnotateItem, AnnotateSettings, to_records

    masks = np.stack([np.zeros((20, 20), bool), box_mask(20, 20, 2, 2, 12, 12)])
    det = Detections(np.array([[0, 0, 5, 5], [2, 2, 12, 12]], np.float32), np.array([0.1, 0.9], np.float32),
                     ["a", "b"], masks=masks, mask_scores=np.array([0.8, 0.9], np.float32))
    item = AnnotateItem(image_id="img1", dish="koshari", split="train", path="x.jpg")
    instances, annotation = to_records(item, "egypt", det, 20, 20, "h", {"detector": "d"}, AnnotateSettings())
    assert len(instances) == 1 and instances[0].box_score == pytest.approx(0.9)
    assert annotation.status == "auto_accepted" and annotation.reason is None and annotation.n_instances == 1


def test_with_masks_validates_the_number_of_masks():
    det = Detections(np.zeros((2, 4)), np.zeros(2), ["a", "b"])
    with pytest.raises(ValueError, match="masks"):
        det.with_masks(np.zeros((1, 8, 8), bool), np.zeros(1))
    with pytest.raises(ValueError, match="mask_scores"):
        det.with_masks(np.zeros((2, 8, 8), bool), np.zeros(3))
    out = det.with_masks(np.ones((2, 8, 8), bool), np.full(2, 0.5))
    assert out.masks.shape == (2, 8, 8) and det.masks is None


def test_to_records_keeps_detection_positions_in_instance_ids_and_mask_boxes():
    from sufra.tasks.annotate.instances import AnnotateItem, AnnotateSettings, instance_id, to_records

    masks = np.stack([box_mask(20, 20, 2, 2, 12, 12), np.zeros((20, 20), bool), box_mask(20, 20, 5, 6, 9, 15)])
    det = Detections(np.array([[0, 0, 15, 15], [0, 0, 5, 5], [4, 4, 10, 16]], np.float32), np.array([0.9, 0.8, 0.2]),
                     ["a", "b", "c"], masks=masks, mask_scores=np.array([0.7, 0.6, 0.5]))
    item = AnnotateItem(image_id="img1", dish="koshari", split="train", path="x.jpg")
    instances, annotation = to_records(item, "egypt", det, 20, 20, "h", {"detector": "d"}, AnnotateSettings())
    assert [i.instance_id for i in instances] == [instance_id("img1", "h", 0), instance_id("img1", "h", 2)]
    assert [i.bbox for i in instances] == [[2.0, 2.0, 10.0, 10.0], [5.0, 6.0, 4.0, 9.0]]  # the masks' boxes
    assert [i.area for i in instances] == [100.0, 36.0] and [i.label for i in instances] == ["koshari", "koshari"]
    assert [i.phrase for i in instances] == ["a", "c"] and instances[1].mask_score == pytest.approx(0.5)
    assert annotation.status == "needs_review" and annotation.reason == "box score 0.20 < 0.35"
    none, rejected = to_records(item, "egypt", det[[1]], 20, 20, "h", {}, AnnotateSettings())
    assert none == [] and rejected.status == "rejected" and rejected.n_instances == 0


@pytest.mark.parametrize("text, expected", [
    ("sam", dict(backend="sam", model_type="vit_b", checkpoint=None)),
    ("sam:vit_h", dict(backend="sam", model_type="vit_h", checkpoint=None)),
    ("sam:vit_l:/w/sam_l.pth", dict(backend="sam", model_type="vit_l", checkpoint="/w/sam_l.pth")),
    ("sam:vit_b:https://x.org/sam_b.pth", dict(backend="sam", model_type="vit_b", checkpoint="https://x.org/sam_b.pth")),
    ("sam2:facebook/sam2.1-hiera-small", dict(backend="sam2", model="facebook/sam2.1-hiera-small")),
    ("sam2:/models/sam2:v2", dict(backend="sam2", model="/models/sam2:v2")),
])
def test_segmenter_spec_parses_itself(text, expected):
    from sufra.models.segmenters import SegmenterSpec

    spec = SegmenterSpec.parse(text)
    assert spec.model_dump(include=set(expected)) == expected


@pytest.mark.parametrize("text", ["mask2former", "sam2", "sam2:", "", "SAM:vit_b"])
def test_segmenter_spec_rejects_other_forms_in_one_line(text):
    from sufra.models.segmenters import SegmenterSpec

    with pytest.raises(SufraError, match=r"--segmenter must be sam:MODEL_TYPE\[:CHECKPOINT\] or sam2:HUB_ID_OR_FOLDER") as info:
        SegmenterSpec.parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("groundingdino", dict(backend="groundingdino", checkpoint=None)),
    ("groundingdino:/w/gd.pth", dict(backend="groundingdino", checkpoint="/w/gd.pth")),
    ("groundingdino:https://x.org/gd.pth", dict(backend="groundingdino", checkpoint="https://x.org/gd.pth")),
    ("IDEA-Research/grounding-dino-base", dict(backend="transformers", model="IDEA-Research/grounding-dino-base")),
    ("/models/omdet", dict(backend="transformers", model="/models/omdet")),
])
def test_detector_spec_parses_itself_keeping_the_base_fields(text, expected):
    from sufra.models.detectors import DetectorSpec

    base = DetectorSpec(backend="groundingdino", box_threshold=0.42, text_threshold=0.33, image_size=640)
    spec = DetectorSpec.parse(text, base)
    assert spec.model_dump(include=set(expected)) == expected
    assert (spec.box_threshold, spec.text_threshold, spec.image_size) == (0.42, 0.33, 640)
    with pytest.raises(SufraError, match="--detector must be groundingdino"):
        DetectorSpec.parse("  ", base)


def test_backends_are_registered_and_unknown_ones_named():
    from sufra.models.detectors import (
        DETECTORS,
        DetectorSpec,
        GroundingDinoPackageDetector,
        TransformersDetector,
        register_detector,
    )
    from sufra.models.segmenters import (
        SEGMENTERS,
        Sam2Segmenter,
        SamSegmenter,
        SegmenterSpec,
        register_segmenter,
    )

    assert DETECTORS == {"transformers": TransformersDetector, "groundingdino": GroundingDinoPackageDetector}
    assert SEGMENTERS == {"sam": SamSegmenter, "sam2": Sam2Segmenter}
    with pytest.raises(SufraError, match="unknown segmenter backend 'mask2former'; use sam, sam2"):
        build_segmenter(SegmenterSpec(backend="mask2former"))
    with pytest.raises(SufraError, match="unknown detector backend 'yolo'; use transformers, groundingdino"):
        build_detector(DetectorSpec(backend="yolo"))
    with pytest.raises(ValueError, match="registered twice"):
        register_segmenter("sam")(Sam2Segmenter)
    with pytest.raises(ValueError, match="registered twice"):
        register_detector("transformers")(GroundingDinoPackageDetector)


def test_a_registered_segmenter_is_built_from_its_spec(monkeypatch):
    from sufra.models import segmenters

    monkeypatch.setattr(segmenters, "SEGMENTERS", segmenters.SEGMENTERS.copy())

    @segmenters.register_segmenter("everything")
    class Everything:
        version = "everything:1"

        def __init__(self, spec, device="cpu"):
            self.device = device

        def segment(self, image, detections):
            n, (h, w) = len(detections), image.shape[:2]
            return detections.with_masks(np.ones((n, h, w), bool), np.ones(n))

    segmenter = segmenters.build_segmenter(segmenters.SegmenterSpec(backend="everything"), "cpu")
    out = segmenter.segment(np.zeros((4, 5, 3), np.uint8), Detections(np.zeros((2, 4)), np.ones(2), ["a", "b"]))
    assert isinstance(segmenter, Everything) and out.masks.shape == (2, 4, 5) and out.masks.all()
