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

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.dom import minidom
from xml.parsers.expat import ExpatError

from clipsort.errors import SidecarError
from clipsort.labels import Label
from clipsort.remote import is_url

#: minidom nodes; its type stubs make every parent and document optional, which the code here never meets.
_Dom = Any

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_LR = "http://ns.adobe.com/lightroom/1.0/"
NS_DIGIKAM = "http://www.digikam.org/ns/1.0/"
NS_CLIPSORT = "http://ns.clipsort.org/xmp/1.0/"
NS_XMLNS = "http://www.w3.org/2000/xmlns/"

_PREFIXES = {NS_DC: "dc", NS_LR: "lr", NS_DIGIKAM: "digiKam", NS_CLIPSORT: "clipsort", NS_RDF: "rdf"}

_NEW_XMP = (
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


_FIELDS = (
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


def merge_xmp(existing: str | None, keywords: Keywords, root: str, model_name: str, append: bool = False) -> str:
    """The sidecar text after writing ``keywords`` into ``existing`` (None: a new sidecar).

    ``append`` keeps the keywords clipsort wrote before (and still present) beside the new ones;
    otherwise they give way to the new ones. Keywords clipsort did not write are always kept.
    """
    text = existing or _NEW_XMP
    document = minidom.parseString(text.encode("utf-8"))
    descriptions = _elements(document, NS_RDF, "Description")
    if not descriptions:
        raise ValueError("no rdf:Description element")
    target = descriptions[0]

    previous: dict[str, list[str]] = {}
    for field in _FIELDS:
        previous[field.record] = []
        for element in _elements(document, NS_CLIPSORT, field.record):
            previous[field.record] += _items(element)
            _remove(element)
    for element in _elements(document, NS_CLIPSORT, "model"):
        _remove(element)

    wanted = {
        "subject": keywords.subjects,
        "hierarchicalSubject": keywords.hierarchical,
        "TagsList": keywords.tags_list,
    }
    added_by_field: dict[str, list[str]] = {}
    for field in _FIELDS:
        element = next(iter(_elements(document, field.ns, field.name)), None)
        current = _items(element) if element is not None else []
        ours = set(previous[field.record])
        if append:
            earlier = [item for item in current if item in ours]
            wanted[field.name] = tuple(earlier) + tuple(k for k in wanted[field.name] if k not in earlier)

        def owned(item: str, field: _Field = field, ours: set[str] = ours) -> bool:
            if item in ours:
                return True
            return bool(root and field.separator and (item == root or item.startswith(root + field.separator)))

        kept = [item for item in current if not owned(item)]
        added = [item for item in wanted[field.name] if item not in kept]
        final = kept + added
        added_by_field[field.record] = added
        if element is None:
            if final:
                _append_list(target, field.ns, field.name, field.container, final)
        elif final:
            _set_items(element, field.container, final)
        else:
            _remove(element)

    if any(added_by_field.values()):
        for field in _FIELDS:
            if added_by_field[field.record]:
                _append_list(target, NS_CLIPSORT, field.record, "Bag", added_by_field[field.record])
        _append_text(target, NS_CLIPSORT, "model", model_name)
    declaration = _XML_DECLARATION.match(text)  # the DOM drops it; keep the file's own
    return (declaration.group(1) + "\n" if declaration else "") + _serialise(document)


def write_xmp(
    photo: Path, keywords: Keywords, root: str, model_name: str, style: str = "full", append: bool = False
) -> Path:
    """Merge ``keywords`` into the photo's XMP sidecar (created if missing). Returns its path."""
    path = xmp_path(photo, style)
    try:
        existing = path.read_bytes().decode("utf-8-sig") if path.exists() else None
    except UnicodeDecodeError:
        raise SidecarError(path, "existing sidecar is not UTF-8 text; left untouched") from None
    except OSError as exc:
        raise SidecarError(path, f"cannot read existing sidecar: {exc.strerror or exc}") from None
    try:
        text = merge_xmp(existing, keywords, root, model_name, append)
    except (ExpatError, ValueError) as exc:
        raise SidecarError(path, f"existing sidecar is not valid XMP ({exc}); left untouched") from None
    if existing is not None and text == existing:
        return path
    atomic_write(path, text.encode("utf-8"))
    return path


def read_keywords(sidecar: Path) -> dict[str, dict[str, list[str]]]:
    """The keyword fields of an XMP sidecar: ``{"clipsort": {field: items}, "others": {field: items}}``.

    Fields are ``subject``, ``hierarchicalSubject`` and ``TagsList``; clipsort's are the items its
    own record says it added. Raises :class:`SidecarError` for a sidecar that is not XMP.
    """
    try:
        document = minidom.parseString(sidecar.read_bytes())
    except OSError as exc:
        raise SidecarError(sidecar, f"cannot read: {exc.strerror or exc}") from None
    except ExpatError as exc:
        raise SidecarError(sidecar, f"not valid XMP ({exc})") from None
    found: dict[str, dict[str, list[str]]] = {"clipsort": {}, "others": {}}
    for field in _FIELDS:
        ours = {item for e in _elements(document, NS_CLIPSORT, field.record) for item in _items(e)}
        items = [item for e in _elements(document, field.ns, field.name) for item in _items(e)]
        found["clipsort"][field.name] = [i for i in items if i in ours]
        found["others"][field.name] = [i for i in items if i not in ours]
    return found


def holds_clipsort_keywords(sidecar: Path) -> bool:
    """Whether ``sidecar`` (XMP or clipsort's JSON) holds keywords clipsort wrote."""
    if sidecar.name.endswith(".clipsort.json"):
        try:
            return bool(json.loads(sidecar.read_bytes()).get("labels"))
        except (OSError, ValueError, AttributeError):
            return False
    try:
        return any(read_keywords(sidecar)["clipsort"].values())
    except SidecarError:
        return False


def _elements(node: _Dom, ns: str, name: str) -> list[_Dom]:
    return list(node.getElementsByTagNameNS(ns, name))


def _items(element: _Dom) -> list[str]:
    items = []
    for li in element.getElementsByTagNameNS(NS_RDF, "li"):
        text = "".join(child.data for child in li.childNodes if child.nodeType == child.TEXT_NODE)
        items.append(text)
    if not items:  # a simple-valued property: <dc:subject>word</dc:subject>
        text = "".join(c.data for c in element.childNodes if c.nodeType == c.TEXT_NODE).strip()
        if text:
            items.append(text)
    return items


def _indent_of(element: _Dom) -> str:
    previous = element.previousSibling
    if previous is not None and previous.nodeType == previous.TEXT_NODE and previous.data.strip() == "":
        return previous.data.rsplit("\n", 1)[-1]
    return ""


def _remove(element: _Dom) -> None:
    parent = element.parentNode
    previous = element.previousSibling
    if previous is not None and previous.nodeType == previous.TEXT_NODE and previous.data.strip() == "":
        parent.removeChild(previous)
    parent.removeChild(element)
    _collapse_if_empty(parent)


def _collapse_if_empty(parent: _Dom) -> None:
    # Keep <rdf:Description .../> self-closed when it holds nothing but whitespace.
    if parent.nodeType == parent.ELEMENT_NODE and all(
        c.nodeType == c.TEXT_NODE and c.data.strip() == "" for c in parent.childNodes
    ):
        for child in list(parent.childNodes):
            parent.removeChild(child)


def _prefix_for(element: _Dom, ns: str) -> str:
    """The prefix bound to ``ns`` where ``element`` is, declaring one on ``element`` if none is."""
    node: _Dom = element
    while node is not None and node.nodeType == node.ELEMENT_NODE:
        for attr in node.attributes.values():
            if attr.value == ns and attr.name.startswith("xmlns:"):
                return attr.name[len("xmlns:") :]
        node = node.parentNode
    wanted = _PREFIXES.get(ns, "ns")
    prefix, n = wanted, 1
    while element.hasAttribute(f"xmlns:{prefix}"):
        n += 1
        prefix = f"{wanted}{n}"
    element.setAttributeNS(NS_XMLNS, f"xmlns:{prefix}", ns)
    return prefix


def _child_indent(parent: _Dom) -> tuple[str, str]:
    """(indent of the parent's children, indent of the parent's closing tag)."""
    base = _indent_of(parent)
    for child in parent.childNodes:
        if child.nodeType == child.ELEMENT_NODE:
            return _indent_of(child) or base + " ", base
    return base + " ", base


def _append(parent: _Dom, element: _Dom) -> None:
    document = parent.ownerDocument
    indent, closing = _child_indent(parent)
    last = parent.lastChild
    if last is not None and last.nodeType == last.TEXT_NODE and last.data.strip() == "":
        parent.removeChild(last)
    parent.appendChild(document.createTextNode("\n" + indent))
    parent.appendChild(element)
    parent.appendChild(document.createTextNode("\n" + closing))


def _new_element(parent: _Dom, ns: str, name: str) -> _Dom:
    prefix = _prefix_for(parent, ns)
    return parent.ownerDocument.createElementNS(ns, f"{prefix}:{name}")


def _append_list(parent: _Dom, ns: str, name: str, container: str, items: Sequence[str]) -> None:
    element = _new_element(parent, ns, name)
    _append(parent, element)
    _set_items(element, container, items)


def _append_text(parent: _Dom, ns: str, name: str, text: str) -> None:
    element = _new_element(parent, ns, name)
    element.appendChild(parent.ownerDocument.createTextNode(text))
    _append(parent, element)


def _set_items(element: _Dom, default_container: str, items: Sequence[str]) -> None:
    """Replace the items of an rdf:Bag/Seq property, keeping its container kind and indentation."""
    document = element.ownerDocument
    rdf = _prefix_for(element, NS_RDF)
    container = next((c for c in element.childNodes if c.nodeType == c.ELEMENT_NODE), None)
    if container is None or container.namespaceURI != NS_RDF or container.localName not in ("Bag", "Seq", "Alt"):
        for child in list(element.childNodes):
            element.removeChild(child)
        container = document.createElementNS(NS_RDF, f"{rdf}:{default_container}")
        base = _indent_of(element)
        element.appendChild(document.createTextNode("\n" + base + " "))
        element.appendChild(container)
        element.appendChild(document.createTextNode("\n" + base))
    item_indent = _indent_of(element) + "  "
    for child in list(container.childNodes):
        container.removeChild(child)
    for item in items:
        container.appendChild(document.createTextNode("\n" + item_indent))
        li = document.createElementNS(NS_RDF, f"{rdf}:li")
        li.appendChild(document.createTextNode(item))
        container.appendChild(li)
    container.appendChild(document.createTextNode("\n" + item_indent[:-1]))


def _namespace_declarations_first(document: _Dom) -> None:
    # The parser lists xmlns declarations before other attributes; writing them in
    # that order too makes a re-run reproduce the file byte for byte.
    for element in document.getElementsByTagName("*"):
        attrs = list(element.attributes.values())
        ordered = sorted(attrs, key=lambda a: not a.name.startswith("xmlns"))
        if ordered != attrs:
            for attr in attrs:
                element.removeAttributeNode(attr)
            for attr in ordered:
                element.setAttributeNode(attr)


def _serialise(document: _Dom) -> str:
    _namespace_declarations_first(document)
    # Not document.toxml(): that adds an XML declaration; XMP sidecars start with <?xpacket?>.
    return "\n".join(node.toxml() for node in document.childNodes) + "\n"


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
    try:
        if path.exists() and path.read_bytes() == data:
            return path
    except OSError:
        pass
    atomic_write(path, data)
    return path


# ----------------------------------------------------------------------------- atomic write


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    A crash leaves either the old file or the new one, never a half-written one.
    An existing file's permission bits are kept. An object in a store
    (:class:`clipsort.remote.RemotePath`) is written in one PUT, which is atomic there.
    """
    if is_url(path):
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise SidecarError(path, f"cannot write sidecar: {exc.strerror or exc}") from None
        return
    folder = path.parent
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".clipsort-tmp", dir=folder)
    except OSError as exc:
        raise SidecarError(path, f"cannot write sidecar: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SidecarError(path, f"cannot write sidecar: {exc.strerror or exc}") from None


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import: os.umask() can only be read by setting it, which races with other threads.
_UMASK = _read_umask()
