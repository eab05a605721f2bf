"""Generated test images and transforms (tests never need ../shared)."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance
from sufra.schemas.tables import IMAGES, ImageRecord

from sufra.core.store import DataRoot, utcnow


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A random scene: gradient background, 6-14 shapes of random colours, sizes and positions."""
    rng = np.random.default_rng(seed)
    w, h = size
    gx = np.linspace(0, 1, w)[None, :, None]
    gy = np.linspace(0, 1, h)[:, None, None]
    c0, c1, c2 = (rng.integers(0, 256, 3) for _ in range(3))
    base = c0 * (1 - gx) * (1 - gy) + c1 * gx + c2 * gy * (1 - gx)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 15))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        [draw.ellipse, draw.rectangle][int(rng.integers(0, 2))]([x0, y0, x1, y1], fill=colour)
    return image


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def transforms(image: Image.Image, seed: int) -> dict[str, Image.Image]:
    """The near-duplicate transforms of the curate acceptance test."""
    rng = random.Random(seed)
    w, h = image.size
    dx, dy = int(0.05 * w), int(0.05 * h)
    left, top = rng.randint(0, dx), rng.randint(0, dy)
    overlay = image.copy()
    ImageDraw.Draw(overlay).text((8, h - 20), "foodblog.example 2026", fill=(255, 255, 255))
    return {
        "resize": image.resize((w // 2, h // 2)),
        "jpeg60": Image.open(io.BytesIO(jpeg(image, 60))),
        "crop5": image.crop((left, top, w - (dx - left), h - (dy - top))),
        "text": overlay,
        "brightness": ImageEnhance.Brightness(image).enhance(1.2),
    }


def store(root: DataRoot, country: str, items: list[tuple[str, bytes]], run_id: str = "seed") -> list[str]:
    """Store (dish, jpeg bytes) items as collected images; returns their image ids in order."""
    rows, ids = [], []
    for n, (dish, data) in enumerate(items):
        image_id = root.put_image(data, "jpg")
        size = Image.open(io.BytesIO(data)).size
        ids.append(image_id)
        rows.append(ImageRecord(image_id=image_id, url_hash=f"u{n}-{image_id[:8]}", country=country, dish=dish,
                                query="q", engine="folder", width=size[0], height=size[1], format="jpg",
                                n_bytes=len(data), fetched_at=utcnow(), status="ok"))
    root.write_table(IMAGES, country, rows, run_id)
    return ids
