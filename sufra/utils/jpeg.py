"""JPEG fast paths shared by validation (collect) and hashing (curate): header segments read without decoding,
and libjpeg-turbo decoding through simplejpeg, DCT-scaled. Pillow stays the reference: every case these helpers
do not cover (other formats, EXIF orientation to apply, multi-picture files, anything simplejpeg refuses) goes
to Pillow, which decides and words the error.

Written by hand (no library reads one EXIF tag without parsing the whole directory): the marker walk and the
orientation check, about 0.1 ms less per image than ``Image.getexif()``.
"""

from __future__ import annotations

SOI = b"\xff\xd8\xff"
# the orientation tag's IFD entry (tag 0x0112, type SHORT = 3, count 1) by TIFF byte order mark
_ORIENTATION = {b"MM": (b"\x01\x12\x00\x03", b"\x00\x00\x00\x01", "big"),
                b"II": (b"\x12\x01\x03\x00", b"\x01\x00\x00\x00", "little")}
# the orientation values Pillow's ``ImageOps.exif_transpose`` acts on; any other value (1, and the invalid 0 that
# ~10% of Food-101's photos carry) leaves the pixels as stored
TRANSPOSING_ORIENTATIONS = range(2, 9)


def needs_pillow(data: bytes) -> bool:
    """True unless ``data`` is a single-picture JPEG whose EXIF orientation leaves it as stored (see
    :data:`TRANSPOSING_ORIENTATIONS`). Walks the marker segments before the first scan in place (no copies)."""
    if data[:3] != SOI:
        return True
    transposed = None  # from the first EXIF segment that has an orientation entry
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in (0xDA, 0xD9):  # start of scan / end of image
            break
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == 0xE2 and data.startswith(b"MPF\x00", at + 4):  # multi-picture (MPO): Pillow counts frames
            return True
        if marker == 0xE1 and transposed is None and data.startswith(b"Exif\x00\x00", at + 4):
            # no TIFF byte order mark: Pillow cannot read an orientation from it either
            entry, one, order = _ORIENTATION.get(data[at + 10 : at + 12], (b"", b"", "big"))
            found = data.find(entry, at + 12, end) if entry else -1
            if found >= 0:
                value = int.from_bytes(data[found + 8 : found + 10], order)
                transposed = data[found + 4 : found + 8] != one or value in TRANSPOSING_ORIENTATIONS
        at = end
    return bool(transposed)


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
