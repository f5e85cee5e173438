"""Whether two files hold the same picture: the check made before a photo with new metadata takes
the original's place (:mod:`clipsort.writes.in_photo`).

* **JPEG**: every segment but the application and comment segments (which hold EXIF, XMP, IPTC,
  ICC...) and everything from the start of the scan to the end of the file, byte for byte.
* **PNG**: every chunk but the text and time chunks (XMP lives in an ``iTXt`` chunk), byte for
  byte, in order.
* **Videos** (MP4, MOV, 3GP): every stream's packets (video, sound, the rest) with their times,
  byte for byte, in order; nothing decoded (:func:`clipsort.photos.video.streams_digest`).
* **Every other format** (TIFF, HEIF, AVIF, JPEG XL, WebP): decoded by Pillow, the same mode,
  size and pixels.
"""

from __future__ import annotations

import struct
from pathlib import Path

from clipsort.photos.formats import format_of, register_plugins

#: PNG chunks that hold metadata, not the picture.
_PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def same_picture(original: Path, candidate: Path) -> bool:
    """Whether ``candidate`` holds the same picture as ``original`` (see the module's rules).
    False for a file that cannot be read as its format."""
    fmt = format_of(original.name)
    try:
        if fmt is not None and fmt.name == "JPEG":
            return _jpeg_picture(original.read_bytes()) == _jpeg_picture(candidate.read_bytes())
        if fmt is not None and fmt.name == "PNG":
            return _png_picture(original.read_bytes()) == _png_picture(candidate.read_bytes())
        if fmt is not None and fmt.video:
            from clipsort.photos.video import streams_digest

            return streams_digest(original) == streams_digest(candidate)
        return _decoded(original) == _decoded(candidate)
    except (OSError, ValueError, SyntaxError, struct.error):
        return False


def _jpeg_picture(data: bytes) -> tuple[list[bytes], bytes]:
    """(the segments before the scan that are not APPn or COM, the bytes from the scan on)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    kept: list[bytes] = []
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ValueError("a JPEG segment does not start with a marker")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is the picture
            return kept, data[at:]
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            kept.append(data[at : at + 2])
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        segment = data[at : at + 2 + length]
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            kept.append(segment)
        at += 2 + length
    raise ValueError("a JPEG without a scan")


def _png_picture(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks: list[tuple[bytes, bytes]] = []
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if len(body) != length:
            raise ValueError("a PNG chunk is cut short")
        if kind not in _PNG_METADATA:
            chunks.append((kind, body))
        at += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _decoded(path: Path) -> tuple[str, tuple[int, int], bytes]:
    from PIL import Image

    register_plugins()
    with Image.open(path) as image:
        image.load()
        return image.mode, image.size, image.tobytes()
