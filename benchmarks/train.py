"""Training throughput: the fusion head trained from the feature cache vs recomputing the features every epoch
(what a pipeline without a cache does), and feature-extraction speed.

    .venv/bin/python benchmarks/train.py [--quick]

Images: sample photos (or generated) with two hand-made instances each; EfficientNet-B0 architecture (random
weights: speed only) at 512 px, the tiny DPT depth model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import add_smoke_flag, emit, sample_photos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 images, 3 epochs")
    add_smoke_flag(parser)
    args = parser.parse_args()
    from PIL import Image
    from sufra.models.extractors import DepthExtractor, EfficientNetExtractor, ExtractorSpec
    from sufra.models.tiny import save_tiny_depth
    from sufra.tasks.learn.features import instance_tensors
    from sufra.tasks.learn.train import TrainSettings, build_head

    n_images, epochs = (2, 1) if args.smoke else (30, 3) if args.quick else (120, 5)
    size = 128 if args.smoke else 512
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp())
    spec = ExtractorSpec(backbone="efficientnet_b0", backbone_weights=None, depth_model=save_tiny_depth(work / "dpt"),
                         input_size=size)
    backbone, depth = EfficientNetExtractor(spec), DepthExtractor(spec.depth_model)
    images = []
    for path in sample_photos(n_images, smoke=args.smoke):
        image = Image.open(path).convert("RGB")
        image.thumbnail((size, size))
        images.append(image)

    def instances_of(image):
        w, h = image.size
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.6 * w, 0.9 * h], [0.4 * w, 0.2 * h, 0.95 * w, 0.8 * h]])
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        for n, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[n, y0:y1, x0:x1] = True
        return boxes, masks

    start = time.perf_counter()
    cache = [instance_tensors(im, *instances_of(im), backbone, depth) for im in images]
    extract_s = time.perf_counter() - start
    tensors = {k: torch.cat([c[k] for c in cache]) for k in ("F", "M", "D", "S")}
    labels = torch.arange(len(tensors["F"])) % 5
    settings = TrainSettings()

    def epoch_on(batch_tensors, model, optimizer):
        order = torch.randperm(len(labels))
        for chunk in order.split(settings.batch_size):
            if len(chunk) < 2:
                continue
            logits = model(*(batch_tensors[k][chunk] for k in ("F", "M", "D", "S")))
            loss = torch.nn.functional.cross_entropy(logits, labels[chunk])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    model = build_head(tensors["F"].shape[1], 5, settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        epoch_on(tensors, model, optimizer)
    cached_s = time.perf_counter() - start
    model = build_head(tensors["F"].shape[1], 5, settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        fresh = [instance_tensors(im, *instances_of(im), backbone, depth) for im in images]
        epoch_on({k: torch.cat([c[k] for c in fresh]) for k in ("F", "M", "D", "S")}, model, optimizer)
    recompute_s = time.perf_counter() - start
    n_instances = len(labels) * epochs
    ours, baseline = n_instances / cached_s, n_instances / recompute_s
    print(f"{n_images} images, {len(labels)} instances, {epochs} epochs, EfficientNet-B0 at 512 px + tiny DPT")
    print(f"  feature extraction           {n_images / extract_s:8.2f} images/s")
    print(f"  training from the cache      {ours:8.1f} instances/s")
    print(f"  recomputing features/epoch   {baseline:8.1f} instances/s")
    emit({"ours": round(ours, 1), "baseline": round(baseline, 1), "unit": "instances/s (training)",
          "ratio": round(ours / baseline, 1), "baseline_name": "recomputing features every epoch",
          "feature_extraction_images_per_s": round(n_images / extract_s, 2)})


if __name__ == "__main__":
    main()
