"""Camera RAW files -> upright RGB pictures, through rawpy (LibRaw).

* The embedded JPEG preview is used when its short side is at least what the
  model needs: decoding it costs a few milliseconds, a raw decode a second.
* Otherwise the raw data is decoded at half size (LibRaw's 2x2 binning, camera
  white balance, 8 bits), which is still larger than any CLIP input.
* When LibRaw cannot decode the raw data (some compressions are unsupported) a
  smaller preview is used rather than failing the photo.
* Orientation: LibRaw's own decode applies the camera's orientation; a preview
  gets its own EXIF orientation, or else the RAW file's.
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
