"""Validate downloaded image bytes: magic bytes, pixel limit before decoding, full decode, size and aspect limits.

A bad payload is data, not an exception: :func:`validate_image` returns a :class:`Rejection` with a reason code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel

from sufra.utils.jpeg import TRANSPOSING_ORIENTATIONS

# magic prefix -> stored file extension
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),  # RIFF....WEBP
    (b"BM", 0, "bmp"),
]
_PIL_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}
EXIF_ORIENTATION_TAG = 0x0112


class ValidationSettings(BaseModel):
    min_side_px: int = 64
    max_aspect_ratio: float = 4.0  # long side / short side
    max_pixels: int = 60_000_000  # decompression-bomb guard, checked from the header before decoding
    allow_animated: bool = False


@dataclass(frozen=True)
class ValidImage:
    data: bytes = field(repr=False)  # the bytes to store (the original unless EXIF orientation had to be applied)
    ext: str = "jpg"
    width: int = 0  # after EXIF orientation
    height: int = 0
    reoriented: bool = False


@dataclass(frozen=True)
class Rejection:
    reason: str  # short code: empty, not_an_image, unsupported_format, decompression_bomb, corrupt, animated, ...
    detail: str = ""

    @property
    def status(self) -> str:
        return f"rejected:{self.reason}"


def sniff_extension(data: bytes) -> str | None:
    """The file extension for the magic bytes of ``data``, or ``None`` when it is not a supported raster image."""
    for magic, offset, ext in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if ext == "webp" and data[:4] != b"RIFF":
                continue
            return ext
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower())


def validate_image(data: bytes, settings: ValidationSettings | None = None) -> ValidImage | Rejection:
    """Check ``data`` and return what to store, or why not. Never raises for bad bytes."""
    settings = settings or ValidationSettings()
    if not data:
        return Rejection("empty", "zero bytes")
    ext = sniff_extension(data)
    if ext is None:
        if _looks_like_svg(data):
            return Rejection("unsupported_format", "svg (vector) image")
        if data[:64].lstrip().lower().startswith((b"<!doctype", b"<html")):
            return Rejection("not_an_image", "html page")
        return Rejection("not_an_image", "unknown magic bytes")
    if ext == "jpg":
        fast = _validate_plain_jpeg(data, settings)
        if fast is not None:
            return fast
    try:
        # Pillow raises DecompressionBombError past 2x its own limit; our limit is checked from the header first
        # (no warnings.catch_warnings here: it mutates global state and is not thread-safe)
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > settings.max_pixels:
            return Rejection("decompression_bomb", f"{width}x{height} over {settings.max_pixels} pixels")
        if getattr(image, "n_frames", 1) > 1 and not settings.allow_animated:
            return Rejection("animated", f"{image.n_frames} frames")
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1) if ext in ("jpg", "webp", "png") else 1
        reoriented = orientation in TRANSPOSING_ORIENTATIONS
        if ext == "jpg" and not reoriented:
            # DCT-domain downscale: reads the whole entropy-coded stream (truncation is caught) at ~1/64 cost
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        image.load()
    except Image.DecompressionBombError as exc:
        return Rejection("decompression_bomb", str(exc).split(".")[0])
    except UnidentifiedImageError:
        return Rejection("corrupt", f"{ext} that Pillow cannot identify")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return Rejection("corrupt", str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
    if _PIL_FORMATS.get(image.format or "") != ext:
        return Rejection("not_an_image", f"magic says {ext}, decoder says {image.format}")
    if reoriented:
        image = ImageOps.exif_transpose(image)
        width, height = image.size
        data = _encode_like(image, ext)
    return _check_shape(data, ext, width, height, reoriented, settings)


def _check_shape(data: bytes, ext: str, width: int, height: int, reoriented: bool,
                 settings: ValidationSettings) -> ValidImage | Rejection:
    short, long = sorted((width, height))
    if short < settings.min_side_px:
        return Rejection("too_small", f"{width}x{height}, shorter side under {settings.min_side_px} px")
    if long / short > settings.max_aspect_ratio:
        return Rejection("extreme_aspect", f"{width}x{height}, aspect over {settings.max_aspect_ratio:g}")
    return ValidImage(data=data, ext=ext, width=width, height=height, reoriented=reoriented)


def _validate_plain_jpeg(data: bytes, settings: ValidationSettings) -> ValidImage | Rejection | None:
    """The common case without Pillow: an upright single-picture JPEG, size from the header, the whole stream
    decoded at 1/8 scale by libjpeg-turbo in strict mode (truncation and corruption raise). ``None``: Pillow decides
    (orientation to apply, multi-picture, CMYK, anything simplejpeg refuses: the rejection reason stays Pillow's)."""
    from sufra.utils.jpeg import decode_scaled, header_size, needs_pillow

    if needs_pillow(data):
        return None
    size = header_size(data)
    if size is None:
        return None
    width, height = size
    if width * height > settings.max_pixels:
        return Rejection("decompression_bomb", f"{width}x{height} over {settings.max_pixels} pixels")
    if decode_scaled(data, 1) is None:
        return None
    return _check_shape(data, "jpg", width, height, False, settings)


def _encode_like(image: Image.Image, ext: str) -> bytes:
    """Re-encode an EXIF-rotated image upright (the only case where stored bytes differ from the download)."""
    out = io.BytesIO()
    if ext == "jpg":
        mode = image.mode if image.mode in ("RGB", "L", "CMYK") else "RGB"
        image.convert(mode).save(out, "JPEG", quality=95, icc_profile=image.info.get("icc_profile"))
    elif ext == "webp":
        image.save(out, "WEBP", quality=95)
    else:
        image.save(out, "PNG")
    return out.getvalue()
