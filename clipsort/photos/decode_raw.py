"""Camera RAW files -> upright RGB pictures, through rawpy (LibRaw).

* The embedded JPEG preview is used when its short side is at least what the
  model needs: decoding it costs a few milliseconds, a raw decode a second.
* Otherwise the raw data is decoded at half size (LibRaw's 2x2 binning, camera
  white balance, 8 bits), which is still larger than any CLIP input.
* When LibRaw cannot decode the raw data (some compressions are unsupported) a
  smaller preview is used rather than failing the photo.
* Orientation: LibRaw's own decode applies the camera's orientation; a preview
  gets its own EXIF orientation, or else the RAW file's.
* Where the RAW kinds that are not TIFF-structured keep their EXIF (:func:`exif_blocks`: Canon's
  CR3, Fujifilm's RAF), for :mod:`clipsort.photos.exif` to read their date and camera.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipsort.errors import DecodeError

#: LibRaw's ``sizes.flip`` -> the EXIF orientation that means the same turn.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def load_raw(path: Path, min_side: int | None, max_pixels: int) -> tuple[Image.Image, int]:
    """(picture, EXIF orientation still to apply) for the RAW file ``path``."""
    try:
        import rawpy
    except ImportError:
        raise DecodeError(path, "camera RAW files need rawpy: pip install rawpy") from None
    try:
        with rawpy.imread(str(path)) as raw:
            preview = _preview(raw, rawpy, min_side)
            orientation = _FLIP_TO_ORIENTATION.get(int(raw.sizes.flip), 1)
            if preview is not None and min_side is not None and min(preview.size) >= min_side:
                return _oriented_preview(preview, orientation)
            try:
                return _develop(raw, path, min_side, max_pixels), 1
            except rawpy.LibRawError as exc:
                if preview is None:
                    raise
                reason = _reason(exc)
                if "memory" in reason:
                    raise
                return _oriented_preview(preview, orientation)
    except DecodeError:
        raise
    except rawpy.LibRawIOError:
        raise DecodeError(path, "cannot decode RAW: the file is cut short or unreadable") from None
    except (rawpy.LibRawFileUnsupportedError, rawpy.NotSupportedError):
        raise DecodeError(path, "cannot decode RAW: not a RAW file LibRaw can read") from None
    except rawpy.LibRawError as exc:
        raise DecodeError(path, f"cannot decode RAW: {_reason(exc)}") from None
    except MemoryError:
        raise DecodeError(path, "not enough memory to decode") from None


def raw_dimensions(path: Path) -> tuple[int, int] | None:
    """Width and height of the upright picture of a RAW file (LibRaw's output size), or None."""
    try:
        import rawpy

        with rawpy.imread(str(path)) as raw:
            width, height, flip = int(raw.sizes.width), int(raw.sizes.height), int(raw.sizes.flip)
    except Exception:  # noqa: BLE001 - any file LibRaw cannot open has no size to tell
        return None
    return (height, width) if flip in (5, 6) else (width, height)


def _reason(exc: Exception) -> str:
    text = exc.args[0] if exc.args else type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


def _preview(raw: Any, rawpy: Any, min_side: int | None) -> Image.Image | None:
    """The embedded preview (the largest LibRaw offers), decoded; None when there is none."""
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = Image.open(io.BytesIO(thumb.data))
                if min_side:
                    image.draft("RGB", (min_side, min_side))
                image.load()
            return image
        if thumb.format == rawpy.ThumbFormat.BITMAP:
            return Image.fromarray(np.ascontiguousarray(thumb.data)).convert("RGB")
    except (OSError, ValueError, SyntaxError):
        return None
    return None


def _oriented_preview(preview: Image.Image, raw_orientation: int) -> tuple[Image.Image, int]:
    try:
        own = preview.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - broken EXIF in a preview: use the RAW's
        own = None
    orientation = own if isinstance(own, int) and 2 <= own <= 8 else raw_orientation
    return preview.convert("RGB"), orientation


def _develop(raw: Any, path: Path, min_side: int | None, max_pixels: int) -> Image.Image:
    half = min_side is not None
    width, height = int(raw.sizes.width), int(raw.sizes.height)
    pixels = width * height // (4 if half else 1)
    if pixels > max_pixels:
        raise DecodeError(
            path,
            f"too large to decode safely: {pixels / 1e6:.0f} megapixels (limit {max_pixels / 1e6:.0f};"
            " see --max-megapixels)",
        )
    rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8)
    return Image.fromarray(rgb)


#: Canon's CR3 keeps its TIFF blocks in a box of this UUID inside ``moov``: CMT1 (the first IFD:
#: make, model) and CMT2 (the Exif IFD: the dates).
_CANON_UUID = bytes.fromhex("85C0B687820F11E08111F4CE462B6A48")
#: The most read of a block, or of the head of a preview (its EXIF lives in its first 64 KiB).
_BLOCK_LIMIT = 1 << 20


def exif_blocks(path: Path) -> list[tuple[bytes, bool]]:
    """The blocks of a RAW that hold its EXIF where a TIFF reader does not look: each as (bytes,
    whether the block is an Exif IFD standing where a first IFD is). Fujifilm's RAF: the head of
    the JPEG it holds; Canon's CR3: its CMT1 and CMT2 blocks. Empty for other files, and for any
    that cannot be read."""
    from clipsort.photos.video import iso_boxes

    blocks: list[tuple[bytes, bool]] = []
    try:
        with open(path, "rb") as handle:
            head = handle.read(100)
            if head.startswith(b"FUJIFILMCCD-RAW") and len(head) >= 92:
                offset, length = int.from_bytes(head[84:88], "big"), int.from_bytes(head[88:92], "big")
                handle.seek(offset)
                return [(handle.read(min(length, _BLOCK_LIMIT)), False)]
            if head[4:12] != b"ftypcrx ":
                return []
            size = handle.seek(0, 2)
            for kind, start, end in iso_boxes(handle, 0, size):
                if kind != b"moov":
                    continue
                for inner, inner_start, inner_end in iso_boxes(handle, start, end):
                    handle.seek(inner_start)
                    if inner != b"uuid" or handle.read(16) != _CANON_UUID:
                        continue
                    for block, block_start, block_end in iso_boxes(handle, inner_start + 16, inner_end):
                        if block in (b"CMT1", b"CMT2") and block_end - block_start <= _BLOCK_LIMIT:
                            handle.seek(block_start)
                            blocks.append((handle.read(block_end - block_start), block == b"CMT2"))
    except (OSError, ValueError):
        return blocks
    return blocks
