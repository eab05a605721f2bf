"""The one run-length encoding of a mask: COCO compressed RLE (pycocotools), used by ``instances`` rows, the COCO
export and every mask utility.

``size`` is [height, width]; ``counts`` the compressed string (ASCII, as COCO JSON writes it). Masks are H x W bool,
column-major run lengths as pycocotools encodes them. pycocotools is imported inside the methods that need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


class RLE(BaseModel):
    """COCO compressed RLE: ``size`` is [height, width]; ``counts`` the compressed string.

    The fields are the Parquet struct ``mask`` of the ``instances`` table and the COCO ``segmentation`` object
    (``model_dump()``); everything else is computed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: list[int]
    counts: str

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> RLE:
        """H x W bool (or 0/1) -> RLE."""
        from pycocotools import mask as mask_utils

        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"RLE.from_mask: mask must be H x W, got shape {mask.shape}")
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return cls(size=[int(s) for s in rle["size"]], counts=rle["counts"].decode("ascii"))

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> list[RLE]:
        """N x H x W bool -> N RLEs (one pycocotools call)."""
        from pycocotools import mask as mask_utils

        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"RLE.from_masks: masks must be N x H x W, got shape {masks.shape}")
        if len(masks) == 0:
            return []
        encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        return [cls(size=[int(s) for s in r["size"]], counts=r["counts"].decode("ascii")) for r in encoded]

    @classmethod
    def coerce(cls, rle: RLE | dict[str, Any]) -> RLE:
        """An RLE from itself or its ``model_dump()`` dict (as COCO JSON holds it)."""
        return rle if isinstance(rle, RLE) else cls.model_validate(rle)

    def _coco(self) -> dict:
        return {"size": list(self.size), "counts": self.counts.encode("ascii")}

    @property
    def height(self) -> int:
        return int(self.size[0])

    @property
    def width(self) -> int:
        return int(self.size[1])

    def to_mask(self) -> np.ndarray:
        """-> H x W bool."""
        from pycocotools import mask as mask_utils

        return mask_utils.decode(self._coco()).astype(bool)

    @property
    def area(self) -> float:
        """Foreground pixels."""
        from pycocotools import mask as mask_utils

        return float(mask_utils.area(self._coco()))

    @property
    def bbox_xywh(self) -> list[float]:
        """[x, y, w, h] pixels of the foreground (pycocotools ``toBbox``; all zeros for an empty mask)."""
        from pycocotools import mask as mask_utils

        return [float(v) for v in mask_utils.toBbox(self._coco())]

    @property
    def bbox_xyxy(self) -> list[float]:
        """[x0, y0, x1, y1] pixels of the foreground (x1, y1 exclusive: one past the last pixel)."""
        x, y, w, h = self.bbox_xywh
        return [x, y, x + w, y + h]
