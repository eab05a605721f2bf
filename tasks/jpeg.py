"""JPEG fast paths shared by validation (collect) and hashing (curate): header segments read without decoding,
and libjpeg-turbo decoding through simplejpeg, DCT-scaled. Pillow stays the reference: every case these helpers
do not cover (other formats, EXIF orientation to apply, multi-picture files, anything simplejpeg refuses) goes
to Pillow, which decides and words the error.

Written by hand (no library reads one EXIF tag without parsing the whole directory): the marker walk and the
orientation check, about 0.1 ms less per image than ``Image.getexif()``.
"""

from __future__ import annotations

SOI = b"\xff\xd8\xff"
# the orientation tag's IFD entry: tag 0x0112, type SHORT (3), count 1, in either TIFF byte order
_ORIENTATION = ((b"\x01\x12\x00\x03", b"\x00\x00\x00\x01", "big"), (b"\x12\x01\x03\x00", b"\x01\x00\x00\x00", "little"))


def header_segments(data: bytes) -> dict[int, list[bytes]]:
    """Payloads of the marker segments before the first scan, by marker byte (0xE1 = APP1 ...)."""
    out: dict[int, list[bytes]] = {}
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in (0xDA, 0xD9):  # start of scan / end of image
            break
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        out.setdefault(marker, []).append(data[at + 4 : at + 2 + length])
        at += 2 + length
    return out


def needs_pillow(data: bytes) -> bool:
    """True unless ``data`` is a single-picture JPEG whose EXIF orientation is absent or 1 (upright)."""
    if data[:3] != SOI:
        return True
    segments = header_segments(data)
    if any(p.startswith(b"MPF\x00") for p in segments.get(0xE2, [])):  # multi-picture (MPO): Pillow counts frames
        return True
    for payload in segments.get(0xE1, []):
        if not payload.startswith(b"Exif\x00\x00"):
            continue
        for entry, one, order in _ORIENTATION:
            at = payload.find(entry)
            if at >= 0:
                return payload[at + 4 : at + 8] != one or int.from_bytes(payload[at + 8 : at + 10], order) != 1
    return False


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG header, or ``None`` when simplejpeg cannot read it."""
    import simplejpeg

    try:
        height, width, _colour, _subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return width, height


def decode_scaled(data: bytes, min_px: int, colourspace: str = "GRAY"):
    """HxWxC uint8 array DCT-scaled to the smallest size with both sides >= ``min_px`` (as Pillow's ``draft``),
    the whole entropy-coded stream read (strict: a truncated or corrupt file raises). ``None`` if refused."""
    import simplejpeg

    try:
        return simplejpeg.decode_jpeg(data, colorspace=colourspace, min_width=min_px, min_height=min_px, strict=True)
    except ValueError:
        return None
