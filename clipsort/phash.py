"""Perceptual hashes: 64 bits that stay nearly the same when a picture is resized, re-encoded or
lightly edited, and differ in about half their bits between different pictures.

This is imagehash's ``phash`` (the DCT hash of Zauner's thesis, as pHash defines it): the
picture in grey at 32x32 (Lanczos), its 2-D DCT-II, the 8x8 lowest frequencies, each bit
set where the coefficient is above their median. Written here with numpy (a 32x32 matrix
product), because imagehash needs SciPy and PyWavelets, about 60 MB, for this one function;
tests/test_dupes.py checks that it gives imagehash's bits.

Hashes are computed from the upright picture the decoder hands the model, so a copy stored
rotated with an EXIF orientation, and the same pixels rotated for real, hash alike.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

#: Bits in a hash, and the side of the picture it is computed from.
BITS = 64
_SIDE = 32
_LOW = 8


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """DCT-II as SciPy's ``dct(type=2, norm=None)`` computes it: ``2 * cos(pi * k * (2n + 1) / 2N)``."""
    k = np.arange(_SIDE)[:, None]
    n = np.arange(_SIDE)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * _SIDE))


def perceptual_hash(picture: Image.Image) -> int:
    """The picture's 64-bit perceptual hash, as a signed 64-bit integer (SQLite's INTEGER)."""
    from PIL import Image

    grey = picture.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    matrix = _dct_matrix()
    low = (matrix @ pixels @ matrix.T)[:_LOW, :_LOW]
    bits = (low > np.median(low)).ravel()
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << BITS) if value >= 1 << (BITS - 1) else value


def distance(a: int, b: int) -> int:
    """How many of the 64 bits differ."""
    return ((a ^ b) & ((1 << BITS) - 1)).bit_count()


def distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Bits that differ between ``hashes[i]`` and ``others[i]`` (int64 arrays of the same shape)."""
    x = np.bitwise_xor(hashes.astype(np.int64), others.astype(np.int64)).view(np.uint64)
    as_bytes = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)
