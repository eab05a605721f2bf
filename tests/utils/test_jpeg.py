"""JPEG fast paths: what goes to Pillow, and that validation and hashing give Pillow's answers."""

import io

import pytest
from PIL import Image
from sufra.tasks.collect.validate import Rejection, ValidationSettings, validate_image

from sufra.utils.jpeg import decode_scaled, header_size, needs_pillow
from tests.support.imaging import jpeg, scene


def with_orientation(image, orientation, endian="<"):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.endian = endian
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("endian", ["<", ">"])
def test_needs_pillow_only_when_orientation_applies(endian):
    image = scene(1)
    assert not needs_pillow(jpeg(image))
    for orientation in (0, 1, 9):  # values exif_transpose leaves alone (0 is common in real photos)
        assert not needs_pillow(with_orientation(image, orientation, endian))
    for orientation in range(2, 9):
        assert needs_pillow(with_orientation(image, orientation, endian))
    png = io.BytesIO()
    image.save(png, "PNG")
    assert needs_pillow(png.getvalue())


@pytest.mark.parametrize("fast", [True, False])
def test_orientation_only_reencodes_when_pillow_would_transpose(fast, monkeypatch):
    if not fast:  # the Pillow path must agree with the fast one
        monkeypatch.setattr("sufra.utils.jpeg.needs_pillow", lambda data: True)
    image = scene(4, (120, 80))
    kept = with_orientation(image, 0)
    checked = validate_image(kept)
    assert (checked.data, checked.reoriented, checked.width, checked.height) == (kept, False, 120, 80)
    turned = validate_image(with_orientation(image, 6))
    assert (turned.reoriented, turned.width, turned.height) == (True, 80, 120)


def test_broken_headers_do_not_break_the_header_walk():
    """EXIF without a TIFF byte order mark (Pillow reads no orientation from it either) stays on the fast path;
    a file cut inside a header segment is rejected as corrupt with one line, hashing keeps it as its row's error."""
    from sufra.tasks.curate.hashing import DedupSettings, hash_many

    data = jpeg(scene(2, (120, 80)))
    junk_exif = b"Exif\x00\x00XX" + b"\x00" * 30
    odd = data[:2] + b"\xff\xe1" + (len(junk_exif) + 2).to_bytes(2, "big") + junk_exif + data[2:]
    assert not needs_pillow(odd)
    checked = validate_image(odd)
    assert (checked.data, checked.reoriented, checked.width, checked.height) == (odd, False, 120, 80)
    cut = with_orientation(scene(2), 6)[:40]  # inside the EXIF segment
    assert needs_pillow(cut) is False  # the walk ends at the data's end; the decoders decide
    rejected = validate_image(cut)
    assert isinstance(rejected, Rejection) and rejected.reason == "corrupt" and "\n" not in rejected.detail
    assert isinstance(hash_many([cut], DedupSettings())[0], Exception)


def test_multi_picture_jpeg_goes_to_pillow_and_stays_rejected():
    out = io.BytesIO()
    scene(1).save(out, "MPO", save_all=True, append_images=[scene(2)])
    data = out.getvalue()
    assert needs_pillow(data)
    checked = validate_image(data)
    assert isinstance(checked, Rejection) and checked.reason == "animated"


def test_fast_validation_agrees_with_pillow():
    image = scene(3, (333, 211))
    data = jpeg(image)
    checked = validate_image(data)
    assert (checked.width, checked.height, checked.ext, checked.data) == (333, 211, "jpg", data)
    assert header_size(data) == (333, 211)
    assert decode_scaled(data, 1).shape == (27, 42, 1)  # 1/8 scale, rounded up
    truncated = validate_image(data[: len(data) // 2])  # strict decode refuses; Pillow words the reason
    assert isinstance(truncated, Rejection) and truncated.reason == "corrupt"
    small = validate_image(data, ValidationSettings(min_side_px=300))
    assert isinstance(small, Rejection) and small.reason == "too_small"
    bomb = validate_image(data, ValidationSettings(max_pixels=1000))
    assert isinstance(bomb, Rejection) and bomb.reason == "decompression_bomb"
