"""Image files -> upright RGB pictures, ready for a model's preprocessing.

* EXIF orientation is applied, so scores never depend on how a camera stored the
  pixels (rclip skips this when indexing).
* JPEGs are decoded at reduced size in the DCT (Pillow's draft mode) when the
  model needs fewer pixels than the file has; other formats are reduced with an
  exact box filter. The short side always stays at or above ``min_side``.
* Every Pillow mode becomes RGB: transparency is composited onto white, 16-bit
  and float images are scaled to 8 bits, animations give their first frame.
* A video is judged by a few frames (:func:`load_clip`, :mod:`clipsort.photos.video`); where one
  picture stands for it (a thumbnail, ``dupes``), its middle frame does.

Failures raise :class:`clipsort.errors.DecodeError` with a reason a person can act on.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from clipsort.errors import DecodeError
from clipsort.photos.formats import Format, available, format_of, register_plugins
from clipsort.safe_files import not_regular_reason

if TYPE_CHECKING:
    from clipsort.photos.video import Clip

_ORIENTATION_TAG = 0x0112
#: EXIF orientation -> the transpose that makes the picture upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WHITE = (255, 255, 255)


def exif_orientation(image: Image.Image, path: Path) -> int:
    """The EXIF orientation (1-8), 1 when absent or unreadable.

    Pillow reads it for almost every file; for EXIF blocks Pillow rejects, exifread
    (more forgiving with broken maker notes) gets a second try.
    """
    try:
        value = image.getexif().get(_ORIENTATION_TAG)
        if isinstance(value, int) and 1 <= value <= 8:
            return value
        if value is None:
            return 1
    except Exception:  # noqa: BLE001 - any broken EXIF means "unknown", never a failed photo
        pass
    return _exifread_orientation(path)


def _exifread_orientation(path: Path) -> int:
    try:
        import exifread

        with open(path, "rb") as handle:
            tags = exifread.process_file(handle, details=False, stop_tag="Orientation")
        tag = tags.get("Image Orientation")
        value = int(tag.values[0]) if tag is not None and tag.values else 1
    except Exception:  # noqa: BLE001
        return 1
    return value if 1 <= value <= 8 else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent pixels become white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        top = float(values.max()) if values.size else 0.0
        if image.mode == "F" and top <= 1.0:
            scaled = values * 255.0
        elif top <= 255.0:
            scaled = values
        elif top <= 65535.0:
            scaled = values / 257.0
        else:
            scaled = values * (255.0 / top)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def default_max_megapixels(workers: int) -> int:
    """A pixel cap that keeps ``workers`` decodes of 4 bytes a pixel within half the available memory."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 << 30
    megapixels = available // 2 // max(workers, 1) // 4 // 1_000_000
    return int(min(max(megapixels, 24), 1000))


def set_max_megapixels(megapixels: float) -> None:
    """Refuse images of more pixels than this (decompression bombs, absurd dimensions)."""
    # load_image checks the dimensions in the header, before any pixel is decoded, and names
    # them in its message; Pillow's own check (a warning, then an error at twice its limit)
    # would only say less, so it is switched off once clipsort's cap is set.
    global _MAX_PIXELS
    _MAX_PIXELS = int(megapixels * 1_000_000)
    Image.MAX_IMAGE_PIXELS = None


_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def max_pixels() -> int:
    """The pixel cap in force (see :func:`set_max_megapixels`)."""
    return _MAX_PIXELS


def reduction(width: int, height: int, min_side: int | None) -> int:
    """By how much :func:`load_image` shrinks a JPEG of ``width`` x ``height`` for ``min_side``:
    the draft's DCT scale (1, 2, 4 or 8, as Pillow chooses it) times :func:`_finish`'s whole factor.
    The tensor decoder (:mod:`clipsort.photos.decode_tensor`) reduces by the same amount."""
    if not min_side:
        return 1
    fits = min(width // min_side, height // min_side)
    scale = next(s for s in (8, 4, 2, 1) if fits >= s or s == 1)
    short = min((width + scale - 1) // scale, (height + scale - 1) // scale)
    factor = short // min_side
    return scale * (factor if factor >= 2 else 1)


def load_image(path: Path | str, min_side: int | None = None) -> Image.Image:
    """Decode ``path`` to an upright RGB picture whose short side is at least ``min_side``.

    ``min_side=None`` decodes at full size.
    """
    path = Path(path)
    register_plugins()
    fmt = format_of(path.name)
    if fmt is not None and not available(fmt):
        raise DecodeError(path, f"{fmt.name} files need {fmt.reader}: {fmt.install}")
    if not (_capturing and fmt is not None and fmt.name in _NOISY):
        return _load(path, fmt, min_side)
    with _library_lines() as said:
        try:
            return _load(path, fmt, min_side)
        except DecodeError as exc:
            failure = exc
    if said:  # what the C library said of this file, as part of its message (dropped when it decodes)
        lines = "; ".join(said[:3]) + (f"; and {len(said) - 3} more" if len(said) > 3 else "")
        raise DecodeError(path, f"{failure.reason} ({_NOISY[fmt.name]} says: {lines})") from None
    raise failure


#: Formats whose C library prints its warnings on the process's stderr, and that library.
_NOISY = {"TIFF": "libtiff"}
_capturing = False
_CAPTURE_LOCK = threading.Lock()
#: The most a C library's lines about one file that are read.
_SAID_LIMIT = 4096


def capture_library_output() -> None:
    """Take what C libraries print on file descriptor 2 while they decode a file of a noisy format
    into that file's message (:func:`load_image`), so that a run's stderr holds only clipsort's own
    lines. Called by the command line once its own output goes to a copy of that descriptor (a
    library that writes to stderr itself is left as it is). Files of those formats are then decoded
    one at a time: the descriptor is the process's."""
    global _capturing
    _capturing = True


@contextlib.contextmanager
def _library_lines() -> Iterator[list[str]]:
    """File descriptor 2 pointed at a scratch file for the block; its lines are in the list after."""
    said: list[str] = []
    with _CAPTURE_LOCK, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(_SAID_LIMIT).decode("utf-8", "replace")
            # each line once, without the stand-in file name Pillow gives libtiff
            lines = (line.strip().removeprefix("tempfile.tif: ") for line in text.splitlines())
            said.extend(dict.fromkeys(line for line in lines if line))


def _load(path: Path, fmt: Format | None, min_side: int | None) -> Image.Image:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the decoder for ever
            raise DecodeError(path, not_regular_reason(st.st_mode))
        size = st.st_size
        if size == 0:
            raise DecodeError(path, "empty file (0 bytes)")
        if fmt is not None and fmt.raw:
            from clipsort.photos.decode_raw import load_raw

            picture, orientation = load_raw(path, min_side, _MAX_PIXELS)
            return _finish(picture, orientation, min_side)
        if fmt is not None and fmt.video:  # a clip's picture is its middle frame (a thumbnail, dupes)
            return _clip(path, min_side, count=1).frames[0].picture
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and ICC warnings are not the user's problem
            with Image.open(path) as image:
                width, height = image.size
                if width * height > _MAX_PIXELS:
                    raise DecodeError(
                        path,
                        f"too large to decode safely: {width}x{height} is {width * height / 1e6:.0f} megapixels "
                        f"(limit {_MAX_PIXELS / 1e6:.0f}; see --max-megapixels)",
                    )
                if image.format == "HEIF":
                    orientation = 1  # libheif applies the file's rotation and mirroring itself
                    if min_side:
                        image.draft("RGB", (min_side, min_side))  # an embedded thumbnail, when one is large enough
                else:
                    orientation = exif_orientation(image, path)
                if image.format == "JPEG":
                    if min_side:
                        image.draft("RGB", (min_side, min_side))
                    # One read and one call into the decoder instead of one per 64 KiB: the GIL
                    # is released once for the whole decode, so decoding goes on at full speed
                    # while another thread runs Python (loading the model, say).
                    image.decodermaxblock = max(image.decodermaxblock, min(size, 256 << 20))
                image.load()
                picture = to_rgb(image)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError(path, "not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:
        limit = f"limit {_MAX_PIXELS / 1e6:.0f} megapixels; see --max-megapixels"
        raise DecodeError(path, f"too large to decode safely ({limit})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if "truncated" in reason:
            reason = "truncated image file"
        raise DecodeError(path, f"cannot decode: {reason}") from None
    except MemoryError:
        raise DecodeError(path, "not enough memory to decode") from None
    return _finish(picture, orientation, min_side)


def load_clip(path: Path | str, min_side: int | None = None) -> Clip:
    """The frames a clip is judged by (:func:`clipsort.photos.video.read_clip`), each upright with
    its short side at least ``min_side``. Raises :class:`DecodeError` saying why for a clip that
    gives none."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DecodeError(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(path, not_regular_reason(st.st_mode))
    if st.st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    return _clip(path, min_side)


def _clip(path: Path, min_side: int | None, count: int | None = None) -> Clip:
    from clipsort.photos.video import UnreadableVideo, read_clip

    try:
        return read_clip(path, min_side, count, _MAX_PIXELS)
    except UnreadableVideo as exc:
        raise DecodeError(path, str(exc)) from None
    except MemoryError:
        raise DecodeError(path, "not enough memory to decode") from None


def dimensions(path: Path | str) -> tuple[int, int] | None:
    """Width and height of the upright picture, from the file's header (no pixels decoded); None
    for a file that cannot be read."""
    path = Path(path)
    fmt = format_of(path.name)
    if fmt is not None and fmt.raw:
        from clipsort.photos.decode_raw import raw_dimensions

        return raw_dimensions(path)
    if fmt is not None and fmt.video:
        from clipsort.photos.video import dimensions as clip_dimensions

        return clip_dimensions(path)
    register_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                orientation = 1 if image.format == "HEIF" else exif_orientation(image, path)
    except Exception:  # noqa: BLE001 - unreadable: no size
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _finish(picture: Image.Image, orientation: int, min_side: int | None) -> Image.Image:
    """Reduce ``picture`` to no less than ``min_side`` on its short side, then turn it upright."""
    if min_side:
        factor = min(picture.size) // min_side
        if factor >= 2:
            picture = picture.reduce(factor)
    transpose = _TRANSPOSE.get(orientation)
    if transpose is not None:
        picture = picture.transpose(transpose)
    return picture
