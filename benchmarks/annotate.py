"""Annotate throughput per preset with the real architectures (random weights: speed only), side by side with the
loop autodistill's GroundedSAM uses (per image: detector, one SAM ``set_image``, one ``predict`` per box), same
models, same images, same device.

    .venv/bin/python benchmarks/annotate.py [--quick]

Both paths get the same boxes (threshold 0, class-agnostic NMS, best 5), so only the pipeline differs. The loop runs
segment_anything's stock modules (a copy with the same weights); ours runs them with the fused encoder attention.
``--quick``: 2 images, presets ``balanced`` (GDINO-T + SAM ViT-B) and ``fast`` (GDINO-T + SAM 2 default config);
the full run adds ``quality`` (GDINO-B + SAM ViT-H) and uses 4 images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import add_smoke_flag, emit, sample_photos  # noqa: E402

BOXES_PER_IMAGE = 5


class Clock:
    """Accumulates seconds spent inside wrapped callables (the model forwards); ``restore`` unwraps them."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._wrapped = []

    def wrap(self, obj, attr: str, key: str) -> None:
        inner = getattr(obj, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - start

        self._wrapped.append((obj, attr, attr in vars(obj), inner))
        setattr(obj, attr, timed)

    def restore(self) -> None:
        for obj, attr, was_own, inner in reversed(self._wrapped):
            if was_own:
                setattr(obj, attr, inner)
            else:
                delattr(obj, attr)
        self._wrapped.clear()


def build_detector(size: str, words: list[str]):
    """Grounding DINO tiny/base architecture, random weights, word-level local tokenizer (no download)."""
    import torch
    from sufra.models.detectors import DetectorSpec, TransformersDetector
    from sufra.models.tiny import word_tokenizer
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 512, "longest_edge": 683}),
                                       tokenizer=word_tokenizer(Path(tempfile.mkdtemp()), words))
    config = GroundingDinoConfig()  # the grounding-dino-tiny architecture
    if size == "base":
        config.backbone_config = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                                            window_size=12, out_features=["stage2", "stage3", "stage4"])
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    return TransformersDetector(DetectorSpec(model=f"random-gdino-{size}", box_threshold=0.0, text_threshold=0.0),
                                model=model, processor=processor)


def smoke_detector(words: list[str]):
    """The tests' tiny random Grounding DINO (thresholds 0: boxes on any image)."""
    from sufra.models.detectors import build_detector as build_from_spec
    from sufra.models.tiny import save_tiny_grounding_dino

    spec = save_tiny_grounding_dino(Path(tempfile.mkdtemp()) / "gdino", words)
    return build_from_spec(spec.model_copy(update={"box_threshold": 0.0, "text_threshold": 0.0}))


def build_segmenter(kind: str):
    import torch
    from sufra.models.build import SAM_ARCHS, build_sam
    from sufra.models.segmenters import Sam2Segmenter, SamSegmenter, SegmenterSpec

    torch.manual_seed(0)
    if kind.startswith("vit") or kind == "tiny":
        return SamSegmenter(SegmenterSpec(backend="sam", model_type=kind), model=build_sam(SAM_ARCHS[kind]))
    from transformers import Sam2Config, Sam2ImageProcessorFast, Sam2Model, Sam2Processor

    return Sam2Segmenter(SegmenterSpec(backend="sam2", model="random-sam2"), model=Sam2Model(Sam2Config()).eval(),
                         processor=Sam2Processor(image_processor=Sam2ImageProcessorFast()))


def run_ours(images, detector, segmenter, prompts) -> tuple[float, float]:
    """The flow's domain code (tasks.annotate.annotate_batch + to_records: NMS, one embedding + all boxes,
    post-filters, RLE)."""
    from sufra.tasks.annotate.instances import (
        AnnotateItem,
        AnnotateSettings,
        annotate_batch,
        detector_batch_size,
        to_records,
    )
    from sufra.tasks.annotate.postfilter import PostFilterSettings

    clock = Clock()
    clock.wrap(detector.model, "forward", "model")
    if hasattr(segmenter, "predictor"):
        clock.wrap(segmenter.predictor, "set_image", "model")
        clock.wrap(segmenter.predictor, "predict_torch", "model")
    else:
        clock.wrap(segmenter.model, "forward", "model")
    settings = AnnotateSettings(max_instances=BOXES_PER_IMAGE,
                                postfilter=PostFilterSettings(drop_full_image_boxes=False, min_area_ratio=0))
    batch_size = detector_batch_size(settings, detector.device)
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size]
        for image, det in zip(batch, annotate_batch(batch, [prompts] * len(batch), detector, segmenter, settings), strict=True):
            to_records(AnnotateItem("x", "koshari", "train", ""), "bench", det, image.width, image.height, "h",
                       {}, settings)
    elapsed = time.perf_counter() - start
    clock.restore()
    return elapsed, clock.seconds["model"]


def stock_predictor(segmenter, kind: str):
    """What autodistill runs: segment_anything's own SamPredictor on the stock modules (our segmenter's encoder
    attention is fused, see models.build.fuse_sam_attention), with the same weights."""
    from segment_anything import SamPredictor
    from sufra.models.build import SAM_ARCHS, build_sam

    stock = build_sam(SAM_ARCHS[kind])
    stock.load_state_dict(segmenter.model.state_dict())
    return SamPredictor(stock)


def run_loop(images, detector, predictor, prompts) -> float:
    """autodistill GroundedSAM's loop: per image the detector, one set_image, one predict per box."""
    from sufra.tasks.annotate.instances import nms as nms_fn

    start = time.perf_counter()
    for image in images:
        det = nms_fn(detector.detect([image], [prompts])[0], 0.5, BOXES_PER_IMAGE)
        predictor.set_image(np.asarray(image))
        for box in det.boxes:
            predictor.predict(box=box, multimask_output=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_smoke_flag(parser)
    args = parser.parse_args()
    import torch
    from PIL import Image

    torch.set_num_threads(2)
    n = 1 if args.smoke else 2 if args.quick else 4
    images = []
    for path in sample_photos(n, smoke=args.smoke):
        image = Image.open(path).convert("RGB")
        image.thumbnail((512, 512))
        images.append(image)
    prompts = ["koshari", "bowl of rice lentils and pasta", "food", "dish"]
    results = {}
    presets = {"balanced": ("tiny", "vit_b"), "fast": ("tiny", "sam2")}
    if args.smoke:  # the same code paths on the tiny random test models (seconds, not minutes)
        presets = {"balanced": ("smoke", "tiny"), "fast": ("smoke", "tiny")}
    elif not args.quick:
        presets["quality"] = ("base", "vit_h")
    detectors = {}
    loop_rate = None
    for name, (det_size, seg_kind) in presets.items():
        detector = detectors.get(det_size) or (smoke_detector(prompts) if det_size == "smoke" else build_detector(det_size, prompts))
        detectors[det_size] = detector
        segmenter = build_segmenter(seg_kind)
        loop_predictor = stock_predictor(segmenter, seg_kind) if name == "balanced" else None
        run_ours(images[:1], detector, segmenter, prompts)  # warm-up (allocations, lazy imports)
        if loop_predictor is not None:
            run_loop(images[:1], detector, loop_predictor, prompts)
        total = model_s = loop_s = 0.0
        for k, image in enumerate(images):  # image by image, alternating which path goes first (no drift bias)
            if name == "balanced" and k % 2 == 1:
                loop_s += run_loop([image], detector, loop_predictor, prompts)
            seconds, in_models = run_ours([image], detector, segmenter, prompts)
            total, model_s = total + seconds, model_s + in_models
            if name == "balanced" and k % 2 == 0:
                loop_s += run_loop([image], detector, loop_predictor, prompts)
        results[name] = {"images_per_s": n / total, "overhead_share": max(0.0, 1 - model_s / total)}
        if name == "balanced":
            loop_rate = n / loop_s
        del segmenter, loop_predictor
    reference = "quality" if "quality" in results else "balanced"
    speedup = results["fast"]["images_per_s"] / results[reference]["images_per_s"]
    ours = results["balanced"]["images_per_s"]
    print(f"{n} images of 512 px, {BOXES_PER_IMAGE} boxes each, CPU threads {torch.get_num_threads()}")
    for name, r in results.items():
        print(f"  {name:9s} {r['images_per_s']:.4f} images/s  ({1 / r['images_per_s']:.1f} s/image)  outside model forwards {r['overhead_share']:.1%}")
    print(f"  autodistill-style loop (balanced models) {loop_rate:.4f} images/s")
    emit({"ours": round(ours, 4), "baseline": round(loop_rate, 4), "unit": "images/s", "ratio": round(ours / loop_rate, 3),
          "baseline_name": "autodistill GroundedSAM loop (GDINO-T + SAM ViT-B, predict per box)",
          "fast_tier_speedup": round(speedup, 2), "fast_tier_reference": reference,
          "overhead_share": round(max(r["overhead_share"] for r in results.values()), 4), "presets": results})


if __name__ == "__main__":
    main()
