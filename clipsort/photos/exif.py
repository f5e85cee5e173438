"""What a photo's metadata says: when it was taken, with which camera, whether it has GPS; and
the keywords it carries inside its own file (:func:`embedded_keywords`).

Read with exifread (JPEG, TIFF, HEIC, TIFF-based RAW, PNG, WebP; CR3 and RAF through the blocks
:func:`clipsort.photos.decode_raw.exif_blocks` finds), then Pillow for formats exifread does not
parse (AVIF, JPEG XL through their plugins), then the file's XMP packet and its IPTC block. The
date taken is the first of :data:`DATE_ORDER` (the Metadata Working Group's order, as photo apps
read it), then the file's modification time; which one was used is recorded, so a folder built
from an mtime is never mistaken for one built from the camera's clock. Times are the camera's
local time, as written, with their time zone where the field has one.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from clipsort.photos.formats import available, format_of, is_raw, register_plugins
from clipsort.safe_files import SIDECAR_LIMIT

#: (exifread key, the name exiftool and people use) of EXIF's dates, and of their time zones.
_DATE_TAGS = (
    ("EXIF DateTimeOriginal", "DateTimeOriginal"),
    ("EXIF DateTimeDigitized", "CreateDate"),
    ("Image DateTime", "DateTime"),
)
_OFFSET_TAGS = (
    ("EXIF OffsetTimeOriginal", "OffsetTimeOriginal"),
    ("EXIF OffsetTimeDigitized", "OffsetTimeDigitized"),
    ("EXIF OffsetTime", "OffsetTime"),
)
#: Pillow's EXIF tag numbers for the same fields (IFD0 and the Exif IFD).
_PIL_DATE_TAGS = (
    (0x9003, "DateTimeOriginal"), (0x9004, "CreateDate"), (0x0132, "DateTime"),
    (0x9011, "OffsetTimeOriginal"), (0x9012, "OffsetTimeDigitized"), (0x9010, "OffsetTime"),
)  # fmt: skip
#: Where the date taken is read, in order: the Metadata Working Group's guidelines (EXIF
#: DateTimeOriginal, XMP exif:DateTimeOriginal, XMP photoshop:DateCreated, IPTC Date Created with
#: Time Created), as photo apps read them; then, for files without any, when the picture was
#: digitized, then last changed (EXIF, then XMP). Each with the EXIF field holding its time zone.
DATE_ORDER = (
    ("DateTimeOriginal", "OffsetTimeOriginal"),
    ("XMP exif:DateTimeOriginal", ""),
    ("XMP photoshop:DateCreated", ""),
    ("IPTC DateCreated", ""),
    ("CreateDate", "OffsetTimeDigitized"),
    ("XMP xmp:CreateDate", ""),
    ("DateTime", "OffsetTime"),
    ("XMP xmp:ModifyDate", ""),
)
#: The fields of the guidelines' date taken: when none is there, the IPTC block is read too.
_TAKEN = ("DateTimeOriginal", "XMP exif:DateTimeOriginal", "XMP photoshop:DateCreated")
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


@dataclass(frozen=True)
class PhotoFacts:
    #: The date taken, as the camera's clock said it (the local time where it was taken).
    taken: datetime
    #: The field it came from (a name of :data:`DATE_ORDER`, ``CreateDate`` for a clip, or mtime).
    taken_source: str
    make: str | None = None
    model: str | None = None
    gps: bool = False
    #: The date's time zone where its field holds one (``+02:00``), else None.
    offset: str | None = None

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
            "taken_offset": self.offset,
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
    if parse_exif_date(fields.get("DateTimeOriginal", "")) is None:
        fields.update(_xmp_dates(path))
        if not any(parse_exif_date(fields.get(name, "")) for name in _TAKEN):
            fields.update(_iptc_date(path))
    taken: datetime | None = None
    source, offset = "mtime", None
    for name, offset_field in DATE_ORDER:
        text = fields.get(name, "")
        value = parse_exif_date(text)
        if value is not None:
            taken, source = value, name
            offset = _offset(fields.get(offset_field, "")) if offset_field else _offset(text, in_time=True)
            break
    return PhotoFacts(
        taken=taken if taken is not None else _mtime(path),
        taken_source=source,
        make=fields.get("Make") or None,
        model=fields.get("Model") or None,
        gps=fields.get("GPS") == "yes",
        offset=offset,
    )


def _offset(text: str, in_time: bool = False) -> str | None:
    """A time zone as ``+02:00`` from an EXIF offset field (``+02:00``), or from the end of a date
    (``...T10:00:00+02:00``, ``...Z``, IPTC's ``100000+0200``: ``in_time``); None when there is none."""
    text = text.strip().rstrip("\x00").strip()
    if in_time:
        clock = text.replace("T", " ").partition(" ")[2] or text
        if clock.endswith("Z"):
            return "+00:00"
        match = re.search(r"([+-])(\d{2}):?(\d{2})$", clock)
    else:
        match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if match is None or int(match.group(2)) > 14 or int(match.group(3)) >= 60:
        return None
    return f"{match.group(1)}{match.group(2)}:{match.group(3)}"


#: IPTC's Date Created and Time Created (record 2, datasets 55 and 60).
_IPTC_DATE, _IPTC_TIME = (2, 55), (2, 60)


def _iptc_date(path: Path) -> dict[str, str]:
    """IPTC's Date Created (``CCYYMMDD``) with its Time Created (``HHMMSS+HHMM``) as one date, for
    files that carry IPTC (JPEG, TIFF), read from the headers by Pillow."""
    try:
        from PIL import Image, IptcImagePlugin

        register_plugins()
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore")
            iptc = IptcImagePlugin.getiptcinfo(image) or {}
    except Exception:  # noqa: BLE001 - metadata is optional
        return {}
    day, clock = iptc.get(_IPTC_DATE), iptc.get(_IPTC_TIME)
    day = day[0] if isinstance(day, list) and day else day
    clock = clock[0] if isinstance(clock, list) and clock else clock
    if not isinstance(day, bytes) or not re.fullmatch(rb"\d{8}", day.strip()):
        return {}
    text = day.decode("ascii")
    date = f"{text[:4]}:{text[4:6]}:{text[6:8]}"
    match = re.fullmatch(rb"(\d{2})(\d{2})(\d{2})([+-]\d{4})?", clock.strip()) if isinstance(clock, bytes) else None
    if match is None:
        return {"IPTC DateCreated": date}
    hours, minutes, seconds, zone = (g.decode("ascii") if g else "" for g in match.groups())
    return {"IPTC DateCreated": f"{date} {hours}:{minutes}:{seconds}{zone}"}


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
        with open(path, "rb") as handle:
            fields = _exifread_of(handle)
    except OSError:
        return {}
    if not fields and is_raw(path.name):  # a RAW kind that keeps its EXIF in blocks of its own
        from clipsort.photos.decode_raw import exif_blocks

        for block, first_ifd in exif_blocks(path):
            fields.update(_exifread_of(io.BytesIO(block), first_ifd))
    return fields


def _exifread_of(handle: BinaryIO, first_ifd: bool = False) -> dict[str, str]:
    """The facts exifread finds in an open file (a TIFF block's own fields with ``first_ifd``: a
    CR3's CMT2 block is an Exif IFD in the place of the first)."""
    try:
        import exifread

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tags = exifread.process_file(handle, details=False)
    except Exception:  # noqa: BLE001 - exifread raises many kinds on odd files; metadata is optional
        return {}
    if first_ifd:
        tags = {key.replace("Image ", "EXIF ", 1) if key != "Image DateTime" else key: v for key, v in tags.items()}
    fields: dict[str, str] = {}
    for key, name in (*_DATE_TAGS, *_OFFSET_TAGS):
        if key in tags:
            fields[name] = _printable(tags[key])
    for key, name in (("Image Make", "Make"), ("Image Model", "Model")):
        if key in tags:
            fields[name] = _printable(tags[key]).strip()
    if any(key.startswith("GPS GPSLatitude") for key in tags):
        fields["GPS"] = "yes"
    return fields


#: Dates in an XMP packet embedded in the file, as attributes or elements -> their names in DATE_ORDER.
_XMP_DATES = (
    ("http://ns.adobe.com/exif/1.0/", "DateTimeOriginal", "XMP exif:DateTimeOriginal"),
    ("http://ns.adobe.com/photoshop/1.0/", "DateCreated", "XMP photoshop:DateCreated"),
    ("http://ns.adobe.com/xap/1.0/", "CreateDate", "XMP xmp:CreateDate"),
    ("http://ns.adobe.com/xap/1.0/", "ModifyDate", "XMP xmp:ModifyDate"),
)
#: The prefixes these namespaces usually take (``xap`` is the xmp namespace's older one).
_XMP_PREFIXES = {
    "http://ns.adobe.com/exif/1.0/": ("exif",),
    "http://ns.adobe.com/photoshop/1.0/": ("photoshop",),
    "http://ns.adobe.com/xap/1.0/": ("xmp", "xap"),
}
_XMP_VALUE = r"""{tag}(?:=["']([^"']*)["']|>([^<]*)<)"""


def _xmp_dates(path: Path) -> dict[str, str]:
    """Dates from the file's embedded XMP packet (files without EXIF, edited by Photoshop and
    others), found by their namespaces whatever prefixes the packet binds them to."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return {}
    start = head.find(b"<x:xmpmeta")
    if start < 0:
        return {}
    packet = head[start : head.find(b"</x:xmpmeta>", start) + 12].decode("utf-8", "replace")
    bound: dict[str, set[str]] = {}
    for prefix, uri in re.findall(r"""xmlns:([\w.-]+)=["']([^"']*)["']""", packet):
        bound.setdefault(uri, set()).add(prefix)
    fields: dict[str, str] = {}
    for uri, local, name in _XMP_DATES:
        for prefix in sorted(bound.get(uri, set()) | set(_XMP_PREFIXES[uri])):
            match = re.search(_XMP_VALUE.format(tag=re.escape(f"{prefix}:{local}")), packet)
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
