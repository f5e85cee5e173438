"""A video clip on its way to vectors, beside the photos of the batch it travels in.

A clip is read as a few frames (:func:`clipsort.photos.decode.load_clip`); each frame is
prepared as a photo is and embedded in the same batch as the photos around it. The clip's
vector, which ``tag``, ``sort``, ``learn`` and ``eval`` judge, is the normalised mean of its
frames' vectors; the frames' own vectors (and their times) are kept in the cache beside it, so
that ``search`` ranks a clip by its best frame and says which (:mod:`clipsort.store.cache`).

Where one picture stands for a clip (the decode threads' hand-off to a review page's thumbnails,
its perceptual hash for ``dupes``), its middle frame does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort.photos.decode import load_clip, load_image
from clipsort.photos.formats import is_video

if TYPE_CHECKING:
    from clipsort.model.embed import Resolved


def read(path: Path, min_side: int | None) -> tuple[Any, tuple[float, ...]]:
    """A photo's picture and no times, or a clip's frames (a list of pictures) and their times
    in seconds. Raises :class:`clipsort.errors.DecodeError`."""
    if not is_video(path.name):
        return load_image(path, min_side=min_side), ()
    clip = load_clip(path, min_side)
    return [frame.picture for frame in clip.frames], tuple(frame.time for frame in clip.frames)


def main_picture(picture: Any) -> Any:
    """The picture that stands for a photo (itself) or a clip (its middle frame)."""
    if isinstance(picture, list):
        return picture[len(picture) // 2]
    return picture


def prepare(prepare_one: Callable[[Any], Any], picture: Any) -> Any:
    """The model's input for a photo's picture, or a list of them for a clip's frames."""
    if isinstance(picture, list):
        return [prepare_one(p) for p in picture]
    return prepare_one(picture)


def flattened(batch: Sequence[Resolved]) -> list[Any]:
    """The prepared pictures of a batch of photos and clips, in order, a clip's frames in a row."""
    items: list[Any] = []
    for resolved in batch:
        if resolved.times:
            items.extend(resolved.prepared)
        else:
            items.append(resolved.prepared)
    return items


def spread(batch: Sequence[Resolved], vectors: np.ndarray) -> None:
    """Give each photo of ``batch`` its row of ``vectors`` (embedded from :func:`flattened`), and
    each clip its frames' rows and their pooled vector."""
    at = 0
    for resolved in batch:
        if resolved.times:
            count = len(resolved.times)
            resolved.frame_vectors = vectors[at : at + count]
            resolved.vector = pooled(resolved.frame_vectors)
            at += count
        else:
            resolved.vector = vectors[at]
            at += 1


def pooled(frame_vectors: np.ndarray) -> np.ndarray:
    """A clip's vector: the mean of its frames' (unit) vectors, made unit length again, rounded
    as the cache keeps vectors (so a cached clip is judged as a fresh one)."""
    mean = np.asarray(frame_vectors, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm > 0:
        mean = mean / norm
    return np.asarray(mean, dtype=np.float16).astype(np.float32)
