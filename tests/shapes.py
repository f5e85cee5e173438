"""Synthetic pictures of coloured shapes, for training the tiny test CLIP and for tests.

Each picture shows one or more shapes of a single named colour on a neutral
background (plain grey level, a neutral gradient or neutral noise), so that the
colour name is the one thing a caption can be right or wrong about.
"""

from __future__ import annotations

import colorsys
import math
import random

from PIL import Image, ImageDraw, ImageFilter

#: Colour name -> (hue centre in degrees, half-width of the hue range).
COLOURS: dict[str, tuple[float, float]] = {
    "red": (0.0, 10.0),
    "orange": (30.0, 8.0),
    "yellow": (57.0, 8.0),
    "green": (122.0, 28.0),
    "cyan": (185.0, 12.0),
    "blue": (228.0, 18.0),
    "purple": (278.0, 14.0),
    "pink": (322.0, 12.0),
}
SHAPES = ("circle", "square", "triangle", "ellipse", "rectangle", "star", "diamond", "hexagon")


def colour_rgb(name: str, rng: random.Random) -> tuple[int, int, int]:
    """A random shade of the named colour: hue within its range, saturated, not too dark."""
    centre, half = COLOURS[name]
    hue = ((centre + rng.uniform(-half, half)) % 360.0) / 360.0
    sat = rng.uniform(0.6, 1.0)
    low = 0.75 if name == "yellow" else 0.45
    val = rng.uniform(low, 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def _neutral(rng: random.Random) -> tuple[int, int, int]:
    level = rng.choice([rng.randint(0, 255), 255, 255, 0, rng.randint(200, 255)])
    tint = [rng.randint(-12, 12) for _ in range(3)]
    return tuple(max(0, min(255, level + t)) for t in tint)  # type: ignore[return-value]


def _background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    kind = rng.random()
    if kind < 0.6:
        return Image.new("RGB", size, _neutral(rng))
    if kind < 0.85:
        a, b = _neutral(rng), _neutral(rng)
        grad = Image.linear_gradient("L").resize(size).rotate(rng.choice([0, 90, 180, 270]))
        return Image.composite(Image.new("RGB", size, a), Image.new("RGB", size, b), grad)
    noise = Image.effect_noise(size, rng.uniform(20, 60)).convert("RGB")
    return Image.blend(noise, Image.new("RGB", size, _neutral(rng)), 0.5)


def _polygon(
    cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None
) -> list[tuple[float, float]]:
    points = []
    steps = n * 2 if inner else n
    for i in range(steps):
        radius = r if (inner is None or i % 2 == 0) else r * inner
        angle = rot + 2 * math.pi * i / steps
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill, rng: random.Random
) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
    rot = rng.uniform(0, 2 * math.pi)
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ellipse":
        draw.ellipse((x0, y0 + (y1 - y0) * 0.2, x1, y1 - (y1 - y0) * 0.2), fill=fill)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, rot), fill=fill)
    elif shape == "rectangle":
        draw.rectangle((x0, y0 + (y1 - y0) * 0.25, x1, y1 - (y1 - y0) * 0.25), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, rot), fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, rot), fill=fill)
    else:  # star
        draw.polygon(_polygon(cx, cy, r, 5, rot, inner=0.5), fill=fill)


def make_picture(colour: str, size: tuple[int, int], rng: random.Random, shape: str | None = None) -> Image.Image:
    """One picture: 1-3 shapes of ``colour`` covering a good part of a neutral background."""
    width, height = size
    image = _background(size, rng)
    draw = ImageDraw.Draw(image)
    shape = shape or rng.choice(SHAPES)
    count = rng.choice([1, 1, 1, 2, 3])
    short = min(width, height)
    for _ in range(count):
        extent = rng.uniform(0.35, 0.85) * short / (1 if count == 1 else 1.4)
        x0 = rng.uniform(0, width - extent)
        y0 = rng.uniform(0, height - extent)
        draw_shape(draw, shape, (x0, y0, x0 + extent, y0 + extent), colour_rgb(colour, rng), rng)
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * short / 200))
    return image
