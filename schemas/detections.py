"""The one type detectors and segmenters produce, and stages exchange (after supervision's ``Detections``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Instances found in one image.

    - ``boxes``: N x 4 float32, XYXY, pixels of the original image.
    - ``scores``: N float32 box (detector) scores in [0, 1].
    - ``phrases``: N prompt phrases the detector matched.
    - ``masks``: N x H x W bool (same H, W as the image) or ``None`` before segmentation.
    - ``mask_scores``: N float32 (segmenter's predicted IoU) or ``None``.
    - ``data``: free per-detection extras (lists of length N).
    """

    boxes: np.ndarray
    scores: np.ndarray
    phrases: list[str]
    masks: np.ndarray | None = None
    mask_scores: np.ndarray | None = None
    data: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = len(self.boxes)
        if len(self.scores) != n or len(self.phrases) != n:
            raise ValueError(f"Detections: {n} boxes but {len(self.scores)} scores and {len(self.phrases)} phrases")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3 or len(self.masks) != n:
                raise ValueError(f"Detections: masks must be N x H x W with N={n}, got {self.masks.shape}")
        if self.mask_scores is not None:
            self.mask_scores = np.asarray(self.mask_scores, dtype=np.float32).reshape(-1)
            if len(self.mask_scores) != n:
                raise ValueError(f"Detections: {len(self.mask_scores)} mask_scores for {n} detections")
        for key, values in self.data.items():
            if len(values) != n:
                raise ValueError(f"Detections: data['{key}'] has {len(values)} values for {n} detections")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [])

    def select(self, keep: np.ndarray | list[int] | list[bool]) -> Detections:
        """A subset by index array or boolean mask."""
        index = np.asarray(keep)
        if index.dtype == bool:
            index = np.nonzero(index)[0]
        index = index.astype(int)
        return Detections(
            boxes=self.boxes[index], scores=self.scores[index], phrases=[self.phrases[i] for i in index],
            masks=None if self.masks is None else self.masks[index],
            mask_scores=None if self.mask_scores is None else self.mask_scores[index],
            data={k: [v[i] for i in index] for k, v in self.data.items()},
        )

    def with_masks(self, masks: np.ndarray, mask_scores: np.ndarray | None) -> Detections:
        """A copy with a segmenter's masks (N x H x W) and scores (N), validated like any new Detections."""
        return Detections(boxes=self.boxes, scores=self.scores, phrases=list(self.phrases), masks=masks,
                          mask_scores=mask_scores, data={k: list(v) for k, v in self.data.items()})

    @classmethod
    def from_transformers(cls, result: dict, phrases_key: str = "text_labels") -> Detections:
        """From a transformers ``post_process_grounded_object_detection`` result dict (one image)."""
        phrases = result.get(phrases_key) or result.get("labels") or []
        phrases = [p if isinstance(p, str) else str(p) for p in phrases]
        return cls(result["boxes"].detach().float().cpu().numpy(), result["scores"].detach().float().cpu().numpy(), phrases)
