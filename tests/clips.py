"""Video clips made by the tests with PyAV (H.264 and the other encoders of its wheels): a
picture per frame, from a function of the time."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from shapes import make_picture


def write_clip(
    path: Path,
    picture_at: Callable[[float], np.ndarray | Image.Image],
    seconds: float = 3.0,
    size: tuple[int, int] = (320, 240),
    rotation: int = 0,
    created: str | None = "2024-05-01T10:00:00.000000Z",
    keyint: int = 250,
    rate: int = 24,
    codec: str = "libx264",
    bit_rate: int | None = None,
) -> Path:
    """A clip of ``seconds`` whose frame at time t is ``picture_at(t)`` (resized to ``size`` when
    it is not), one keyframe every ``keyint`` frames, a display rotation, a creation time."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(path), "w")
    if created:
        out.metadata["creation_time"] = created
    options = {"g": str(keyint), "keyint_min": str(keyint)} if codec == "libx264" else {}
    stream = out.add_stream(codec, rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if bit_rate:
        stream.bit_rate = bit_rate
    if rotation:
        stream.set_display_rotation(rotation)
    for i in range(int(seconds * rate)):
        picture = picture_at(i / rate)
        if isinstance(picture, Image.Image):
            picture = np.asarray(picture.convert("RGB").resize(size))
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def shape_clip(path: Path, colour: str, seed: int = 1, size: tuple[int, int] = (320, 240), **options: object) -> Path:
    """A clip of one picture of a ``colour`` shape (as the tiny model was trained on), held still."""
    picture = make_picture(colour, size, random.Random(seed))
    return write_clip(path, lambda t: picture, size=size, **options)  # type: ignore[arg-type]
