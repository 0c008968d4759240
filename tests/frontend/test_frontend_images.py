"""The upload decoder and the PNG encoder."""

import base64
import struct
import zlib

import pytest

from mnist_frontend.images import PNG_SIGNATURE, BadImageError, data_url, grayscale_png, image_from_payload


def read_png(png: bytes) -> tuple[int, int, bytes]:
    """Parse a grayscale PNG written by grayscale_png, checking every chunk's CRC: (width, height, pixels)."""
    assert png.startswith(PNG_SIGNATURE)
    offset, chunks = len(PNG_SIGNATURE), {}
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, body = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = body
        offset += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color) == (8, 0)
    rows = zlib.decompress(chunks[b"IDAT"])
    assert all(rows[r * (width + 1)] == 0 for r in range(height))
    pixels = b"".join(rows[r * (width + 1) + 1 : (r + 1) * (width + 1)] for r in range(height))
    return width, height, pixels


def test_grayscale_png_round_trip():
    pixels = bytes(range(256)) * 3 + bytes(16)
    assert read_png(grayscale_png(pixels, 28, 28)) == (28, 28, pixels)


def test_grayscale_png_checks_the_pixel_count():
    with pytest.raises(ValueError, match="expected 784 pixels for 28x28, got 10"):
        grayscale_png(bytes(10), 28, 28)


def test_data_url_round_trip():
    png = grayscale_png(bytes(784), 28, 28)
    assert image_from_payload({"image": data_url(png)}) == png
    assert image_from_payload({"image": base64.b64encode(png).decode()}) == png


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "expected a JSON body"),
        ({"img": "x"}, "expected a JSON body"),
        ({"image": ["x"]}, '"image" must be a string'),
        ({"image": "data:image/gif;base64,R0lGOD"}, "data URL of type image/png or image/jpeg"),
        ({"image": "data:image/png;base64"}, "data URL of type"),
        ({"image": "data:image/png;base64,!!"}, "not valid base64"),
        ({"image": "data:image/png;base64,"}, "is empty"),
        ({"image": base64.b64encode(b"GIF89a....").decode()}, "neither a PNG nor a JPEG"),
    ],
)
def test_bad_payloads(payload, message):
    with pytest.raises(BadImageError, match=message):
        image_from_payload(payload)
