"""``sort --pattern``: the folder a photo goes to, built from its label and its metadata.

Fields: ``{label}`` (the label's folder, nested labels included; the unsorted
folder's name for photos no label fits), ``{year}``, ``{month}``, ``{day}`` (from
the date taken, see :mod:`clipsort.photos.exif`), ``{camera}`` (make and model) and
``{ext}`` (the file's extension, lower case, without the dot). A field with no
value becomes ``unknown``: a photo with no date taken (none of the metadata's dates) has
``unknown`` for ``{year}``, ``{month}`` and ``{day}``, or, with ``undated = "mtime"`` (``sort
--undated mtime``), the file's modification time, a guess that the run's results and plan mark
(``undated``). Characters that are unsafe in folder names on any
common filesystem (``/ \\ : * ? " < > |`` and control characters) become ``_``;
a part that would be empty, ``.`` or ``..`` becomes ``unknown``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from clipsort.errors import UsageError
from clipsort.labels.names import control_characters, control_problem
from clipsort.photos.exif import PhotoFacts, read_facts

FIELDS = ("label", "year", "month", "day", "camera", "ext")
#: Fields whose value comes from the photo's metadata (read only when the pattern uses one).
_METADATA_FIELDS = frozenset({"year", "month", "day", "camera"})
#: Fields of the date taken.
_DATE_FIELDS = frozenset({"year", "month", "day"})
DEFAULT_PATTERN = "{label}"
UNKNOWN = "unknown"
#: Where a photo with no date taken goes: ``unknown`` folders, or by its file's modification time.
UNDATED = ("unknown", "mtime")
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')


@dataclass(frozen=True)
class Pattern:
    text: str
    fields: frozenset[str]
    #: A photo with no date taken: ``unknown`` folders, or ``mtime`` (the file's time, marked a guess).
    undated: str = "unknown"

    @property
    def needs_metadata(self) -> bool:
        return bool(self.fields & _METADATA_FIELDS)

    def folder(self, label_path: tuple[str, ...], photo: Path, facts: PhotoFacts | None = None) -> PurePosixPath:
        """The folder (relative to the destination) for ``photo`` with the label folder ``label_path``."""
        return self.place(label_path, photo, facts)[0]

    def place(
        self, label_path: tuple[str, ...], photo: Path, facts: PhotoFacts | None = None
    ) -> tuple[PurePosixPath, str]:
        """:meth:`folder`, and for a photo with no date taken whose folder has a date field, how it was
        dated (``unknown`` or ``mtime``: :attr:`undated`); "" when the date is the photo's own."""
        if facts is None and self.needs_metadata:
            facts = read_facts(photo)
        undated = ""
        if facts is not None and self.fields & _DATE_FIELDS and facts.taken_source == "mtime":
            undated = self.undated
        dated = facts is not None and undated != "unknown"
        values = {
            "ext": safe_part(photo.suffix[1:].lower()),
            "year": f"{facts.taken.year:04d}" if facts and dated else UNKNOWN,
            "month": f"{facts.taken.month:02d}" if facts and dated else UNKNOWN,
            "day": f"{facts.taken.day:02d}" if facts and dated else UNKNOWN,
            "camera": safe_part(facts.camera or "") if facts else UNKNOWN,
        }
        parts: list[str] = []
        for segment in self.text.split("/"):
            if segment == "{label}":
                parts += [safe_part(p) for p in label_path]  # nested labels stay nested
                continue
            rendered = segment.format_map({**values, "label": safe_part("-".join(label_path))})
            parts.append(safe_part(rendered))
        return PurePosixPath(*parts), undated


def safe_part(text: str) -> str:
    """``text`` as one folder name: unsafe and control characters replaced, never empty, ``.`` or ``..``."""
    cleaned = _UNSAFE.sub("_", text)
    if not cleaned.isprintable():
        cleaned = "".join("_" if ch in control_characters(ch) else ch for ch in cleaned)
    cleaned = cleaned.strip().strip(".").strip()
    return cleaned if cleaned else UNKNOWN


def parse_pattern(text: str, undated: str = "unknown") -> Pattern:
    """Check a ``--pattern`` (unknown fields, empty parts, absolute paths) before any file moves;
    ``undated``: where photos with no date taken go (:data:`UNDATED`)."""
    if undated not in UNDATED:
        raise UsageError(f"--undated {undated!r}: one of {', '.join(UNDATED)}")
    if not text.strip():
        raise UsageError("--pattern is empty; for example --pattern '{label}/{year}/{month}'")
    if text.startswith("/"):
        raise UsageError(f"--pattern {text!r} must be relative to the destination (no leading '/')")
    problem = control_problem(text, "--pattern")
    if problem:
        raise UsageError(problem)
    used: set[str] = set()
    for segment in text.split("/"):
        if segment.strip() in ("", ".", ".."):
            raise UsageError(f"--pattern {text!r} has an empty, '.' or '..' folder part")
        try:
            parsed = list(string.Formatter().parse(segment))
        except ValueError as exc:
            raise UsageError(f"--pattern {text!r}: {exc} (write literal braces as {{{{ and }}}})") from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in FIELDS:
                raise UsageError(f"--pattern: unknown field {{{field}}}; known fields: {_field_list()}")
            if spec or conversion:
                raise UsageError(f"--pattern: field {{{field}}} takes no format or conversion")
            used.add(field)
    return Pattern(text, frozenset(used), undated)


def _field_list() -> str:
    return ", ".join("{" + f + "}" for f in FIELDS)
