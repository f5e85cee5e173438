"""What a photo's metadata says: when it was taken, with which camera, whether it has GPS.

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
    """Date taken (with its source), camera and GPS presence of ``path``. Never raises for bad metadata."""
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
        try:
            taken = datetime.fromtimestamp(os.stat(path).st_mtime)
        except (OSError, ValueError, OverflowError):
            taken = datetime(1970, 1, 1)
    return PhotoFacts(
        taken=taken,
        taken_source=source,
        make=fields.get("Make") or None,
        model=fields.get("Model") or None,
        gps=fields.get("GPS") == "yes",
    )


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
