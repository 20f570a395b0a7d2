"""seqvision.data.images: real pictures in every supported format, made with Pillow in memory, become MNIST-like.

The centre convention is (H - 1) / 2 in pixel indices: 13.5 for a 28x28 field.
"""

import io
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from seqvision.data.images import (
    BlankImageError,
    ImageError,
    as_is,
    mnist_style,
    prepare,
    read_image,
    to_greyscale,
)
from seqvision.errors import SeqvisionError

SHAPE = (28, 28)


def draw_digit(kind: str, size: tuple[int, int], box: tuple[float, float, float, float], *, stroke: float = 0.08,
               ink: int = 0, paper: int = 255) -> Image.Image:
    """A greyscale "1", "7" or "0" drawn with strokes in box (fractions of the size), or a typeset digit.

    The pen's width is `stroke` times the height of the box, so a drawing keeps its look at any size.
    """
    width, height = size
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    pen = max(1, round(stroke * (y1 - y0)))
    if kind == "1":
        middle = (x0 + x1) / 2
        draw.line([(x0 + 0.25 * (x1 - x0), y0 + 0.2 * (y1 - y0)), (middle, y0), (middle, y1)], fill=ink, width=pen,
                  joint="curve")
    elif kind == "7":
        draw.line([(x0, y0), (x1, y0), (x0 + 0.35 * (x1 - x0), y1)], fill=ink, width=pen, joint="curve")
    elif kind == "0":
        draw.ellipse([x0, y0, x1, y1], outline=ink, width=pen)
    else:  # a typeset digit, from Pillow's built-in FreeType font
        font = ImageFont.load_default(size=round(y1 - y0))
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), kind, fill=ink, font=font, anchor="mm")
    return image


def encode(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def centre_of_mass(array: np.ndarray) -> tuple[float, float]:
    weights = array.astype(np.float64)
    total = weights.sum()
    return (weights.sum(axis=1) @ np.arange(array.shape[0]) / total,
            weights.sum(axis=0) @ np.arange(array.shape[1]) / total)


def ink_box(array: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in grey levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def aligned_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest difference with b shifted by up to a pixel: centring shifts by whole pixels, as MNIST did,
    so a centre of mass near a half pixel may round either way at another size."""
    return min(difference(a, np.roll(b, (dy, dx), axis=(0, 1))) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_mnist_like(result: np.ndarray, shape: tuple[int, int] = SHAPE) -> None:
    """uint8 of the shape, background 0, ink up to 255, fitted into 20/28 of the field, centred by mass."""
    assert result.shape == shape and result.dtype == np.uint8
    assert result.max() == 255
    assert np.median(result) == 0 and (result > 0).mean() < 0.5
    box = round(shape[0] * 20 / 28), round(shape[1] * 20 / 28)
    height, width = ink_box(result > 0)
    assert height <= box[0] + 1 and width <= box[1] + 1
    assert max(height - box[0], width - box[1]) >= -1, "the digit must fill its box along its longer side"
    centre_y, centre_x = centre_of_mass(result)
    assert abs(centre_y - (shape[0] - 1) / 2) <= 0.6 and abs(centre_x - (shape[1] - 1) / 2) <= 0.6


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, rows: int = 1) -> bytes:
    """A 1-bit greyscale PNG whose header claims width x height, holding `rows` real rows of zeros (cheap to make)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(bytes((1 + (width + 7) // 8) * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


# ---- the MNIST layout -----------------------------------------------------------------------------------------

CANVASES = [(64, 64), (200, 300), (1000, 800)]
BOXES = {"centre": (0.3, 0.2, 0.7, 0.8), "corner": (0.03, 0.04, 0.35, 0.45), "wide": (0.1, 0.3, 0.9, 0.6)}


@pytest.mark.parametrize("kind", ["1", "7", "0", "3"])
@pytest.mark.parametrize("size", CANVASES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("place", list(BOXES))
@pytest.mark.parametrize("stroke", [0.03, 0.15])
def test_drawings_become_mnist_like_in_both_polarities(kind, size, place, stroke):
    dark_on_light = prepare(encode(draw_digit(kind, size, BOXES[place], stroke=stroke)), SHAPE)
    light_on_dark = prepare(encode(draw_digit(kind, size, BOXES[place], stroke=stroke, ink=255, paper=0)), SHAPE)
    assert_mnist_like(dark_on_light)
    assert difference(dark_on_light, light_on_dark) < 1.0


@pytest.mark.parametrize("kind", ["1", "7", "0", "5"])
def test_the_same_drawing_at_other_sizes_and_places_gives_nearly_the_same_digit(kind):
    small = prepare(encode(draw_digit(kind, (120, 120), (0.3, 0.2, 0.7, 0.8))), SHAPE)
    large = prepare(encode(draw_digit(kind, (900, 900), (0.3, 0.2, 0.7, 0.8))), SHAPE)
    elsewhere = prepare(encode(draw_digit(kind, (600, 400), (0.05, 0.5, 0.25, 0.95))), SHAPE)
    assert aligned_difference(small, large) < 10 and aligned_difference(large, elsewhere) < 10


def test_transparent_png_with_dark_strokes_is_a_dark_on_light_drawing():
    drawing = draw_digit("7", (240, 240), BOXES["centre"])
    transparent = Image.new("RGBA", drawing.size, (0, 0, 0, 0))  # transparent black: wrong if alpha is dropped
    transparent.putalpha(Image.eval(drawing, lambda value: 255 - value))
    grey = to_greyscale(read_image(encode(transparent)))
    assert grey[0, 0] == 255 and grey.min() == 0
    reference = prepare(encode(drawing), SHAPE)
    assert difference(prepare(encode(transparent), SHAPE), reference) < 1.0
    # Light strokes on transparency would vanish on white; they are composited on black instead.
    light = Image.new("RGBA", drawing.size, (255, 255, 255, 0))
    light.putalpha(Image.eval(drawing, lambda value: 255 - value))
    assert difference(prepare(encode(light), SHAPE), reference) < 1.0


def test_colour_and_palette_pictures_use_luminance():
    colour = Image.new("RGB", (2, 1))
    colour.putdata([(255, 0, 0), (0, 0, 255)])
    assert to_greyscale(colour).tolist() == [[76, 29]]  # ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B
    assert to_greyscale(colour.convert("P")).tolist() == [[76, 29]]
    deep = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))  # 16-bit: scaled, not clipped
    assert to_greyscale(read_image(encode(deep))).tolist() == [[0, 128, 255]]
    blue_on_yellow = Image.merge("RGB", [draw_digit("0", (100, 100), BOXES["centre"], ink=30, paper=250)] * 2
                                 + [Image.new("L", (100, 100), 40)])
    assert_mnist_like(prepare(encode(blue_on_yellow, "JPEG"), SHAPE))
    assert_mnist_like(prepare(encode(blue_on_yellow.convert("CMYK"), "JPEG"), SHAPE))
    assert_mnist_like(prepare(encode(draw_digit("7", (100, 100), BOXES["centre"]).convert("1"), "PNG"), SHAPE))


def test_exif_orientation_is_applied():
    upright = draw_digit("7", (200, 160), BOXES["centre"])
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # a camera held sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    assert read_image(encode(stored, exif=exif)).size == upright.size
    assert difference(prepare(encode(stored, exif=exif), SHAPE), prepare(encode(upright), SHAPE)) < 1.0


def test_other_field_sizes_get_a_box_of_20_28():
    data = encode(draw_digit("0", (300, 300), BOXES["corner"], stroke=0.06))
    for shape in [(32, 32), (16, 16), (28, 40)]:
        assert_mnist_like(prepare(data, shape), shape)


def test_an_mnist_like_image_passes_through_nearly_unchanged():
    once = prepare(encode(draw_digit("7", (400, 400), BOXES["centre"], stroke=0.1)), SHAPE)
    assert difference(prepare(encode(Image.fromarray(once)), SHAPE), once) < 6


# ---- formats and photos ---------------------------------------------------------------------------------------

FORMATS = [("PNG", {}), ("JPEG", {"quality": 90}), ("BMP", {}), ("GIF", {}), ("TIFF", {}),
           ("TIFF", {"compression": "tiff_lzw"}), ("WEBP", {"lossless": True}), ("WEBP", {"quality": 80})]


@pytest.mark.parametrize(("image_format", "options"), FORMATS, ids=lambda value: str(value))
def test_every_supported_format_decodes(image_format, options):
    drawing = draw_digit("7", (160, 200), BOXES["centre"], stroke=0.1)
    image = read_image(encode(drawing, image_format, **options))
    assert image.format == image_format and image.size == drawing.size
    result = prepare(encode(drawing, image_format, **options), SHAPE)
    assert_mnist_like(result)
    assert difference(result, prepare(encode(drawing), SHAPE)) < 4


def test_gif_uses_the_first_frame():
    first, second = (draw_digit(kind, (100, 100), BOXES["centre"]) for kind in "17")
    animated = encode(first.convert("P"), "GIF", save_all=True, append_images=[second.convert("P")], duration=100)
    assert difference(prepare(animated, SHAPE), prepare(encode(first), SHAPE)) < 1.0


def test_noisy_jpeg_photo_is_cleaned():
    rng = np.random.default_rng(0)
    clean = draw_digit("7", (400, 300), BOXES["centre"], ink=40, paper=210)
    noisy = np.clip(np.asarray(clean, dtype=np.float64) + rng.normal(0, 12, (300, 400)), 0, 255).astype(np.uint8)
    result = prepare(encode(Image.fromarray(noisy), "JPEG", quality=70), SHAPE)
    assert_mnist_like(result)
    assert difference(result, prepare(encode(clean), SHAPE)) < 8


@pytest.mark.parametrize("kind", ["1", "7", "0"])
def test_uneven_light_background_is_still_dark_on_light_and_centred(kind):
    # A dark digit photographed on paper lit from one corner: the far side of the paper is darker than
    # the near side of the paper, and the stroke's contrast changes along the page, as in a phone photo.
    height, width = 480, 640
    y, x = np.mgrid[0:height, 0:width]
    light = 250 - 150 * (x / width) * 0.7 - 150 * (y / height) * 0.3
    reflectance = np.asarray(draw_digit(kind, (width, height), BOXES["wide" if kind == "0" else "centre"],
                                        ink=50, paper=255), dtype=np.float64) / 255
    rng = np.random.default_rng(1)
    photo = np.clip(light * reflectance + rng.normal(0, 4, (height, width)), 0, 255).astype(np.uint8)
    result = prepare(encode(Image.fromarray(photo), "JPEG", quality=85), SHAPE)
    assert_mnist_like(result)
    reference = prepare(encode(draw_digit(kind, (width, height), BOXES["wide" if kind == "0" else "centre"])), SHAPE)
    assert aligned_difference(result, reference) < 8


# ---- blank pictures ------------------------------------------------------------------------------------------

def blank_pictures() -> dict[str, Image.Image]:
    rng = np.random.default_rng(2)
    return {
        "white": Image.new("L", (200, 200), 255),
        "black": Image.new("L", (200, 200), 0),
        "grey RGB": Image.new("RGB", (90, 60), (120, 130, 140)),
        "faint noise": Image.fromarray(rng.integers(118, 138, (300, 300), dtype=np.uint8)),
        "strong noise": Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8)),
        "gradient": Image.fromarray(np.tile(np.linspace(40, 230, 400), (300, 1)).astype(np.uint8)),
        "transparent": Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
    }


@pytest.mark.parametrize("name", list(blank_pictures()))
def test_blank_pictures_are_refused(name):
    with pytest.raises(BlankImageError, match="no digit found") as caught:
        prepare(encode(blank_pictures()[name]), SHAPE)
    assert isinstance(caught.value, ImageError) and "\n" not in str(caught.value)


# ---- bad input -----------------------------------------------------------------------------------------------

def real_png() -> bytes:
    return encode(Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)))


def corrupt_png() -> bytes:
    data = bytearray(real_png())
    data[200:260] = bytes(60)
    return bytes(data)


BAD_INPUTS = {
    "empty": (b"", "empty"),
    "random bytes": (np.random.default_rng(4).bytes(5000), "not a picture in a supported format"),
    "text": (b"label,image\n7,digit.png\n", "PNG, JPEG, BMP, GIF, TIFF or WebP"),
    "html error page": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "not a picture"),
    "truncated PNG": (real_png()[: len(real_png()) // 2], "truncated or corrupt"),
    "truncated JPEG": (encode(draw_digit("1", (300, 300), BOXES["centre"]), "JPEG")[:1500], "truncated or corrupt"),
    "corrupt PNG": (corrupt_png(), "truncated or corrupt"),
    "PNG signature only": (b"\x89PNG\r\n\x1a\n", "PNG picture is truncated or corrupt"),
    "damaged GIF header": (b"GIF89a" + bytes(3), "GIF picture is truncated or corrupt"),
    "unsupported format": (encode(Image.new("RGB", (16, 16)), "ICO"), "not a picture in a supported format"),
    "50 megapixels": (png_claiming(8000, 6500, rows=6500), r"8000x6500 pixels \(52.0 megapixels\)"),
    "decompression bomb": (png_claiming(200_000, 200_000), "too many pixels"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_refused_quickly_with_a_one_line_message(name):
    data, message = BAD_INPUTS[name]
    start = time.perf_counter()
    with pytest.raises(ImageError, match=message) as caught:
        prepare(data, SHAPE)
    assert time.perf_counter() - start < 0.5
    assert "\n" not in str(caught.value) and isinstance(caught.value, SeqvisionError | ValueError)


def test_the_50_megapixel_picture_is_a_real_png_that_a_higher_limit_decodes():
    image = read_image(png_claiming(8000, 6500, rows=6500), max_pixels=60_000_000)
    assert image.size == (8000, 6500)


def test_pillows_bomb_guard_holds_even_with_a_higher_limit_without_changing_global_state():
    filters, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    # Above twice Pillow's limit Pillow raises; between once and twice it warns, which read_image makes an error.
    for width, height in [(200_000, 200_000), (10_000, 10_000)]:
        assert width * height > Image.MAX_IMAGE_PIXELS
        with pytest.raises(ImageError, match="too many pixels to decode safely"):
            read_image(png_claiming(width, height), max_pixels=10**12)
    assert warnings.filters == filters and limit == Image.MAX_IMAGE_PIXELS


def test_as_is_keeps_a_picture_of_the_right_size_and_names_both_sizes_otherwise():
    digit = prepare(encode(draw_digit("7", (100, 100), BOXES["centre"])), SHAPE)
    assert np.array_equal(prepare(encode(Image.fromarray(digit)), SHAPE, preprocess=False), digit)
    assert as_is(digit, SHAPE) is digit
    with pytest.raises(ImageError, match=r"32x40 pixels .* expects 28x28; drop --no-preprocess"):
        as_is(np.zeros((32, 40), dtype=np.uint8), SHAPE)
    with pytest.raises(ImageError, match="expects 28x28"):
        prepare(encode(draw_digit("7", (100, 100), BOXES["centre"])), SHAPE, preprocess=False)


def test_arrays_that_are_not_greyscale_images_are_a_programming_error():
    with pytest.raises(TypeError, match="2-D uint8"):
        mnist_style(np.zeros((28, 28, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="2-D uint8"):
        as_is(np.zeros((28, 28), dtype=np.float32), SHAPE)
