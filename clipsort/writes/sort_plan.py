"""A sort plan: every photo's decision, written by ``sort --review`` (and ``--plan-out``), corrected
by a person on the review page, carried out by ``sort --plan`` (docs/review.md).

A plan file may come from anywhere: :func:`read_plan` checks all of it where it enters (its size,
its shape, every name that becomes a folder, every path) and raises :class:`PlanError` naming what
is wrong before anything else looks at it. Whether each photo is still the one the plan was made
from is checked by :mod:`clipsort.commands.apply_plan`, for the whole plan before anything moves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsort.errors import LabelFileError, UsageError
from clipsort.labels.label_set import parse_label_path
from clipsort.labels.names import UNSAFE_IN_NAMES, control_problem
from clipsort.safe_files import MAX_LABELS, UnsafeFile, read_regular
from clipsort.writes.mover import MODES
from clipsort.writes.pattern import UNDATED, parse_pattern

VERSION = 1
KIND = "clipsort sort plan"
#: Decisions that are not labels: "none of these" (the unsorted folder, or left with
#: ``leave_unsorted``) and "leave it where it is" (sent there on the review page).
UNSORTED = "_unsorted"
LEAVE = "_leave"
SPECIAL = (UNSORTED, LEAVE)
#: The largest plan file read (about 100,000 photos with their scores fit in a tenth of it).
PLAN_LIMIT = 512 << 20
#: The most photos one plan may hold, and folders it may name (a label file's labels: MAX_LABELS).
MAX_PHOTOS = 5_000_000
MAX_ROOTS = 10_000


class PlanError(UsageError):
    """A plan file that cannot be carried out as it is; nothing was moved."""


@dataclass(frozen=True)
class PlanFile:
    """One file of the plan (a photo, or a RAW partner that goes with it) as it was when planned."""

    path: Path
    size: int
    mtime_ns: int
    #: :func:`clipsort.photos.location.file_fingerprint`, hex.
    fingerprint: str

    def to_json(self) -> dict[str, object]:
        return {
            "photo": os.fsdecode(self.path),
            "size": self.size,
            "mtime_ns": str(self.mtime_ns),  # a string: a browser's numbers keep 53 bits, not 64
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class PlanPhoto:
    """One photo's decision: a label's name, :data:`UNSORTED` or :data:`LEAVE`."""

    file: PlanFile
    decision: str
    partners: tuple[PlanFile, ...] = ()
    #: What the run that made the plan found (shown on the page, not used to carry it out).
    destination: Path | None = None
    action: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    #: No date taken, in a dated pattern: filed under ``unknown``, or by the file's time (``mtime``, a guess).
    undated: str = ""

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {**self.file.to_json(), "decision": self.decision}
        if self.partners:
            record["partners"] = [p.to_json() for p in self.partners]
        if self.destination is not None:
            record["destination"] = os.fsdecode(self.destination)
        if self.action:
            record["action"] = self.action
        if self.scores:
            record["scores"] = {name: round(score, 6) for name, score in self.scores.items()}
        if self.undated:
            record["undated"] = self.undated
        return record


@dataclass(frozen=True)
class PlanLabel:
    name: str
    #: Its folder under the destination (the label file's ``folder``, else its path).
    folder: tuple[str, ...]


@dataclass(frozen=True)
class SortPlan:
    """Everything ``sort --plan`` needs: the settings of the run that made it, and every decision."""

    roots: tuple[Path, ...]
    dest: Path
    labels: tuple[PlanLabel, ...]
    photos: tuple[PlanPhoto, ...]
    mode: str = "move"
    pattern: str | None = None
    #: Where photos with no date taken go in a dated pattern (``sort --undated``).
    undated: str = "unknown"
    unsorted: str = "_unsorted"
    leave_unsorted: bool = False
    dedupe: bool = False
    #: The label file, its SHA-256 and the model that decided (the label set's identity).
    label_file: str = ""
    label_digest: str = ""
    model: str = ""
    made: str = ""
    #: True for the plan of a run that moved its photos already (a record: not carried out again).
    applied: bool = False

    def label(self, name: str) -> PlanLabel | None:
        return next((label for label in self.labels if label.name == name), None)

    def to_json(self) -> dict[str, object]:
        return {
            "version": VERSION,
            "kind": KIND,
            "made": self.made,
            "applied": self.applied,
            "roots": [os.fsdecode(root) for root in self.roots],
            "dest": os.fsdecode(self.dest),
            "mode": self.mode,
            "pattern": self.pattern,
            "undated": self.undated,
            "unsorted": self.unsorted,
            "leave_unsorted": self.leave_unsorted,
            "dedupe": self.dedupe,
            "labels": {
                "file": self.label_file,
                "sha256": self.label_digest,
                "model": self.model,
                "names": [{"name": label.name, "folder": list(label.folder)} for label in self.labels],
            },
            "photos": [photo.to_json() for photo in self.photos],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=True, indent=None, separators=(",", ":"))


# ----------------------------------------------------------------------------- reading


def read_plan(path: Path) -> SortPlan:
    """The plan in ``path``, checked whole. Raises :class:`PlanError` (or UsageError) naming the problem."""
    try:
        data = read_regular(path, PLAN_LIMIT, "sort plan")
    except UnsafeFile as exc:
        raise PlanError(f"{path}: {exc.strerror}") from None
    except OSError as exc:
        raise PlanError(f"cannot read the plan {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PlanError(f"{path} is not a sort plan (not JSON: {str(exc)[:120]})") from None
    return parse_plan(raw, str(path))


def parse_plan(raw: Any, source: str = "<plan>") -> SortPlan:
    """A plan from its JSON value, every field checked (:class:`PlanError` names the first problem)."""
    where = _Where(source)
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise PlanError(f'{source} is not a clipsort sort plan (no "kind": "{KIND}")')
    version = raw.get("version")
    if version != VERSION:
        raise PlanError(f"{source} is a plan of version {version!r}; this clipsort reads version {VERSION}")
    roots = tuple(where.path(r, "roots[]") for r in where.list_of(raw, "roots", min_items=1, limit=MAX_ROOTS))
    dest = where.path(raw.get("dest"), "dest")
    mode = where.choice(raw.get("mode", "move"), MODES, "mode")
    pattern = raw.get("pattern")
    undated = where.choice(raw.get("undated", "unknown"), UNDATED, "undated")
    if pattern is not None:
        where.string(pattern, "pattern")
        try:
            parse_pattern(pattern)
        except UsageError as exc:
            raise PlanError(f"{source}: pattern: {exc}") from None
    unsorted = where.string(raw.get("unsorted", "_unsorted"), "unsorted")
    if not _plain_folder_name(unsorted):
        raise PlanError(f"{source}: unsorted {unsorted!r} must be a plain folder name")
    label_info = raw.get("labels")
    if not isinstance(label_info, dict):
        raise PlanError(f'{source}: "labels" must be an object with the label names')
    labels = tuple(where.label(item) for item in where.list_of(label_info, "names", min_items=1, limit=MAX_LABELS))
    names = [label.name for label in labels]
    if len(set(names)) != len(names):
        raise PlanError(f"{source}: a label is named twice")
    clash = [n for n in names if n in SPECIAL or n.casefold() == unsorted.casefold()]
    if clash:
        raise PlanError(f"{source}: label {clash[0]!r} has the name of a decision that is not a label")
    known = set(names) | set(SPECIAL)
    photos: list[PlanPhoto] = []
    seen: set[Path] = set()
    items = where.list_of(raw, "photos", min_items=0, limit=MAX_PHOTOS)
    for index, item in enumerate(items):
        photo = where.photo(item, index, known)
        for file in (photo.file, *photo.partners):
            if file.path in seen:
                raise PlanError(f"{source}: {file.path} is in the plan twice")
            seen.add(file.path)
        photos.append(photo)
    return SortPlan(
        roots=roots,
        dest=dest,
        labels=labels,
        photos=tuple(photos),
        mode=mode,
        pattern=pattern,
        undated=undated,
        unsorted=unsorted,
        leave_unsorted=where.flag(raw, "leave_unsorted"),
        dedupe=where.flag(raw, "dedupe"),
        label_file=str(label_info.get("file", ""))[:4096],
        label_digest=str(label_info.get("sha256", ""))[:128],
        model=str(label_info.get("model", ""))[:512],
        made=str(raw.get("made", ""))[:64],
        applied=where.flag(raw, "applied"),
    )


def _plain_folder_name(name: str) -> bool:
    return (
        bool(name)
        and name == name.strip()
        and name not in (".", "..")
        and not any(ch in UNSAFE_IN_NAMES for ch in name)
        and control_problem(name, "name") is None
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


class _Where:
    """Checks of one plan's fields, each naming the plan and the field in its error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> PlanError:
        return PlanError(f"{self.source}: {message}")

    def string(self, value: Any, what: str, limit: int = 4096) -> str:
        if not isinstance(value, str) or not value or len(value) > limit:
            raise self.fail(f"{what} must be a non-empty string of at most {limit} characters")
        return value

    def flag(self, raw: dict[str, Any], name: str) -> bool:
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(f"{name} must be true or false")
        return value

    def choice(self, value: Any, choices: tuple[str, ...], what: str) -> str:
        if value not in choices:
            raise self.fail(f"{what} must be one of {', '.join(choices)}, not {str(value)[:40]!r}")
        return str(value)

    def number(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"{what} must be a whole number, not {str(value)[:40]!r}")
        return value

    def list_of(self, raw: dict[str, Any], name: str, min_items: int, limit: int) -> list[Any]:
        value = raw.get(name)
        if not isinstance(value, list) or len(value) < min_items or len(value) > limit:
            raise self.fail(f"{name} must be a list of {min_items} to {limit:,} items")
        return value

    def path(self, value: Any, what: str) -> Path:
        """An absolute, normal path (no ``..``, no empty parts, no NUL)."""
        text = self.string(value, what)
        if "\x00" in text or not os.path.isabs(text) or os.path.normpath(text) != text or text.startswith("//"):
            raise self.fail(f"{what} {text[:200]!r} must be an absolute path without '..' or empty parts")
        return Path(os.fsencode(text).decode("utf-8", "surrogateescape"))

    def label(self, item: Any) -> PlanLabel:
        if not isinstance(item, dict):
            raise self.fail("each of labels.names must be an object with a name and a folder")
        name = self.string(item.get("name"), "a label's name", 1024)
        folder = item.get("folder")
        if not isinstance(folder, list) or not folder or not all(isinstance(part, str) for part in folder):
            raise self.fail(f"label {name!r}: folder must be a list of folder names")
        if any("/" in part or part != part.strip() for part in folder):
            raise self.fail(f"label {name!r}: folder {folder!r} must be a list of plain folder names")
        try:
            parse_label_path(name, self.source)
            checked = parse_label_path("/".join(folder), self.source)
        except LabelFileError as exc:
            raise self.fail(exc.reason) from None
        return PlanLabel(name, checked)

    def file(self, item: Any, what: str) -> PlanFile:
        if not isinstance(item, dict):
            raise self.fail(f"{what} must be an object")
        path = self.path(item.get("photo"), f"{what}.photo")
        fingerprint = self.string(item.get("fingerprint"), f"{what}.fingerprint", 64)
        if any(ch not in "0123456789abcdef" for ch in fingerprint):
            raise self.fail(f"{what}.fingerprint must be hexadecimal")
        mtime = item.get("mtime_ns")
        if not isinstance(mtime, str) or not mtime.isdigit() or len(mtime) > 24:
            raise self.fail(f"{what}.mtime_ns must be a string of digits (nanoseconds), not {str(mtime)[:40]!r}")
        return PlanFile(path, self.number(item.get("size"), f"{what}.size"), int(mtime), fingerprint)

    def photo(self, item: Any, index: int, known: set[str]) -> PlanPhoto:
        what = f"photos[{index}]"
        file = self.file(item, what)
        decision = item.get("decision")
        if decision not in known:
            raise self.fail(
                f"{what} ({file.path.name}): decision {str(decision)[:80]!r} is neither a label of the plan"
                f" nor {' or '.join(SPECIAL)}"
            )
        partners = item.get("partners", [])
        if not isinstance(partners, list) or len(partners) > 16:
            raise self.fail(f"{what}.partners must be a list of at most 16 files")
        return PlanPhoto(
            file, str(decision), tuple(self.file(p, f"{what}.partners[{n}]") for n, p in enumerate(partners))
        )
