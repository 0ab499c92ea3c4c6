"""Images as the judges see them: decoded, flattened onto white, re-encoded as PNG, hashed.

Servers flatten transparency inconsistently (black, white, or a checkerboard the model then
describes), so every image is composited onto white here, once, before any backend sees it. The
cache key hashes the flattened pixels, not the uploaded bytes: two encodings of the same drawing
share one verdict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from services.judge_proxy.errors import BadImageError


@dataclass(frozen=True)
class FlatImage:
    """An RGB image on white, as PNG bytes, with the hash of its pixels."""

    png: bytes
    sha256: str
    width: int
    height: int


def decode_b64(data: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional, ``data:`` prefix allowed) to bytes."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    data = data.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImageError(f"invalid base64: {exc}") from exc


def flatten(data: bytes, *, max_pixels: int) -> FlatImage:
    """Decode PNG/JPEG/WebP bytes and composite any alpha onto white.

    Raises:
        BadImageError: undecodable bytes, or more than ``max_pixels`` pixels (checked from the
            header, before the pixels are decoded: no decompression bombs).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise BadImageError(f"image is {width}x{height}, over {max_pixels} pixels")
            image.load()
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(f"cannot decode image: {exc}") from exc
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    pixels = rgb.tobytes()
    digest = hashlib.sha256(b"%dx%d:" % rgb.size + pixels).hexdigest()
    out = io.BytesIO()
    rgb.save(out, format="PNG", compress_level=1)  # speed over size: it only crosses one network hop
    return FlatImage(png=out.getvalue(), sha256=digest, width=width, height=height)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, without decoding (for token estimates)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise BadImageError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
