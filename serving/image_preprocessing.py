"""Turn a PNG or JPEG of a handwritten digit into a 28x28 MNIST-style input.

The steps are the ones MNIST itself was made with (LeCun et al.): the digit is
white on black, cropped to its bounding box, scaled to fit a 20x20 box keeping
its aspect ratio (anti-aliased, hence grey levels), and placed in a 28x28 field
so that its centre of mass is at the centre. PIL and numpy only.
"""

import io

import numpy as np
from PIL import Image, ImageOps

MNIST_SIZE = 28
DIGIT_BOX = 20
ACCEPTED_FORMATS = ("PNG", "JPEG")
# Bounds a decoded image's memory (a 16-megapixel float image is 64 MiB) against decompression bombs.
MAX_PIXELS = 16_000_000
# Below this contrast between ink and background the image is treated as blank.
MIN_CONTRAST = 0.1
# A pixel counts as ink for the bounding box above this level (after contrast stretching),
# which keeps JPEG noise and faint smudges from widening the box.
INK_THRESHOLD = 0.2


class ImageError(ValueError):
    """The bytes are not a usable PNG/JPEG image of a digit; the message says what was expected."""


def decode_image(data: bytes, what: str = "binData") -> Image.Image:
    """Decode PNG or JPEG bytes into a PIL image (any size, mode and channel count); `what` names the field."""
    if not data:
        raise ImageError(f"{what} is empty: expected the bytes of a PNG or JPEG image")
    # PIL's decoders meet malformed data with many exception types (struct.error, SyntaxError, EOFError,
    # DecompressionBombError, ...): every one of them means the bytes are not a usable image.
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what} claims too large an image ({exc}): expected at most {MAX_PIXELS:,} pixels") from None
    except Exception as exc:
        raise ImageError(f"{what} is not a PNG or JPEG image ({exc}): expected the bytes of a PNG or JPEG") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(f"{what} is a {image.format} image: expected PNG or JPEG")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} pixels: expected at most {MAX_PIXELS:,} pixels")
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except Exception as exc:
        raise ImageError(f"{what} could not be decoded as {image.format} ({exc}): expected a complete image") from None


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Return the image as float32 luminance in [0, 1] (h, w), with transparency resolved.

    A canvas export is often ink on a transparent background. Transparent pixels
    become the colour opposite to the ink, so the digit stays visible whether it
    was drawn dark or light.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    rgba = image.convert("RGBA")
    luminance = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    coverage = float(alpha.sum())
    if coverage == 0.0:
        return np.zeros_like(luminance)
    ink_level = float((luminance * alpha).sum()) / coverage
    background = 1.0 if ink_level < 0.5 else 0.0
    return luminance * alpha + background * (1.0 - alpha)


def to_white_on_black(gray: np.ndarray) -> np.ndarray:
    """Invert when the background (the image border) is light, then stretch the contrast to [0, 1]."""
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    if float(border.mean()) > 0.5:
        gray = 1.0 - gray
        border = 1.0 - border
    background = float(np.median(border))
    peak = float(gray.max())
    if peak - background < MIN_CONTRAST:
        raise ImageError("the image is blank (one colour, no digit found): expected a drawn digit")
    return np.clip((gray - background) / (peak - background), 0.0, 1.0)


def crop_to_ink(digit: np.ndarray) -> np.ndarray:
    """Crop to the bounding box of the pixels brighter than INK_THRESHOLD."""
    rows = np.flatnonzero((digit > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((digit > INK_THRESHOLD).any(axis=0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fit_box(digit: np.ndarray, box: int = DIGIT_BOX) -> np.ndarray:
    """Scale so the longer side is `box` pixels, keeping the aspect ratio (Lanczos, anti-aliased)."""
    height, width = digit.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def centre_by_mass(digit: np.ndarray, size: int = MNIST_SIZE) -> np.ndarray:
    """Place `digit` in a size x size field with its centre of mass at the centre."""
    field = np.zeros((size, size), dtype=np.float32)
    height, width = digit.shape
    mass = float(digit.sum())
    # Pixel i covers [i, i + 1), so its centre is at i + 0.5.
    centre_y = float((digit.sum(axis=1) * (np.arange(height) + 0.5)).sum()) / mass
    centre_x = float((digit.sum(axis=0) * (np.arange(width) + 0.5)).sum()) / mass
    top = round(size / 2 - centre_y)
    left = round(size / 2 - centre_x)
    # Clip the placement to the field: a lopsided digit may overhang it by a pixel or two.
    src_top, src_left = max(0, -top), max(0, -left)
    dst_top, dst_left = max(0, top), max(0, left)
    rows = min(height - src_top, size - dst_top)
    cols = min(width - src_left, size - dst_left)
    field[dst_top : dst_top + rows, dst_left : dst_left + cols] = digit[
        src_top : src_top + rows, src_left : src_left + cols
    ]
    return field


def image_to_mnist(data: bytes, what: str = "binData") -> np.ndarray:
    """Decode a PNG/JPEG of a digit and return it MNIST-style: float32 (28, 28), white on black, in [0, 1]."""
    digit = to_white_on_black(to_grayscale(decode_image(data, what)))
    return centre_by_mass(fit_box(crop_to_ink(digit)))
