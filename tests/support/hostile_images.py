"""Images a hostile client sends: headers that claim enormous sizes, decompression bombs, truncations.

Written with struct and zlib only, so that every component's environment can build them.
"""

import struct
import zlib

MB = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(pixels: bytes, width: int, height: int, extra_chunks: bytes = b"") -> bytes:
    """An 8-bit grayscale PNG of `pixels` (row-major), with `extra_chunks` before the image data."""
    rows = b"".join(b"\0" + pixels[row * width : (row + 1) * width] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + extra_chunks
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def digit_png() -> bytes:
    """A 64x64 PNG of a white bar on black: a real, decodable digit-like image."""
    pixels = bytearray(64 * 64)
    for row in range(10, 54):
        pixels[row * 64 + 28 : row * 64 + 36] = b"\xff" * 8
    return png(bytes(pixels), 64, 64)


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header that claims `width` x `height` pixels, with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = _chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + idat + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """The start of a baseline JPEG whose frame header (SOF0) claims `width` x `height` pixels, one channel."""
    frame = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9"


def png_with_text_bomb() -> bytes:
    """A small PNG with a compressed text chunk (zTXt) that inflates to 20 MB; PIL refuses more than 1 MB."""
    bomb = _chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"0" * (20 * MB), 9))
    return png(b"\0" * 64, 8, 8, extra_chunks=bomb)


def hostile_images() -> dict[str, bytes]:
    """PNG/JPEG files that pass a signature check but no model server may decode whole: name -> bytes."""
    return {
        "png-claims-100000x100000": png_claiming(100_000, 100_000),
        "png-claims-20000x20000": png_claiming(20_000, 20_000),
        "jpeg-claims-65000x65000": jpeg_claiming(65_000, 65_000),
        "png-5000x5000-decompresses-to-25mp": png(b"\0" * (5000 * 5000), 5000, 5000),
        "png-text-chunk-bomb": png_with_text_bomb(),
        "png-truncated": digit_png()[:60],
        "png-blank": png(b"\xff" * 100, 10, 10),
    }
