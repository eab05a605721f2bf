"""Decoding stored images for the models and reports."""

from __future__ import annotations

import io

from PIL import Image, ImageOps


def load_rgb(data: bytes) -> Image.Image:
    """Decode stored image bytes to an upright RGB image (HxWx3 uint8 when converted with numpy)."""
    image = Image.open(io.BytesIO(data))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")
