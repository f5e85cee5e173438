"""Keywords written into the photo file itself (``tag --into photo``), never at the photo's cost.

The photo's XMP packet is merged exactly as a sidecar is (:func:`clipsort.writes.sidecar.merge_xmp`:
keywords clipsort did not write are kept, ``--mode`` means the same), and in JPEG and TIFF, which
hold IPTC, its IPTC Keywords follow (UTF-8 declared). Only metadata changes:

1. ExifTool writes a new file beside the photo (``.NAME.<random>.clipsort-tmp``), leaving the
   photo as it is;
2. the new file is flushed to disk, then checked: it holds the same picture
   (:func:`clipsort.photos.image_data.same_picture`) and reads back the keywords written;
3. the photo is checked unchanged since it was read, and the new file is renamed over it (one
   atomic step), then the folder is flushed.

A run killed at any moment leaves the photo as it was or fully tagged; a temporary file left by
a killed run is removed the next time that photo is written. A photo clipsort may not replace
whole is refused with its reason (another user's file, a file with several names, a link), and
is tagged in its sidecar instead by the caller.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from clipsort.errors import ClipsortError, FileFailure
from clipsort.photos.exif import XMP_LIMIT
from clipsort.photos.formats import format_of
from clipsort.photos.image_data import same_picture
from clipsort.safe_files import TEMP_SUFFIX, temp_prefix
from clipsort.store.journal import Journal
from clipsort.writes.exiftool import ExifTool, ExifToolError
from clipsort.writes.sidecar import FIELDS, NEW_XMP, Keywords, keywords_in, merge_xmp, parse_xmp
from clipsort.writes.xmp_dom import (
    NS_CLIPSORT,
    NS_RDF,
    append_list,
    append_text,
    elements,
    list_items,
    remove_all,
    serialise,
    set_items,
)

#: Formats whose keywords clipsort writes inside the file: format name -> (ExifTool's file
#: type, whether the format holds IPTC).
IN_FILE_FORMATS: dict[str, tuple[str, bool]] = {
    "JPEG": ("JPG", True),
    "TIFF": ("TIF", True),
    "PNG": ("PNG", False),
    "WebP": ("WEBP", False),
    "HEIC/HEIF": ("HEIC", False),
    "AVIF": ("AVIF", False),
    "JPEG XL": ("JXL", False),
    # XMP in the movie's metadata (where Adobe's apps, digiKam and exiftool read it); the streams'
    # packets are checked byte for byte before the clip is replaced
    "MP4 video": ("MP4", False),
    "QuickTime video": ("MOV", False),
    "3GP video": ("3GP", False),
}
_TOKEN_LENGTH = 16  # hex digits of a temporary file's random part
#: The largest record of a photo's keywords kept for undo (a journal line may hold 1 MiB).
UNDO_RECORD_LIMIT = 512 * 1024


def in_file_support() -> dict[str, str]:
    """For ``clipsort formats``: per format name, ``""`` when ``tag --into photo`` writes its
    keywords inside the file on this installation, else why not (and what to install)."""
    from clipsort.photos.formats import FORMATS

    try:
        with ExifTool() as exiftool:
            writable, version = exiftool.writable_types(), exiftool.version
    except ExifToolError:
        writable, version = set(), ""
    support = {}
    for fmt in FORMATS:
        known = IN_FILE_FORMATS.get(fmt.name)
        if fmt.raw:
            support[fmt.name] = "RAW: a sidecar (DNG inside with --into-dng)"
        elif known is None:
            support[fmt.name] = "holds no keywords clipsort writes: a sidecar"
        elif not version:
            support[fmt.name] = "needs exiftool (apt install libimage-exiftool-perl, brew install exiftool)"
        elif known[0] not in writable:
            support[fmt.name] = f"exiftool {version} cannot write it: a sidecar"
        else:
            support[fmt.name] = ""
    return support


class InPhotoError(FileFailure):
    """Keywords cannot be written into this photo; it is left as it was."""


class NotRewritable(InPhotoError):
    """A photo clipsort does not rewrite, left as it was: one it may not replace whole (read-only,
    a link, several names, another user's), or one ExifTool declines to write (a version of the
    format it does not know yet). Its keywords go to its sidecar."""


@dataclass(frozen=True)
class InFile:
    """The keywords a photo carries in the file."""

    xmp: str | None
    iptc: tuple[str, ...]


class PhotoWriter:
    """Writes keywords into photos through one ExifTool process (see the module's steps)."""

    def __init__(self, exiftool: ExifTool, dng: bool = False) -> None:
        self.exiftool = exiftool
        self.dng = dng
        self.writable = exiftool.writable_types()
        self._scratch = Path(tempfile.mkdtemp(prefix="clipsort-xmp-"))  # private (0700)

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)

    def cannot_write(self, photo: Path) -> str | None:
        """Why keywords of ``photo``'s format cannot go inside it here; None when they can."""
        fmt = format_of(photo.name)
        if fmt is None:
            return "not a known image format"
        if fmt.raw:
            if photo.suffix.lower() == ".dng" and self.dng and "DNG" in self.writable:
                return None
            return "camera RAW files are never rewritten (DNG only with --into-dng)"
        known = IN_FILE_FORMATS.get(fmt.name)
        if known is None:
            return f"{fmt.name} files hold no keywords clipsort writes"
        if known[0] not in self.writable:
            return f"this exiftool ({self.exiftool.version}) cannot write {fmt.name}"
        return None

    def read(self, photo: Path) -> InFile:
        """The XMP packet and IPTC Keywords in ``photo`` (InPhotoError when ExifTool cannot read it)."""
        try:
            records = self.exiftool.read_json(["-b", "-XMP", "-IPTC:Keywords", os.fsencode(photo.absolute())])
        except ExifToolError as exc:
            raise InPhotoError(photo, f"cannot read its metadata: {exc}") from None
        record = records[0] if records else {}
        xmp = record.get("XMP")
        if isinstance(xmp, str) and xmp.startswith("base64:"):
            xmp = base64.b64decode(xmp[7:]).decode("utf-8", "replace")
        if isinstance(xmp, str):
            xmp = xmp.rstrip("\x00")  # some writers pad the packet with NULs (HEIF items)
            if len(xmp) > XMP_LIMIT:
                raise InPhotoError(photo, f"its XMP packet is larger than {XMP_LIMIT >> 10} KiB; left untouched")
        keywords = record.get("Keywords", [])
        keywords = keywords if isinstance(keywords, list) else [keywords]
        return InFile(xmp if isinstance(xmp, str) and xmp.strip() else None, tuple(str(k) for k in keywords))

    def planned(
        self, photo: Path, keywords: Keywords, root: str, model_name: str, append: bool
    ) -> tuple[InFile, InFile]:
        """(what ``photo`` holds now, what it would hold after the write)."""
        fmt = format_of(photo.name)
        holds_iptc = fmt is not None and IN_FILE_FORMATS.get(fmt.name, ("", False))[1]
        now = self.read(photo)
        try:
            merged = merge_xmp(now.xmp, keywords, root, model_name, append)
            before = keywords_in(now.xmp.encode("utf-8"))["clipsort"] if now.xmp else {}
            after = keywords_in(merged.encode("utf-8"))["clipsort"]
        except (ValueError, ExpatError, RecursionError) as exc:
            reason = exc if isinstance(exc, ValueError) else f"not valid XMP ({exc or 'nested too deeply'})"
            raise InPhotoError(photo, f"its XMP packet cannot be merged: {reason}; left untouched") from None
        iptc = now.iptc
        if holds_iptc:
            earlier = set(before.get("subject", []))
            kept = [k for k in now.iptc if k not in earlier]
            iptc = tuple(kept + [k for k in after.get("subject", []) if k not in kept])
        return now, InFile(merged, iptc)

    def write(
        self,
        photo: Path,
        keywords: Keywords,
        root: str,
        model_name: str,
        append: bool = False,
        journal: Callable[[], Journal] | None = None,
    ) -> bool:
        """Write ``keywords`` into ``photo``; False when it already holds them (left untouched).
        ``journal`` gives the run's journal (made when first asked for), which records what undo
        puts back before the photo is replaced."""
        before = _replaceable(photo)
        now, wanted = self.planned(photo, keywords, root, model_name, append)
        if _state(now) == _state(wanted):
            return False
        self._replace(photo, before, now, wanted, journal)
        return True

    def restore(self, photo: Path, undo: dict[str, Any]) -> None:
        """Put back the keyword fields and IPTC Keywords ``undo`` records (a journal's ``before``),
        by the same steps as a write; the picture and every other field stay as they are now."""
        before = _replaceable(photo)
        now = self.read(photo)
        xmp = None
        if undo["xmp"]:
            try:
                xmp = with_keyword_state(now.xmp, undo["fields"])
            except (ValueError, ExpatError, RecursionError) as exc:
                raise InPhotoError(photo, f"its XMP packet cannot be restored: {exc}; left as it is") from None
        self._replace(photo, before, now, InFile(xmp, tuple(undo["iptc"])), None)

    def _replace(
        self, photo: Path, before: os.stat_result, now: InFile, wanted: InFile, journal: Callable[[], Journal] | None
    ) -> None:
        _remove_stale_temps(photo)
        tmp = photo.with_name(f"{temp_prefix(photo.name)}{secrets.token_hex(_TOKEN_LENGTH // 2)}{TEMP_SUFFIX}")
        # Journaled (flushed) before the temporary file exists: a run killed at any later moment
        # leaves a record that names it, for recovery to remove, and says what undo puts back.
        undo = undo_record(now)
        if journal is not None and len(json.dumps(undo)) > UNDO_RECORD_LIMIT:
            raise NotRewritable(
                photo, f"it holds more keywords than clipsort keeps for undo ({UNDO_RECORD_LIMIT >> 10} KiB)"
            )
        written = journal() if journal is not None else None
        op = written.begin_retag(photo, undo, tmp) if written is not None else None
        try:
            self._write_copy(photo, tmp, now, wanted)
            _flush(tmp)
            os.chmod(tmp, stat.S_IMODE(before.st_mode))
            if not same_picture(photo, tmp):
                raise InPhotoError(photo, "the rewritten file's picture differs from the photo's; left untouched")
            if _state(self.read(tmp)) != _state(wanted):
                raise InPhotoError(photo, "the rewritten file does not read back the keywords written; left untouched")
            if _identity(os.lstat(photo)) != _identity(before):
                raise InPhotoError(photo, "it changed while it was being tagged; left as it is now")
            os.replace(tmp, photo)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if written is not None and op is not None:
                with contextlib.suppress(ClipsortError):  # else recovery settles it by the photo's identity
                    written.failed(op, getattr(exc, "reason", None) or type(exc).__name__)
            raise
        _flush_folder(photo.parent)
        if written is not None and op is not None:
            written.done(op, [photo])

    def _write_copy(self, photo: Path, tmp: Path, now: InFile, wanted: InFile) -> None:
        packet = self._scratch / "packet.xmp"
        packet.write_text(wanted.xmp or "", encoding="utf-8")
        xmp = b"-XMP<=" + os.fsencode(packet) if wanted.xmp is not None else b"-XMP="  # None: no packet
        args: list[str | bytes] = ["-o", os.fsencode(tmp.absolute()), xmp]
        if wanted.iptc != now.iptc:
            args += ["-charset", "iptc=UTF8", "-IPTC:CodedCharacterSet=UTF8", "-IPTC:Keywords="]
            args += [f"-IPTC:Keywords={k}" for k in wanted.iptc]
        args.append(os.fsencode(photo.absolute()))
        try:
            out, err = self.exiftool.run(args)
        except ExifToolError as exc:
            raise InPhotoError(photo, f"cannot write its metadata: {exc}") from None
        if not tmp.exists():
            reason = (err.strip().splitlines() or out.strip().splitlines() or ["exiftool wrote nothing"])[-1]
            reason = (
                reason.removeprefix("Error: ")
                .removesuffix(f" - {tmp.absolute()}")
                .removesuffix(f" - {photo.absolute()}")
            )
            raise NotRewritable(photo, f"exiftool does not write it: {reason.removeprefix('Error: ')}")


def undo_record(found: InFile) -> dict[str, Any]:
    """What undo needs to put a photo's keywords back: whether it had an XMP packet, its keyword
    fields and clipsort's records in it, item by item, and its IPTC Keywords."""
    return {"xmp": found.xmp is not None, "fields": keyword_state(found.xmp), "iptc": list(found.iptc)}


def keyword_state(xmp: str | None) -> dict[str, list[str]]:
    """The keyword fields, clipsort's records of them and its model in an XMP packet, item by item."""
    if xmp is None:
        return {}
    document = parse_xmp(xmp.encode("utf-8"))
    state: dict[str, list[str]] = {}
    for field in FIELDS:
        state[field.name] = [i for e in elements(document, field.ns, field.name) for i in list_items(e)]
        state[field.record] = [i for e in elements(document, NS_CLIPSORT, field.record) for i in list_items(e)]
    state["model"] = [e.firstChild.data for e in elements(document, NS_CLIPSORT, "model") if e.firstChild]
    return state


def with_keyword_state(xmp: str | None, state: dict[str, list[str]]) -> str:
    """``xmp`` (or a new packet) with its keyword fields, clipsort's records and model set to
    ``state``'s (absent ones removed); every other element as it is."""
    document = parse_xmp((xmp or NEW_XMP).encode("utf-8"))
    descriptions = elements(document, NS_RDF, "Description")
    if not descriptions:
        raise ValueError("no rdf:Description element")
    target = descriptions[0]
    for field in FIELDS:
        found = elements(document, field.ns, field.name)
        items = state.get(field.name, [])
        if found and items:
            set_items(found[0], field.container, items)
            remove_all(found[1:])
        else:
            remove_all(found)
            if items:
                append_list(target, field.ns, field.name, field.container, items)
    remove_all([e for f in FIELDS for e in elements(document, NS_CLIPSORT, f.record)])
    remove_all(elements(document, NS_CLIPSORT, "model"))
    for field in FIELDS:
        if state.get(field.record):
            append_list(target, NS_CLIPSORT, field.record, "Bag", state[field.record])
    for model in state.get("model", [])[:1]:
        append_text(target, NS_CLIPSORT, "model", model)
    return serialise(document)


def _state(found: InFile) -> tuple[object, ...]:
    """What a photo's keywords are, as far as clipsort's write goes: its keyword fields, whose they
    are, and its IPTC Keywords (not the packet's layout, which ExifTool may change)."""
    fields = keywords_in(found.xmp.encode("utf-8")) if found.xmp else {"clipsort": {}, "others": {}}
    return (
        tuple(sorted((k, tuple(v)) for k, v in fields["clipsort"].items() if v)),
        tuple(sorted((k, tuple(v)) for k, v in fields["others"].items() if v)),
        found.iptc,
    )


def _replaceable(photo: Path) -> os.stat_result:
    """``photo``'s stat when clipsort may replace it with a rewritten copy, else NotRewritable."""
    try:
        st = os.lstat(photo)
    except OSError as exc:
        raise InPhotoError(photo, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise NotRewritable(photo, "it is a symbolic link: a rewritten photo would replace the link")
    if not stat.S_ISREG(st.st_mode):
        raise NotRewritable(photo, "not a regular file")
    if not st.st_mode & stat.S_IWUSR:
        raise NotRewritable(photo, "it is read-only: left as it is")
    if st.st_nlink > 1:
        raise NotRewritable(photo, f"it has {st.st_nlink} names (hard links): a rewritten photo would part them")
    if os.geteuid() != 0 and st.st_uid != os.geteuid():
        raise NotRewritable(photo, "it belongs to another user: a rewritten photo would become yours")
    return st


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _remove_stale_temps(photo: Path) -> None:
    """Remove this photo's temporary files left by a killed run (clipsort's names only)."""
    prefix = temp_prefix(photo.name)
    try:
        entries = list(os.scandir(photo.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        token = name[len(prefix) : -len(TEMP_SUFFIX)] if name.endswith(TEMP_SUFFIX) else ""
        if name.startswith(prefix) and len(token) == _TOKEN_LENGTH and all(c in "0123456789abcdef" for c in token):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
