"""Turn a picture a user supplies (photo, scan, canvas drawing) into the image an MNIST-trained model expects.

MNIST was made by fitting each binary NIST digit into a 20x20 box (keeping its aspect ratio, with
antialiasing) and placing it in a 28x28 field so that its centre of mass lies at the centre. A model
trained on it has only ever seen light ink on a black background, cropped, scaled and centred that way,
so a raw picture has to be brought into the same form before it is classified.

That centring suits greyscale digits and objects on a plain background. Colour images (photographs such as
CIFAR-10's) and the user's own folder datasets are not made that way: their pictures are taken whole, converted
to RGB or greyscale and resized (`resized`), exactly as `seqvision.data.folder` makes a folder's images.

`prepare` is the one path from uploaded bytes to that array, shared by `seqvision predict`, the HTTP API
and the drawing page. The module uses numpy and Pillow only, so a server can import it cheaply.

Conventions: arrays are uint8 (height, width), or (height, width, 3) for colour; the centre of an H x W field
is ((H - 1) / 2, (W - 1) / 2) in pixel indices, i.e. (13.5, 13.5) for 28x28.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seqvision.errors import BlankImageError, ImageError

# Pillow format names tried by read_image, and how messages spell them.
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
FORMAT_LIST = "PNG, JPEG, BMP, GIF, TIFF or WebP"
DEFAULT_MAX_PIXELS = 25_000_000

# MNIST's digit box (20 of 28 pixels) as a fraction of the field.
MNIST_BOX_FRACTION = 20 / 28
# Pictures larger than this (longest side) are averaged down before analysis: the result has 20 pixels a side.
WORK_SIDE = 512
# A mark is ink only if it differs from the background by this many grey levels (of 255) ...
MIN_INK_CONTRAST = 32.0
# ... and by this many times the noise (both measured after a 3x3 average that hides single-pixel noise).
MIN_INK_TO_NOISE = 6.0
# Pixels count as ink above this fraction of the strongest mark (used for the bounding box).
INK_THRESHOLD = 0.25

# What decoders raise on damaged data (Pillow does not wrap them in one exception type).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error, zlib.error)


def read_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode PNG, JPEG, BMP, GIF (first frame), TIFF or WebP bytes into an upright, fully loaded image.

    The size is checked from the header, before any pixel data is decoded, so a huge picture or a
    decompression bomb (a small file claiming billions of pixels) costs no memory. Pillow's own bomb
    guard is kept too, with its warning made an error for this call only. Loading the pixels here makes
    truncated files fail here rather than later. EXIF orientation is applied, so phone photos are upright.
    """
    if not data:
        raise ImageError(f"the picture is empty (0 bytes); send the content of a {FORMAT_LIST} file.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"the picture claims too many pixels to decode safely ({_one_line(error)}); "
                             "scale it down to at most a few megapixels and send it again.") from None
        except UnidentifiedImageError:
            if (image_format := _format_from_signature(data)) is not None:
                raise _damaged(image_format, "its header cannot be read") from None
            raise ImageError(f"the data is not a picture in a supported format ({FORMAT_LIST}): it starts with "
                             f"{bytes(data[:12])!r}; save or export the picture in one of these formats.") from None
        except DECODE_ERRORS as error:
            raise _damaged(None, error) from None
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"the picture is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), more "
                             f"than the {max_pixels / 1e6:g} megapixels accepted; scale it down (a digit needs "
                             "only a few hundred pixels a side) and send it again.")
        if width * height == 0:
            raise _damaged(image.format, f"its header says {width}x{height} pixels")
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"the picture claims too many pixels to decode safely ({_one_line(error)}); "
                             "scale it down to at most a few megapixels and send it again.") from None
        except DECODE_ERRORS as error:
            raise _damaged(image.format, error) from None
    return _upright(image)


def to_greyscale(image: Image.Image) -> np.ndarray:
    """Luminance as a uint8 (height, width) array, with transparency composited on white.

    A drawing saved with a transparent background is meant to be seen on a page, so dark strokes on
    transparency become dark-on-light. Only when that would erase the drawing (light strokes on
    transparency, e.g. from a canvas shown on a dark page) is it composited on black instead.
    16-bit and floating-point pictures are scaled to 0-255 rather than clipped.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        return _to_uint8(np.asarray(image, dtype=np.float64) / 257.0)
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max(initial=0.0))
        scale = 255.0 if mode == "F" and top <= 1.0 else 1 / 257.0 if top > 255 else 1.0
        return _to_uint8(values * scale)
    if mode == "LAB":
        return np.asarray(image.getchannel("L"), dtype=np.uint8).copy()
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    try:
        if has_alpha:
            image = image.convert("RGBA")
            has_alpha = image.getchannel("A").getextrema()[0] < 255
        if not has_alpha:
            opaque = image if mode == "L" else image.convert("L") if mode in ("RGB", "RGBA", "1") else \
                image.convert("RGB").convert("L")
            return np.asarray(opaque, dtype=np.uint8).copy()
    except ValueError as error:
        raise ImageError(f"cannot convert a picture in colour mode {mode} to greyscale ({_one_line(error)}); "
                         "save it as an RGB or greyscale picture.") from None
    on_white = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("L")
    low, high = on_white.getextrema()
    if high - low < (255 - MIN_INK_CONTRAST) / 2:  # only then can black show the strokes twice as clearly
        on_black = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image).convert("L")
        black_low, black_high = on_black.getextrema()
        if black_high - black_low > 2 * (high - low) + MIN_INK_CONTRAST:
            return np.asarray(on_black, dtype=np.uint8).copy()
    return np.asarray(on_white, dtype=np.uint8).copy()


def to_rgb(image: Image.Image) -> np.ndarray:
    """The picture as a uint8 (height, width, 3) RGB array, transparency composited on white as a page shows it.
    16-bit and floating-point pictures (greyscale modes) are scaled as `to_greyscale` scales them."""
    if image.mode.startswith("I") or image.mode == "F":
        return np.repeat(to_greyscale(image)[..., None], 3, axis=2)
    try:
        rgba = image.convert("RGBA")
    except ValueError as error:
        raise ImageError(f"cannot convert a picture in colour mode {image.mode} to RGB ({_one_line(error)}); "
                         "save it as an RGB or greyscale picture.") from None
    on_white = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), rgba)
    return np.asarray(on_white.convert("RGB"), dtype=np.uint8).copy()


def resized(pixels: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """The whole picture, greyscale (H, W) or RGB (H, W, 3), resized to image_shape's height and width.

    The aspect ratio is not kept: nothing is cropped and no padding colour is invented (a photograph has no
    background to pad with); a picture far from square is stretched. Bilinear filtering over the whole area
    each output pixel covers, so a large picture is averaged down rather than sampled.
    """
    height, width = _check_shape(image_shape[:2])
    if pixels.shape[:2] == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def mnist_style(grey: np.ndarray, image_shape: tuple[int, int] = (28, 28), *,
                box_fraction: float = MNIST_BOX_FRACTION) -> np.ndarray:
    """Make a greyscale picture look like an MNIST digit: light ink on 0, fitted into 20/28 of the field, centred.

    Steps: estimate the background (a smooth surface fitted to the border, so uneven lighting in a photo
    cancels), decide the polarity from which way the strongest marks depart from it, turn the ink into
    light-on-dark with the background at 0, crop to the ink's bounding box, scale it to fit a 20x20 box
    (for 28x28) keeping its aspect ratio, and shift it by whole pixels so its centre of mass lands at the
    centre, as MNIST was made. The ink's maximum is stretched to 255. A picture with no clear ink raises
    BlankImageError rather than returning a guess.
    """
    grey = _check_grey(grey)
    height, width = _check_shape(image_shape)
    work = _working_copy(grey)
    ink, signed = _ink_strength(work)
    smoothed = _box3(ink)
    peak = float(smoothed.max())
    noise = _noise_level(_box3(signed))
    if peak < max(MIN_INK_CONTRAST, MIN_INK_TO_NOISE * noise):
        raise BlankImageError(f"no digit found: no mark stands out from the background (the strongest differs by "
                              f"{peak:.0f} of 255 grey levels, the noise is {noise:.1f}; ink needs at least "
                              f"{MIN_INK_CONTRAST:.0f} and {MIN_INK_TO_NOISE:g}x the noise); send a picture with a "
                              "clearly visible digit, e.g. dark ink on light paper.")
    threshold = max(INK_THRESHOLD * peak, 3 * _noise_level(signed))
    # A pixel is ink if it is strong itself and not an isolated speck (its neighbourhood has ink too).
    mask = (ink > threshold) & (smoothed > threshold / 2)
    if not mask.any():
        raise BlankImageError("no digit found: no mark stands out from the noise of the picture; send a sharper "
                              "picture with a clearly visible digit.")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    # Saturate the ink at its typical strength (MNIST strokes are solid) and drop the faint background noise.
    low = threshold / 2
    level = max(float(np.percentile(ink[mask], 75)), low + 1.0)
    clean = np.clip((ink - low) / (level - low), 0.0, 1.0).astype(np.float32)

    box_h, box_w = max(1, round(height * box_fraction)), max(1, round(width * box_fraction))
    crop_h, crop_w = bottom - top, right - left
    scale = min(box_h / crop_h, box_w / crop_w)
    size = (min(box_w, max(1, round(crop_w * scale))), min(box_h, max(1, round(crop_h * scale))))
    # The box argument crops and scales in one step; the filter still reads the pixels around the box.
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    digit = np.asarray(Image.fromarray(clean).resize(size, resample, box=(left, top, right, bottom)))
    digit = np.clip(digit, 0.0, None)
    total = float(digit.sum())
    if total <= 0:
        raise BlankImageError("no digit found: the ink vanished when scaled to the digit box; send a picture in "
                              "which the digit is larger and clearly visible.")
    centre_y = float((digit.sum(axis=1) * np.arange(digit.shape[0])).sum()) / total
    centre_x = float((digit.sum(axis=0) * np.arange(digit.shape[1])).sum()) / total
    field = np.zeros((height, width), dtype=np.float32)
    _paste(field, digit, math.floor((height - 1) / 2 - centre_y + 0.5), math.floor((width - 1) / 2 - centre_x + 0.5))
    return _to_uint8(field * (255.0 / float(field.max())))


def as_is(pixels: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """The picture unchanged, for `--no-preprocess`: it must already have the model's size (and polarity)."""
    if len(image_shape) == 2:
        pixels = _check_grey(pixels)
    height, width = _check_shape(image_shape[:2])
    if pixels.shape[:2] != (height, width):
        raise ImageError(f"the picture is {pixels.shape[0]}x{pixels.shape[1]} pixels (height x width) but the model "
                         f"expects {height}x{width}; drop --no-preprocess to fit it to the model "
                         f"automatically, or resize it to {height}x{width} yourself.")
    return pixels


def prepare(data: bytes, image_shape: tuple[int, ...], *, preprocess: bool = True,
            box_fraction: float = MNIST_BOX_FRACTION, whole: bool = False,
            max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of a picture -> the uint8 array of image_shape a model takes; the one path every front end uses.

    Greyscale models get the MNIST treatment (`mnist_style`), with `box_fraction` the part of the side the
    dataset's objects fill (DatasetSpec.box_fraction). Colour models (image_shape (H, W, 3)) and, with `whole`,
    models of folder datasets get the whole picture `resized`, as their training images were made."""
    image = read_image(data, max_pixels=max_pixels)
    colour = len(image_shape) == 3
    pixels = to_rgb(image) if colour else to_greyscale(image)
    if not preprocess:
        return as_is(pixels, image_shape)
    if colour or whole:
        return resized(pixels, image_shape)
    return mnist_style(pixels, image_shape, box_fraction=box_fraction)


def _one_line(error: object) -> str:
    return " ".join(str(error).split()).rstrip(".") or type(error).__name__


def _format_from_signature(data: bytes) -> str | None:
    """The supported format whose magic bytes start data, so a damaged file is not called "not a picture"."""
    signatures = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
                  b"GIF89a": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and data[6:10] == bytes(4):  # BMP's two reserved fields are zero
        return "BMP"
    return next((name for magic, name in signatures.items() if data.startswith(magic)), None)


def _damaged(image_format: str | None, error: object) -> ImageError:
    kind = f"{image_format} picture" if image_format else "picture"
    return ImageError(f"the {kind} is truncated or corrupt ({_one_line(error)}); send the complete file again, "
                      "or open and re-save it with an image editor.")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a picture whose EXIF cannot be read is used as stored."""
    try:
        ImageOps.exif_transpose(image, in_place=True)  # in place keeps image.format for the caller
    except (*DECODE_ERRORS, TypeError):
        pass
    return image


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _check_grey(grey: np.ndarray) -> np.ndarray:
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8 or grey.size == 0:
        raise TypeError(f"expected a non-empty 2-D uint8 array (what to_greyscale returns), got {grey.dtype} "
                        f"with shape {grey.shape}")
    return grey


def _check_shape(image_shape: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(side) for side in image_shape)
    if height < 1 or width < 1:
        raise ValueError(f"image_shape must be two positive sizes, got {image_shape}")
    return height, width


def _working_copy(grey: np.ndarray) -> np.ndarray:
    """The picture as float32, averaged down by a whole factor if its longest side exceeds WORK_SIDE."""
    factor = math.ceil(max(grey.shape) / WORK_SIDE)
    if factor > 1:
        grey = np.asarray(Image.fromarray(grey).reduce(factor))
    return grey.astype(np.float32)


def _ink_strength(work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ink, signed): how much each pixel departs from the background towards the ink, 0-255, light-on-dark.

    Departures are divided by the room the background leaves (its brightness for dark ink, what is left
    to white for light ink): under uneven light, ink on paper is darker in proportion to the light falling
    on it, so this evens out a stroke that crosses a bright and a shaded part of a photo.
    """
    background = np.clip(_fit_background(work), 0.0, 255.0)
    departure = work - background
    smoothed = _box3(departure)
    if -float(smoothed.min()) > float(smoothed.max()):  # the strongest marks are darker: dark ink on light
        signed = -departure / np.maximum(background, MIN_INK_CONTRAST) * 255.0
    else:
        signed = departure / np.maximum(255.0 - background, MIN_INK_CONTRAST) * 255.0
    return np.clip(signed, 0.0, 255.0), signed


def _fit_background(work: np.ndarray) -> np.ndarray:
    """A quadratic surface fitted to the picture's border, ignoring outliers (ink that touches the border).

    A digit rarely covers the border, and lighting varies smoothly, so this models a uniform background,
    a gradient or vignetting alike; a constant (the border's median) is used for pictures too small to fit.
    """
    height, width = work.shape
    frame = max(1, round(0.03 * min(height, width)))
    border = np.zeros(work.shape, dtype=bool)
    border[:frame], border[-frame:], border[:, :frame], border[:, -frame:] = True, True, True, True
    ys, xs = np.nonzero(border)
    step = max(1, len(ys) // 4_000)
    ys, xs = ys[::step], xs[::step]
    values = work[ys, xs].astype(np.float64)
    constant = np.full(work.shape, float(np.median(values)), dtype=np.float32)
    if height < 8 or width < 8:
        return constant
    y, x = ys / (height - 1) * 2 - 1, xs / (width - 1) * 2 - 1
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    keep = np.abs(values - np.median(values)) <= max(3 * _noise_level(values), 4.0)
    for _ in range(3):
        if keep.sum() < 3 * design.shape[1]:
            return constant
        kept = design[keep]
        coefficients = np.linalg.lstsq(kept.T @ kept, kept.T @ values[keep], rcond=None)[0]
        residual = values - design @ coefficients
        keep = np.abs(residual) <= max(3 * _noise_level(residual[keep]), 4.0)
    gy = (np.arange(height, dtype=np.float32) / (height - 1) * 2 - 1)[:, None]
    gx = (np.arange(width, dtype=np.float32) / (width - 1) * 2 - 1)[None, :]
    c = coefficients.astype(np.float32)
    return c[0] + c[1] * gx + c[2] * gy + c[3] * gx * gx + c[4] * gx * gy + c[5] * gy * gy


def _noise_level(values: np.ndarray) -> float:
    """The standard deviation of Gaussian noise with the same median absolute deviation (robust to ink)."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def _box3(values: np.ndarray) -> np.ndarray:
    """A 3x3 moving average (edges repeated): single noisy pixels drop to a ninth, strokes keep their level."""
    padded = np.pad(values, 1, mode="edge")
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _paste(field: np.ndarray, digit: np.ndarray, top: int, left: int) -> None:
    """Copy digit into field at (top, left), clipping whatever falls outside the field."""
    height, width = field.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + digit.shape[0], height), min(left + digit.shape[1], width)
    if y0 < y1 and x0 < x1:
        field[y0:y1, x0:x1] = digit[y0 - top:y1 - top, x0 - left:x1 - left]
