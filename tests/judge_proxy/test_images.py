"""Images: alpha flattened onto white, hashes of pixels, base64 variants, refusals."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from services.judge_proxy.errors import BadImageError
from services.judge_proxy.images import decode_b64, flatten, png_size


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_alpha_is_composited_onto_white() -> None:
    image = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 0, 255))
    image.putpixel((1, 0), (0, 0, 0, 128))
    image.putpixel((2, 0), (255, 0, 0, 255))
    flat = flatten(encode(image), max_pixels=100)
    out = Image.open(io.BytesIO(flat.png))
    assert out.mode == "RGB" and (flat.width, flat.height) == (4, 2) == png_size(flat.png)
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (127, 127, 127)
    assert out.getpixel((2, 0)) == (255, 0, 0)
    assert out.getpixel((3, 1)) == (255, 255, 255)  # transparent black is white, not black


def test_palette_transparency_and_jpeg() -> None:
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 255, 255, 255])
    out = Image.open(io.BytesIO(flatten(encode(palette, transparency=0), max_pixels=100).png))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    jpeg = encode(Image.new("RGB", (8, 8), (10, 200, 30)), "JPEG")
    assert flatten(jpeg, max_pixels=100).width == 8


def test_hash_follows_pixels_not_bytes() -> None:
    image = Image.new("RGB", (16, 16), (255, 255, 255))
    image.putpixel((3, 3), (0, 0, 0))
    fast, small = encode(image, compress_level=0), encode(image, compress_level=9)
    assert fast != small
    assert flatten(fast, max_pixels=1000).sha256 == flatten(small, max_pixels=1000).sha256
    image.putpixel((4, 4), (0, 0, 0))
    assert flatten(encode(image), max_pixels=1000).sha256 != flatten(fast, max_pixels=1000).sha256


def test_refusals() -> None:
    with pytest.raises(BadImageError, match="cannot decode"):
        flatten(b"not an image", max_pixels=100)
    with pytest.raises(BadImageError, match="over 100 pixels"):
        flatten(encode(Image.new("RGB", (11, 10))), max_pixels=100)
    with pytest.raises(BadImageError, match="base64"):
        decode_b64("not base64 !!")


def test_base64_variants() -> None:
    data = bytes(range(250))
    standard = base64.b64encode(data).decode()
    assert decode_b64(standard) == data
    assert decode_b64(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
    assert decode_b64("data:image/png;base64," + standard) == data
