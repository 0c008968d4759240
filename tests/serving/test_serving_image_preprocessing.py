"""PNG/JPEG drawings become MNIST-style 28x28 inputs: white on black, fit to 20x20, centred by mass."""

import numpy as np
import pytest
from image_preprocessing import ImageError, image_to_mnist
from model_fixtures import centre_of_mass, draw_digit, encode, ink_box
from PIL import Image
from support.synthetic_mnist import render_digits

WHITE = (255, 255, 255, 255)
BLACK = (0, 0, 0, 255)
CLEAR = (0, 0, 0, 0)


def assert_mnist_like(field: np.ndarray) -> None:
    assert field.shape == (28, 28) and field.dtype == np.float32
    assert field.min() >= 0.0 and field.max() <= 1.0
    assert max(ink_box(field)) == 20, f"the digit should fill 20 pixels on its longer side, got {ink_box(field)}"
    y, x = centre_of_mass(field)
    assert abs(y - 14) <= 0.5 and abs(x - 14) <= 0.5, f"centre of mass at ({y:.2f}, {x:.2f}), expected (14, 14)"
    # Background stays black: the border rows and columns hold no ink.
    border = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
    assert border.max() < 0.05


def test_small_off_centre_digit_is_scaled_and_centred_like_mnist():
    image = draw_digit(3, canvas=(640, 480), centre=(560, 60), size=40)
    field = image_to_mnist(encode(image))
    assert_mnist_like(field)


@pytest.mark.parametrize(
    ("ink", "background", "mode", "image_format"),
    [
        (BLACK, WHITE, "L", "PNG"),
        (WHITE, BLACK, "L", "PNG"),
        (BLACK, WHITE, "RGB", "JPEG"),
        ((200, 30, 30, 255), (250, 250, 200, 255), "RGB", "PNG"),
        (BLACK, WHITE, "RGBA", "PNG"),
        (BLACK, CLEAR, "RGBA", "PNG"),
        (WHITE, CLEAR, "RGBA", "PNG"),
        (BLACK, WHITE, "L", "JPEG"),
    ],
    ids=[
        "black-on-white-gray",
        "white-on-black-gray",
        "black-on-white-jpeg",
        "red-on-cream-rgb",
        "black-on-white-rgba",
        "black-on-transparent",
        "white-on-transparent",
        "gray-jpeg",
    ],
)
def test_every_colour_form_gives_the_same_white_on_black_digit(ink, background, mode, image_format):
    reference = image_to_mnist(encode(draw_digit(7, ink=WHITE, background=BLACK, mode="L")))
    field = image_to_mnist(encode(draw_digit(7, ink=ink, background=background, mode=mode), image_format))
    assert_mnist_like(field)
    assert np.abs(field - reference).mean() < 0.03


def test_aspect_ratio_is_kept():
    image = Image.new("L", (300, 300), 255)
    image.paste(0, (140, 50, 160, 250))  # a bar 20 wide, 200 tall: a "1"
    field = image_to_mnist(encode(image))
    height, width = ink_box(field)
    assert height == 20 and width <= 3


def test_an_mnist_digit_drawn_large_comes_back_close_to_itself():
    digits, _ = render_digits(5, seed=3)
    for digit in digits:
        original = image_to_mnist(encode(Image.fromarray(digit)))
        large = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (500, 400), 255)
        canvas.paste(large, (20, 100))
        again = image_to_mnist(encode(canvas))
        assert np.corrcoef(original.ravel(), again.ravel())[0, 1] > 0.9


def test_tiny_image_is_scaled_up():
    image = Image.new("L", (8, 8), 0)
    image.paste(255, (3, 1, 5, 7))
    assert_mnist_like(image_to_mnist(encode(image)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"not an image at all", "not a PNG or JPEG"),
        (encode(Image.new("L", (10, 10), 0), "GIF"), "GIF image: expected PNG or JPEG"),
        (encode(Image.new("L", (10, 10), 0), "BMP"), "BMP image: expected PNG or JPEG"),
        (encode(Image.new("L", (50, 50), 255)), "blank"),
        (encode(Image.new("RGBA", (50, 50), CLEAR)), "blank"),
        (encode(draw_digit(5))[:200], "could not be decoded"),
    ],
    ids=["empty", "garbage", "gif", "bmp", "white", "transparent", "truncated"],
)
def test_unusable_images_are_rejected_with_what_was_expected(data, expected):
    with pytest.raises(ImageError, match=expected):
        image_to_mnist(data)


def test_huge_image_is_rejected_before_decoding():
    data = encode(Image.new("L", (5000, 4000), 255))
    with pytest.raises(ImageError, match="at most"):
        image_to_mnist(data)
