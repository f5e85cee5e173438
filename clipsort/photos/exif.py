"""What a photo's metadata says: when it was taken, with which camera, whether it has GPS; and
the keywords it carries inside its own file (:func:`embedded_keywords`).

Read with exifread (JPEG, TIFF, HEIC, TIFF-based RAW, PNG, WebP), then Pillow for
formats exifread does not parse (AVIF, JPEG XL through their plugins). The date
taken is ``DateTimeOriginal``, then ``CreateDate`` (EXIF DateTimeDigitized), then
``DateTime`` (the last change), then the file's modification time; which one was
used is recorded, so a folder built from an mtime is never mistaken for one built
from the camera's clock. Times are the camera's local time, as written.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from clipsort.photos.formats import available, format_of, register_plugins
from clipsort.safe_files import SIDECAR_LIMIT

#: (exifread key, the name exiftool and people use), in order of preference.
_DATE_TAGS = (
    ("EXIF DateTimeOriginal", "DateTimeOriginal"),
    ("EXIF DateTimeDigitized", "CreateDate"),
    ("Image DateTime", "DateTime"),
)
#: Pillow's EXIF tag numbers for the same fields (IFD0 and the Exif IFD).
_PIL_DATE_TAGS = ((0x9003, "DateTimeOriginal"), (0x9004, "CreateDate"), (0x0132, "DateTime"))
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


@dataclass(frozen=True)
class PhotoFacts:
    taken: datetime
    #: DateTimeOriginal, CreateDate, DateTime or mtime.
    taken_source: str
    make: str | None = None
    model: str | None = None
    gps: bool = False

    @property
    def camera(self) -> str | None:
        """``Make Model`` without the maker twice (``NIKON Z 9``, not ``NIKON CORPORATION NIKON Z 9``)."""
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if not model:
            return make or None
        first = make.split()[0].casefold() if make else ""
        if not make or model.casefold().startswith(first):
            return model
        return f"{make} {model}"

    def to_json(self) -> dict[str, object]:
        return {
            "taken": self.taken.isoformat(sep=" "),
            "taken_source": self.taken_source,
            "make": self.make,
            "model": self.model,
            "camera": self.camera,
            "gps": self.gps,
        }


def parse_exif_date(text: str) -> datetime | None:
    """``2008:10:22 16:29:49`` (seconds and time optional) -> datetime; None for blank or impossible dates."""
    text = text.strip().rstrip("\x00").strip()
    if not text or text.startswith("0000"):
        return None
    date, _, time = text.replace("T", " ", 1).partition(" ")
    date = date.replace("-", ":")
    parts = date.split(":")
    if len(parts) != 3:
        return None
    clock = (re.split(r"[.+Z-]", time)[0] or "00:00:00").split(":")
    try:
        numbers = [int(p) for p in parts] + [int(c) for c in clock[:3]]
        numbers += [0] * (6 - len(numbers))
        return datetime(*numbers[:6])  # type: ignore[arg-type]
    except ValueError:
        return None


def read_facts(path: Path) -> PhotoFacts:
    """Date taken (with its source), camera and GPS presence of ``path``. Never raises for bad metadata.
    A clip's date is its container's creation time (QuickTime ``CreateDate``, kept in UTC, given in
    local time as phones and cameras mean it)."""
    fmt = format_of(path.name)
    if fmt is not None and fmt.video:
        return _clip_facts(path)
    fields = _exifread_fields(path) or _pillow_fields(path)
    if "DateTimeOriginal" not in fields:
        for name, text in _xmp_dates(path).items():
            fields.setdefault(name, text)
    taken: datetime | None = None
    source = "mtime"
    for _, name in _DATE_TAGS:
        value = parse_exif_date(fields.get(name, ""))
        if value is not None:
            taken, source = value, name
            break
    if taken is None:
        taken = _mtime(path)
    return PhotoFacts(
        taken=taken,
        taken_source=source,
        make=fields.get("Make") or None,
        model=fields.get("Model") or None,
        gps=fields.get("GPS") == "yes",
    )


def _clip_facts(path: Path) -> PhotoFacts:
    from clipsort.photos.video import read_facts as clip_facts

    facts = clip_facts(path)
    if facts.created is not None:
        return PhotoFacts(facts.created, "CreateDate", facts.make, facts.model)
    return PhotoFacts(_mtime(path), "mtime", facts.make, facts.model)


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime)
    except (OSError, ValueError, OverflowError):
        return datetime(1970, 1, 1)


def _exifread_fields(path: Path) -> dict[str, str]:
    try:
        import exifread

        with warnings.catch_warnings(), open(path, "rb") as handle:
            warnings.simplefilter("ignore")
            tags = exifread.process_file(handle, details=False)
    except Exception:  # noqa: BLE001 - exifread raises many kinds on odd files; metadata is optional
        return {}
    if not tags:
        return {}
    fields: dict[str, str] = {}
    for key, name in _DATE_TAGS:
        if key in tags:
            fields[name] = _printable(tags[key])
    for key, name in (("Image Make", "Make"), ("Image Model", "Model")):
        if key in tags:
            fields[name] = _printable(tags[key]).strip()
    if any(key.startswith("GPS GPSLatitude") for key in tags):
        fields["GPS"] = "yes"
    return fields


#: Dates in an XMP packet embedded in the file, as attributes or elements -> the EXIF name they stand for.
_XMP_DATES = (
    ("exif:DateTimeOriginal", "DateTimeOriginal"),
    ("photoshop:DateCreated", "DateTimeOriginal"),
    ("xmp:CreateDate", "CreateDate"),
    ("xmp:ModifyDate", "DateTime"),
)
_XMP_VALUE = r'{tag}(?:="([^"]*)"|>([^<]*)<)'


def _xmp_dates(path: Path) -> dict[str, str]:
    """Dates from the file's embedded XMP packet (files without EXIF, edited by Photoshop and others)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return {}
    start = head.find(b"<x:xmpmeta")
    if start < 0:
        return {}
    packet = head[start : head.find(b"</x:xmpmeta>", start) + 12].decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for tag, name in _XMP_DATES:
        match = re.search(_XMP_VALUE.format(tag=re.escape(tag)), packet)
        if match and name not in fields:
            fields[name] = match.group(1) or match.group(2) or ""
    return fields


def _printable(tag: object) -> str:
    text = str(getattr(tag, "printable", tag))
    return text.replace("\x00", "").strip()


def _pillow_fields(path: Path) -> dict[str, str]:
    try:
        from PIL import Image

        from clipsort.photos.formats import register_plugins

        register_plugins()
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore")
            exif = image.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
            gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # noqa: BLE001
        return {}
    fields: dict[str, str] = {}
    for number, name in _PIL_DATE_TAGS:
        value = sub.get(number) or exif.get(number)
        if isinstance(value, str):
            fields[name] = value
    for number, name in ((0x010F, "Make"), (0x0110, "Model")):
        value = exif.get(number)
        if isinstance(value, str) and value.strip("\x00 "):
            fields[name] = value.strip("\x00 ")
    if gps.get(2):
        fields["GPS"] = "yes"
    return fields


# ----------------------------------------------------------------------------- keywords inside the file
#
# A photo's XMP packet and its IPTC Keywords, read by Pillow from the file's headers (no pixel is
# decoded). The sidecar writer carries these keywords into the sidecar (docs/sidecars.md: Immich
# and digiKam would otherwise let the sidecar hide them). Formats: JPEG, TIFF (XMP and IPTC),
# PNG, WebP, HEIC/HEIF and AVIF (XMP). JPEG XL's plugin gives no XMP, and RAW files are not
# opened: for them, and for any file Pillow cannot open, nothing.

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
    if fmt.video:
        from clipsort.photos.video import xmp_packet

        packet = xmp_packet(photo, XMP_LIMIT)
        return EmbeddedKeywords(packet.rstrip(b"\x00") if packet else None, ())
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
