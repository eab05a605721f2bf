"""Named detector + segmenter pairs; every piece stays overridable."""

from __future__ import annotations

from pydantic import BaseModel
from sufra.models.detectors import DetectorSpec
from sufra.models.segmenters import SegmenterSpec

from sufra.core.errors import SufraError


class Preset(BaseModel):
    detector: DetectorSpec
    segmenter: SegmenterSpec


PRESETS: dict[str, Preset] = {
    # best masks: Grounding DINO base + SAM ViT-H (GroundedSAM's pairing)
    "quality": Preset(detector=DetectorSpec(model="IDEA-Research/grounding-dino-base"),
                      segmenter=SegmenterSpec(backend="sam", model_type="vit_h")),
    # the CPU-friendly classic pairing
    "balanced": Preset(detector=DetectorSpec(model="IDEA-Research/grounding-dino-tiny"),
                       segmenter=SegmenterSpec(backend="sam", model_type="vit_b")),
    # fast tier: Grounding DINO tiny + SAM 2.1 hiera tiny through transformers
    "fast": Preset(detector=DetectorSpec(model="IDEA-Research/grounding-dino-tiny"),
                   segmenter=SegmenterSpec(backend="sam2", model="facebook/sam2.1-hiera-tiny")),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name].model_copy(deep=True)
    except KeyError:
        raise SufraError(f"unknown preset '{name}'; use {', '.join(PRESETS)}") from None
