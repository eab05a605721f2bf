"""Per-instance tensors for the fusion head: ROIAlign features, mask and depth ROIs, depth statistics.

Conventions: boxes N x 4 XYXY in pixels of the original H x W image; masks N x H x W bool; depth H x W float at
full resolution; R x R output grid (R = 7).
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

STAT_NAMES = ("mean", "std", "mad", "p10", "p25", "p50", "p75", "p90")


def _rois(boxes: torch.Tensor, per_instance_batch: bool) -> torch.Tensor:
    """K x 5 (batch index, x1, y1, x2, y2): every box on image 0, or box i on batch element i."""
    index = torch.arange(len(boxes), dtype=boxes.dtype) if per_instance_batch else torch.zeros(len(boxes), dtype=boxes.dtype)
    return torch.cat([index[:, None], boxes], dim=1)


def feature_rois(feature_map: torch.Tensor, boxes: torch.Tensor, image_height: int, size: int = 7) -> torch.Tensor:
    """1 x C x Hf x Wf, N x 4 -> N x C x R x R: ROIAlign with spatial scale Hf / H (aligned=True)."""
    scale = feature_map.shape[-2] / image_height
    return roi_align(feature_map, _rois(boxes.float(), False), output_size=size, spatial_scale=scale, aligned=True)


def mask_rois(masks: torch.Tensor, boxes: torch.Tensor, size: int = 7) -> torch.Tensor:
    """N x H x W bool -> N x 1 x R x R {0, 1}: each mask cropped to its box, bilinear resize, threshold 0.5."""
    crops = roi_align(masks[:, None].float(), _rois(boxes.float(), True), output_size=size, spatial_scale=1.0,
                      sampling_ratio=1, aligned=True)
    return (crops >= 0.5).float()


def depth_rois(depth: torch.Tensor, boxes: torch.Tensor, mask_roi: torch.Tensor, size: int = 7) -> torch.Tensor:
    """H x W depth -> N x 1 x R x R: depth cropped to each box (bilinear), zero outside the instance mask."""
    crops = roi_align(depth[None, None].float(), _rois(boxes.float(), False), output_size=size, spatial_scale=1.0,
                      sampling_ratio=1, aligned=True)
    return crops * mask_roi


def depth_stats(depth: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """H x W depth, N x H x W bool -> N x 8: mean, std, MAD (median absolute deviation), p10, p25, p50, p75, p90 of
    the full-resolution depth under each mask (zeros for an empty mask)."""
    out = torch.zeros(len(masks), len(STAT_NAMES))
    quantiles = torch.tensor([0.10, 0.25, 0.50, 0.75, 0.90])
    for i, mask in enumerate(masks):
        values = depth[mask].float()
        if values.numel() == 0:
            continue
        q = torch.quantile(values, quantiles)
        median = q[2]
        out[i] = torch.cat([values.mean()[None], values.std(unbiased=False)[None],
                            torch.quantile((values - median).abs(), 0.5)[None], q])
    return out
