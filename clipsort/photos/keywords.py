"""What a photo carries inside its own file for keywords: its XMP packet and its IPTC Keywords,
read by Pillow from the file's headers (no pixel is decoded). The sidecar writer carries these
keywords into the sidecar (docs/sidecars.md: Immich and digiKam would otherwise let the sidecar
hide them).

Formats: JPEG, TIFF (XMP and IPTC), PNG, WebP, HEIC/HEIF and AVIF (XMP). JPEG XL's plugin gives
no XMP, and RAW files are not opened: for them, and for any file Pillow cannot open, nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipsort.photos.formats import available, format_of, register_plugins
from clipsort.safe_files import SIDECAR_LIMIT

#: The largest XMP packet taken from a photo: a sidecar's limit (docs/security.md).
XMP_LIMIT = SIDECAR_LIMIT
_IPTC_KEYWORDS = (2, 25)
_IPTC_CHARSET = (1, 90)
_UTF8 = b"\x1b%G"


@dataclass(frozen=True)
class EmbeddedKeywords:
    """A photo's own metadata for keywords: its XMP packet (bytes, None when it has none) and its
    IPTC Keywords."""

    xmp: bytes | None
    iptc: tuple[str, ...]


NONE = EmbeddedKeywords(None, ())


def embedded_keywords(photo: Path) -> EmbeddedKeywords:
    """The XMP packet and IPTC Keywords inside ``photo``; :data:`NONE` when it holds none, is a
    RAW file, or cannot be opened (a photo that cannot be read fails where it is decoded)."""
    fmt = format_of(photo.name)
    if fmt is None or fmt.raw or not available(fmt):
        return NONE
    from PIL import Image, IptcImagePlugin

    register_plugins()
    try:
        with Image.open(photo) as image:
            xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
            tags = getattr(image, "tag_v2", None)
            if xmp is None and tags is not None:
                xmp = tags.get(700)
            iptc = IptcImagePlugin.getiptcinfo(image) if fmt.name in ("JPEG", "TIFF") else None
    except Exception:  # noqa: BLE001 - Pillow and its plugins raise many kinds for files they cannot open
        return NONE
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if not isinstance(xmp, bytes) or not xmp.strip(b"\x00 \r\n\t") or len(xmp) > XMP_LIMIT:
        xmp = None
    keywords: tuple[str, ...] = ()
    if isinstance(iptc, dict):
        raw = iptc.get(_IPTC_KEYWORDS) or []
        raw = raw if isinstance(raw, list) else [raw]
        charset = iptc.get(_IPTC_CHARSET)
        encoding = "utf-8" if isinstance(charset, bytes) and charset.startswith(_UTF8) else "latin-1"
        keywords = tuple(k.decode(encoding, "replace") for k in raw if isinstance(k, bytes) and k.strip())
    return EmbeddedKeywords(xmp.rstrip(b"\x00") if xmp else None, keywords)
