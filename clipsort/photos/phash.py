"""Perceptual hashes: 64 bits that stay nearly the same when a picture is resized, re-encoded or
lightly edited, and differ in about half their bits between different pictures.

This is imagehash's ``phash`` (the DCT hash of Zauner's thesis, as pHash defines it): the
picture in grey at 32x32 (Lanczos), its 2-D DCT-II, the 8x8 lowest frequencies, each bit
set where the coefficient is above their median. Written here with numpy (a 32x32 matrix
product), because imagehash needs SciPy and PyWavelets, about 60 MB, for this one function;
tests/test_dupes.py checks that it gives imagehash's bits.

Hashes are computed from the upright picture the decoder hands the model, so a copy stored
rotated with an EXIF orientation, and the same pixels rotated for real, hash alike.

A copy whose pixels were turned by a quarter (an editor's "rotate", saved) hashes differently;
:func:`turned` gives, from a hash alone, the hash the picture turned by 90, 180 or 270 degrees
would have. Turning a picture transposes its DCT coefficients and changes the sign of the odd
rows; the bits are the coefficients' signs against their median, which is near 0, so the bits
are transposed and the odd rows' inverted. Only the coefficients nearest the median come out
wrong: on the corpus's camera photos the hash so derived is 4 bits from the turned picture's own
(median; 12 at most, against 22 at least between different pictures).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

#: Bits in a hash, and the side of the picture it is computed from.
BITS = 64
SIDE = 32
_LOW = 8


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """DCT-II as SciPy's ``dct(type=2, norm=None)`` computes it: ``2 * cos(pi * k * (2n + 1) / 2N)``."""
    k = np.arange(SIDE)[:, None]
    n = np.arange(SIDE)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * SIDE))


@lru_cache(maxsize=64)
def lanczos_matrix(size: int, side: int = SIDE) -> np.ndarray:
    """(side, size) weights of Pillow's Lanczos resampling from ``size`` pixels to ``side``, as
    Pillow computes them (support 3, widened by the scale, each row normalised), so that a
    decoder other than Pillow's (the GPU's) hashes the same picture to the same bits: one pass
    along each axis, rounded to 8 bits between, is what Pillow does."""
    scale = size / side
    widen = max(scale, 1.0)
    support = 3.0 * widen
    weights = np.zeros((side, size))
    for i in range(side):
        centre = (i + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), size)
        x = np.abs((np.arange(first, last) - centre + 0.5) / widen)
        w = np.where(x < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
        weights[i, first:last] = w / w.sum()
    return weights


def perceptual_hash(picture: Image.Image) -> int:
    """The picture's 64-bit perceptual hash, as a signed 64-bit integer (SQLite's INTEGER)."""
    from PIL import Image

    grey = picture.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return hash_of_grey(np.asarray(grey, dtype=np.float64))


def hash_of_grey(pixels: np.ndarray) -> int:
    """The hash of a picture already grey and ``SIDE`` x ``SIDE`` (the tensor decoder makes it so on the GPU)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    matrix = _dct_matrix()
    low = (matrix @ pixels @ matrix.T)[:_LOW, :_LOW]
    bits = (low > np.median(low)).ravel()
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << BITS) if value >= 1 << (BITS - 1) else value


_ODD_ROWS = np.repeat((np.arange(_LOW) % 2).astype(bool)[:, None], _LOW, axis=1)


def turned(hashes: np.ndarray, turns: int) -> np.ndarray:
    """The hashes (int64 array) of the pictures turned ``turns`` quarters counter-clockwise (as
    Pillow's ``rotate(90 * turns)`` and numpy's ``rot90`` turn), derived from the hashes alone."""
    unsigned = np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64).astype(">u8")
    bits = np.unpackbits(unsigned.view(np.uint8).reshape(-1, 8), axis=1).reshape(-1, _LOW, _LOW).astype(bool)
    for _ in range(turns % 4):
        bits = np.swapaxes(bits, 1, 2) ^ _ODD_ROWS
    packed = np.packbits(bits.reshape(-1, BITS), axis=1)
    return packed.view(">u8").astype(np.uint64).view(np.int64).reshape(np.shape(hashes))


def nearest_turns(hashes: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pair (``hashes[i]``, ``others[i]``): the quarter turns of the second picture that
    bring it nearest the first, and how many bits then differ (no turn where it is as near)."""
    every = np.stack([distances(hashes, turned(others, turns)) for turns in range(4)])
    turns = np.argmin(every, axis=0)  # the first of equals: unturned wins a tie
    return turns, np.take_along_axis(every, turns[None], axis=0)[0]


def distance(a: int, b: int) -> int:
    """How many of the 64 bits differ."""
    return ((a ^ b) & ((1 << BITS) - 1)).bit_count()


def distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Bits that differ between ``hashes[i]`` and ``others[i]`` (int64 arrays of the same shape)."""
    x = np.bitwise_xor(hashes.astype(np.int64), others.astype(np.int64)).view(np.uint64)
    as_bytes = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)
