"""Images in and out: the canvas upload of POST /api/predict, and MNIST pixels encoded as PNG."""

import base64
import binascii
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
DATA_URL_TYPES = ("image/png", "image/jpeg")
EXPECTED_BODY = 'a JSON body {"image": "data:image/png;base64,..."} (a PNG or JPEG as a data URL or plain base64)'


class BadImageError(ValueError):
    """The upload is not an image this app accepts; the message says what was expected."""


def image_from_payload(payload) -> bytes:
    """Return the PNG or JPEG bytes carried by the JSON body of POST /api/predict.

    Accepted: {"image": "data:image/png;base64,..."} (what canvas.toDataURL() gives),
    the same with image/jpeg, or {"image": "<plain base64>"}. Raises BadImageError.
    """
    if not isinstance(payload, dict) or "image" not in payload:
        raise BadImageError(f"expected {EXPECTED_BODY}")
    value = payload["image"]
    if not isinstance(value, str):
        raise BadImageError(f'"image" must be a string; expected {EXPECTED_BODY}')
    encoded = value
    if value.startswith("data:"):
        header, comma, encoded = value.partition(",")
        media_type, _, encoding = header[len("data:") :].partition(";")
        if not comma or encoding != "base64" or media_type not in DATA_URL_TYPES:
            raise BadImageError(f"expected a base64 data URL of type {' or '.join(DATA_URL_TYPES)}, got {header!r}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImageError(f'"image" is not valid base64 ({exc})') from None
    if not data:
        raise BadImageError('"image" is empty')
    if not (data.startswith(PNG_SIGNATURE) or data.startswith(JPEG_SIGNATURE)):
        raise BadImageError('"image" is neither a PNG nor a JPEG (checked the file signature)')
    return data


def grayscale_png(pixels: bytes, width: int, height: int) -> bytes:
    """Encode 8-bit grayscale pixels (row-major, `width * height` bytes) as a PNG file."""
    if len(pixels) != width * height:
        raise ValueError(f"expected {width * height} pixels for {width}x{height}, got {len(pixels)}")
    # Each scanline starts with its filter type; 0 means the bytes are stored as they are.
    scanlines = b"".join(b"\x00" + pixels[row * width : (row + 1) * width] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines, 9)) + _chunk(b"IEND", b"")


def data_url(png: bytes) -> str:
    """A data URL for PNG bytes, as the page and POST /api/predict use them."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
