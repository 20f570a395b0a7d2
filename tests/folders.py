"""Real picture folders for the folder-dataset tests: PNG and JPEG files of mixed sizes and colour modes, written
with Pillow, in which each class is a shape in a colour of its own (so a small model can learn them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("disc", "bar", "cross")
COLOURS = {"disc": (230, 40, 40), "bar": (40, 200, 60), "cross": (50, 70, 240)}
MODES = ("RGB", "L", "RGBA", "P")


def draw_picture(name: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The class's shape in its colour on a dark, noisy background, `size` = (width, height)."""
    width, height = size
    noise = rng.integers(0, 50, (height, width, 3), dtype=np.uint8)
    picture = Image.fromarray(noise, "RGB")
    draw = ImageDraw.Draw(picture)
    box = (width // 5, height // 5, width - width // 5, height - height // 5)
    colour = COLOURS[name]
    if name == "disc":
        draw.ellipse(box, fill=colour)
    elif name == "bar":
        draw.rectangle((0, height // 3, width - 1, 2 * height // 3), fill=colour)
    else:
        draw.line((box[0], box[1], box[2], box[3]), fill=colour, width=max(2, width // 6))
        draw.line((box[0], box[3], box[2], box[1]), fill=colour, width=max(2, width // 6))
    return picture


def save(picture: Image.Image, path: Path, mode: str) -> None:
    """Save in `mode` (JPEG keeps only RGB and L)."""
    if path.suffix == ".jpg" and mode in ("RGBA", "P"):
        mode = "RGB"
    converted = picture.convert(mode) if mode != "P" else picture.convert("P", palette=Image.Palette.ADAPTIVE)
    converted.save(path)


def write_picture_folder(root: Path, per_class: int = 10, classes: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    """root/<class>/<n>.png|jpg, sizes 10 to 40 pixels a side, modes RGB, L, RGBA and P in turn."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            size = (int(rng.integers(10, 41)), int(rng.integers(10, 41)))
            suffix = ".jpg" if number % 3 == 2 else ".png"
            save(draw_picture(name, size, rng), folder / f"{number:03d}{suffix}", MODES[number % len(MODES)])
    return root
