"""Sidecar files: XMP keywords that photo managers read, and clipsort's own JSON.

XMP keywords are written to the three fields photo managers read (see
docs/sidecars.md): ``dc:subject`` (flat leaf labels), ``lr:hierarchicalSubject``
(``root|animals|dog``, read by Lightroom, darktable, Immich) and
``digiKam:TagsList`` (``root/animals/dog``, read first by digiKam and Immich).

An existing sidecar is merged, never clobbered: every element clipsort did not
write is kept byte for byte where the XML allows it. clipsort records what it
added in its own namespace, so a re-run replaces exactly its own keywords (and,
with a tag root, anything under that root) and leaves the user's alone. The same
input gives a byte-identical file. Every write is atomic (temp file + rename).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.dom import minidom
from xml.parsers.expat import ExpatError

from clipsort.errors import SidecarError
from clipsort.labels.label_set import Label
from clipsort.labels.names import xml_safe
from clipsort.photos.exif import EmbeddedKeywords
from clipsort.photos.location import Location, read_whole, write_whole
from clipsort.safe_files import SIDECAR_LIMIT, UnsafeFile
from clipsort.writes.xmp_dom import (
    NS_CLIPSORT,
    NS_DC,
    NS_DIGIKAM,
    NS_LR,
    NS_RDF,
    append_list,
    append_text,
    elements,
    list_items,
    remove,
    remove_all,
    serialise,
    set_items,
)

NEW_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="clipsort">\n'
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    '  <rdf:Description rdf:about=""/>\n'
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>\n'
)


_XML_DECLARATION = re.compile(r"\s*(<\?xml\s[^>]*\?>)")


@dataclass(frozen=True)
class Keywords:
    """The keywords of one photo, in the three forms XMP readers expect."""

    subjects: tuple[str, ...]
    hierarchical: tuple[str, ...]
    tags_list: tuple[str, ...]


def keywords_for(labels: Sequence[Label], root: str = "clipsort") -> Keywords:
    """Keywords for the kept labels, hierarchical ones under ``root`` (empty: no root)."""
    prefix = (root,) if root else ()
    subjects: list[str] = []
    for label in labels:
        if label.leaf not in subjects:
            subjects.append(label.leaf)
    return Keywords(
        subjects=tuple(subjects),
        hierarchical=tuple("|".join(prefix + label.path) for label in labels),
        tags_list=tuple("/".join(prefix + label.path) for label in labels),
    )


@dataclass(frozen=True)
class _Field:
    ns: str
    name: str
    container: str  # rdf:Bag or rdf:Seq
    separator: str | None  # hierarchy separator, for fields that hold paths
    record: str  # clipsort's record of what it added to this field


FIELDS = (
    _Field(NS_DC, "subject", "Bag", None, "addedSubject"),
    _Field(NS_LR, "hierarchicalSubject", "Bag", "|", "addedHierarchicalSubject"),
    _Field(NS_DIGIKAM, "TagsList", "Seq", "/", "addedTagsList"),
)


def sidecar_name(photo: Path, kind: str = "xmp", style: str = "full") -> str:
    """Where ``photo``'s sidecar is, as a string: ``photo.jpg.xmp`` (``xmp``, style ``full``:
    digiKam, darktable), ``photo.xmp`` (style ``stem``: Lightroom) or ``photo.jpg.clipsort.json``
    (``json``). A string is several times cheaper than a Path, for a re-run's 100,000 checks."""
    if kind == "json":
        return f"{photo}.clipsort.json"
    if style == "stem":
        return str(photo.with_suffix(".xmp"))
    return f"{photo}.xmp"


def xmp_path(photo: Path, style: str = "full") -> Path:
    """See :func:`sidecar_name`."""
    return type(photo)(sidecar_name(photo, "xmp", style))


def json_path(photo: Path) -> Path:
    return type(photo)(sidecar_name(photo, "json"))


# ----------------------------------------------------------------------------- XMP merge


def merge_xmp(
    existing: str | None,
    keywords: Keywords,
    root: str,
    model_name: str,
    append: bool = False,
    carried: Sequence[tuple[str, ...]] = (),
) -> str:
    """The sidecar text after writing ``keywords`` into ``existing`` (None: a new sidecar).

    ``append`` keeps the keywords clipsort wrote before (and still present) beside the new ones;
    otherwise they give way to the new ones. Keywords clipsort did not write are always kept.
    ``carried``: keywords (as paths) the photo holds in its own file, made sure of in each field
    as keywords of the person's, not clipsort's (:func:`carried_keywords`).
    Linear in the sidecar's size (benchmarks/sidecar_merge.py).
    """
    if existing is None or len(existing) < _LARGE:
        return _merged(existing, keywords, root, model_name, append, carried)
    # The DOM of a large sidecar is millions of objects: the collector's passes over them while it
    # is built made the time per megabyte grow with the size (5.8 MB: 0.85 s/MB, 0.56 without).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _merged(existing, keywords, root, model_name, append, carried)
    finally:
        if paused:
            gc.enable()


#: Sidecars larger than this (characters) are merged with the cyclic garbage collector paused.
_LARGE = 1 << 20


def _merged(
    existing: str | None,
    keywords: Keywords,
    root: str,
    model_name: str,
    append: bool,
    carried: Sequence[tuple[str, ...]] = (),
) -> str:
    text = existing or NEW_XMP
    document = parse_xmp(text.encode("utf-8"))
    descriptions = elements(document, NS_RDF, "Description")
    if not descriptions:
        raise ValueError("no rdf:Description element")
    target = descriptions[0]

    previous: dict[str, list[str]] = {}
    records = []
    for field in FIELDS:
        previous[field.record] = []
        for element in elements(document, NS_CLIPSORT, field.record):
            previous[field.record] += list_items(element)
            records.append(element)
    remove_all(records + elements(document, NS_CLIPSORT, "model"))

    wanted = {
        "subject": keywords.subjects,
        "hierarchicalSubject": keywords.hierarchical,
        "TagsList": keywords.tags_list,
    }
    added_by_field: dict[str, list[str]] = {}
    for field in FIELDS:
        element = next(iter(elements(document, field.ns, field.name)), None)
        current = list_items(element) if element is not None else []
        ours = set(previous[field.record])
        if append:
            earlier = [item for item in current if item in ours]
            wanted[field.name] = tuple(earlier) + tuple(k for k in wanted[field.name] if k not in earlier)

        def owned(item: str, field: _Field = field, ours: set[str] = ours) -> bool:
            if item in ours:
                return True
            return bool(root and field.separator and (item == root or item.startswith(root + field.separator)))

        kept = [item for item in current if not owned(item)]
        for path in carried:
            item = path[-1] if field.separator is None else field.separator.join(path)
            if item not in kept and not owned(item):
                kept.append(item)
        added = [item for item in wanted[field.name] if item not in kept]
        final = kept + added
        added_by_field[field.record] = added
        if element is None:
            if final:
                append_list(target, field.ns, field.name, field.container, final)
        elif final:
            set_items(element, field.container, final)
        else:
            remove(element)

    if any(added_by_field.values()):
        for field in FIELDS:
            if added_by_field[field.record]:
                append_list(target, NS_CLIPSORT, field.record, "Bag", added_by_field[field.record])
        append_text(target, NS_CLIPSORT, "model", xml_safe(model_name))
    declaration = _XML_DECLARATION.match(text)  # the DOM drops it; keep the file's own
    return (declaration.group(1) + "\n" if declaration else "") + serialise(document)


def parse_xmp(data: bytes) -> Any:
    """The DOM of an XMP packet. XMP never declares a DOCTYPE or entities: a sidecar that does is
    refused before it is parsed (entities are how a small file expands into gigabytes)."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError("it declares a DOCTYPE or entities, which XMP never does")
    return minidom.parseString(data)


def write_xmp(
    photo: Path,
    keywords: Keywords,
    root: str,
    model_name: str,
    style: str = "full",
    append: bool = False,
    carried: Sequence[tuple[str, ...]] = (),
) -> Path:
    """Merge ``keywords`` into the photo's XMP sidecar (created if missing), with the keywords the
    photo holds in its own file (``carried``). Returns its path."""
    path = xmp_path(photo, style)
    data = read_existing(path)
    try:
        existing = data.decode("utf-8-sig") if data is not None else None
    except UnicodeDecodeError:
        raise SidecarError(path, "existing sidecar is not UTF-8 text; left untouched") from None
    try:
        text = merge_xmp(existing, keywords, root, model_name, append, carried)
    except (ExpatError, ValueError) as exc:
        raise SidecarError(path, f"existing sidecar is not valid XMP ({exc}); left untouched") from None
    except RecursionError:
        raise SidecarError(path, "existing sidecar is nested too deeply to be XMP; left untouched") from None
    if existing is not None and text == existing:
        return path
    atomic_write(path, text.encode("utf-8"))
    return path


def read_existing(path: Location) -> bytes | None:
    """The bytes of the sidecar at ``path``, or None when there is none. A sidecar that is not a
    regular file (a link, a FIFO, a device) or is larger than :data:`SIDECAR_LIMIT` is refused
    (:class:`SidecarError`, the file left untouched): clipsort never writes through a link, and never
    waits on or reads without end from a special file."""
    try:
        return read_whole(path, SIDECAR_LIMIT, "sidecar")
    except UnsafeFile as exc:
        raise SidecarError(path, f"existing sidecar {exc.reason}; left untouched") from None
    except OSError as exc:
        raise SidecarError(path, f"cannot read existing sidecar: {exc.strerror or exc}") from None


def read_keywords(sidecar: Path) -> dict[str, dict[str, list[str]]]:
    """The keyword fields of an XMP sidecar: ``{"clipsort": {field: items}, "others": {field: items}}``.

    Fields are ``subject``, ``hierarchicalSubject`` and ``TagsList``; clipsort's are the items its
    own record says it added. Raises :class:`SidecarError` for a sidecar that is not XMP.
    """
    data = read_existing(sidecar)
    if data is None:
        raise SidecarError(sidecar, "cannot read: no such file")
    try:
        return keywords_in(data)
    except ValueError as exc:
        raise SidecarError(sidecar, str(exc)) from None


def keywords_in(data: bytes) -> dict[str, dict[str, list[str]]]:
    """The keyword fields of an XMP packet, as :func:`read_keywords` gives them; ValueError
    (``not valid XMP (...)``) for one that is not XMP."""
    found: dict[str, dict[str, list[str]]] = {"clipsort": {}, "others": {}}
    try:
        document = parse_xmp(data)
        for field in FIELDS:
            ours = {item for e in elements(document, NS_CLIPSORT, field.record) for item in list_items(e)}
            items = [item for e in elements(document, field.ns, field.name) for item in list_items(e)]
            found["clipsort"][field.name] = [i for i in items if i in ours]
            found["others"][field.name] = [i for i in items if i not in ours]
    except (ExpatError, ValueError) as exc:
        raise ValueError(f"not valid XMP ({exc})") from None
    except RecursionError:
        raise ValueError("not valid XMP (nested too deeply)") from None
    return found


def carried_keywords(embedded: EmbeddedKeywords, root: str) -> list[tuple[str, ...]]:
    """The keywords a photo holds in its own file, as paths (``("People", "Anna")``, ``("sunset",)``):
    from its XMP fields and IPTC Keywords, but not those clipsort wrote there (its record in the
    file's XMP says which) nor any under the tag root. A packet that is not XMP gives none."""
    fields: dict[str, dict[str, list[str]]] = {"clipsort": {}, "others": {}}
    if embedded.xmp is not None:
        try:
            fields = keywords_in(embedded.xmp)
        except ValueError:
            pass
    others, ours = fields["others"], set(fields["clipsort"].get("subject", []))
    paths: list[tuple[str, ...]] = []
    for name, separator in (("TagsList", "/"), ("hierarchicalSubject", "|")):
        for item in others.get(name, []):
            path = tuple(part for part in item.split(separator) if part)
            if path and path not in paths:
                paths.append(path)
    leaves = {path[-1] for path in paths}
    for item in [*others.get("subject", []), *(k for k in embedded.iptc if k not in ours)]:
        if item and item not in leaves:
            leaves.add(item)
            paths.append((item,))
    return [path for path in paths if not (root and path[0] == root) and not any(xml_safe(p) != p for p in path)]


def holds_clipsort_keywords(sidecar: Path) -> bool:
    """Whether ``sidecar`` (XMP or clipsort's JSON) holds keywords clipsort wrote."""
    if sidecar.name.endswith(".clipsort.json"):
        try:
            data = read_existing(sidecar)
            return data is not None and bool(json.loads(data).get("labels"))
        except (SidecarError, ValueError, AttributeError):
            return False
    try:
        return any(read_keywords(sidecar)["clipsort"].values())
    except SidecarError:
        return False


# ----------------------------------------------------------------------------- JSON


def json_text(photo: Path, model_name: str, scores: dict[str, float], kept: Sequence[str]) -> str:
    record = {
        "photo": photo.name,
        "model": model_name,
        "labels": list(kept),
        "scores": {label: round(float(p), 6) for label, p in scores.items()},
    }
    return json.dumps(record, ensure_ascii=False, indent=2) + "\n"


def write_json(photo: Path, model_name: str, scores: dict[str, float], kept: Sequence[str]) -> Path:
    """Write ``photo.jpg.clipsort.json`` (labels kept, every score, model). Atomic."""
    path = json_path(photo)
    text = json_text(photo, model_name, scores, kept)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not valid UTF-8: let JSON escape it
        data = json.dumps(json.loads(text), indent=2).encode("ascii") + b"\n"
    if read_existing(path) == data:
        return path
    atomic_write(path, data)
    return path


# ----------------------------------------------------------------------------- atomic write


def atomic_write(path: Location, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing (:func:`clipsort.photos.location.write_whole`: a temp
    file in the same folder and a rename; one PUT in a store). A crash leaves either the old file or
    the new one, never a half-written one; an existing file's permission bits are kept."""
    try:
        write_whole(path, data)
    except OSError as exc:
        raise SidecarError(path, f"cannot write sidecar: {exc.strerror or exc}") from None
