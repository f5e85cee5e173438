"""Reading sort journals back (:mod:`clipsort.store.journal` writes them): each record's seal checked in
order (:func:`read`), the journals listed (:func:`all_journals`, :func:`history`), and a journal
claimed for recovery or undo (:func:`claimed`), which append sealed records (:class:`Appender`).
A journal comes from disk, where anyone may have put or changed it: see :mod:`clipsort.store.journal`
for what the seal proves, and :mod:`clipsort.store.journal_check` for what else must hold before a
journal is acted on."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsort.errors import UsageError
from clipsort.safe_files import JOURNAL_LIMIT, JOURNAL_LINE_LIMIT, UnsafeFile, human_limit, open_regular
from clipsort.store.journal import (
    SEALED,
    SEED,
    VERSION,
    JournalError,
    JournalRefused,
    journal_key,
    journals_dir,
    key_path,
    lock,
    seal,
    sealed_line,
)

# ----------------------------------------------------------------------------- reading


@dataclass
class Operation:
    op: int
    action: str
    files: list[tuple[Path, Path]]
    #: Each source's identity before the operation (None: it was missing).
    source_stats: list[Any]
    folders: list[Path]
    state: str = "begun"  #: begun, done, failed, undoing, undone
    #: Each placed file's identity after the operation (``done`` records).
    target_stats: list[Any] = field(default_factory=list)
    #: ``retag`` only: the photo's keyword fields before (what undo puts back), and the temporary
    #: file that was to replace it.
    before: Any = None
    temp: Any = None


@dataclass
class JournalView:
    """A journal, read back (and its seal checked, see :func:`read`)."""

    path: Path
    run: dict[str, Any]
    operations: dict[int, Operation]
    ended: bool
    undone: bool
    interrupted: bool = False
    #: Written by a clipsort before journal version 2: listed, never acted on.
    legacy: bool = False
    #: The seal of the last record: a record appended next is sealed after it.
    chain: bytes = b""
    #: Where the last whole line ends: a record appended next goes there (after a line a crash cut
    #: short, which is dropped).
    size: int = 0
    #: The last record lacks its newline (a crash cut just that off): one is written before the next.
    unterminated: bool = False

    @property
    def started(self) -> float:
        """When the run started (seconds since the epoch); 0 when the journal says nothing sane."""
        value = self.run.get("started", 0)
        sane = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e11
        return float(value) if sane else 0.0

    @property
    def roots(self) -> list[Path]:
        return [Path(r) for r in self.run.get("roots", [])]

    @property
    def dest(self) -> Path:
        return Path(self.run.get("dest", ""))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for operation in self.operations.values():
            counts[operation.state] = counts.get(operation.state, 0) + 1
        return counts

    def placed(self) -> int:
        """How many photos the run placed (or retagged), whether or not an undo put them back since."""
        counts = self.counts()
        return sum(counts.get(state, 0) for state in ("done", "undoing", "undone"))


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool, int]]:
    """(number, line without its newline, whether it was complete, where it ends) for each line
    of a journal, which must be a regular file within the size limits."""
    try:
        handle = open_regular(path, follow=False)  # clipsort's own file: never read through a link
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    with os.fdopen(handle, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size > JOURNAL_LIMIT:
            raise JournalError(f"{path} is larger than a journal may be ({human_limit(JOURNAL_LIMIT)})")
        number = end = 0
        while True:
            line = stream.readline(JOURNAL_LINE_LIMIT + 1)  # a record, its newline, or one byte too many
            if not line:
                return
            number += 1
            complete = line.endswith(b"\n")
            body = line[:-1] if complete else line
            if len(body) > JOURNAL_LINE_LIMIT:
                raise JournalError(f"{path}:{number}: a line longer than a journal record may be")
            end += len(line)
            yield number, body, complete, end


#: Records that settle an operation, and the state each leaves it in.
_SETTLING = {
    "done": "done",
    "failed": "failed",
    "undone": "undone",
    "recovered-done": "done",
    "recovered-failed": "failed",
}


def read(path: Path, key: bytes | None = None) -> JournalView:
    """Read a journal and check its seal: every complete record must be sealed by this user's key,
    in order. A journal that is not (edited, from elsewhere) raises :class:`JournalRefused`; one of
    an older clipsort is read with ``legacy`` set. A last line cut short is ignored."""
    key = key if key is not None else journal_key()
    run: dict[str, Any] = {}
    operations: dict[int, Operation] = {}
    ended = undone = interrupted = legacy = False
    chain = SEED
    size = 0
    unterminated = False
    for number, line, complete, end in _lines(path):
        if complete:
            size = end
        if not line.strip():
            continue
        sealed = SEALED.match(line)
        if number == 1 and sealed is None:
            legacy = True
        if legacy:
            body = line
        else:
            if sealed is None:
                if not complete:
                    break  # a last line cut short by a crash
                raise JournalRefused(f"{path}:{number}: a record without clipsort's seal")
            body = sealed.group(1) + b"}"
            if key is None:
                raise JournalRefused(f"{path}: not sealed by this user's clipsort (no journal key {key_path()})")
            mac = bytes.fromhex(sealed.group(2).decode("ascii"))
            if not hmac.compare_digest(mac, seal(key, chain, body)):
                if not complete:
                    break
                raise JournalRefused(
                    f"{path}:{number}: the record's seal does not match: the journal was changed since clipsort "
                    "wrote it, or was written by another installation"
                )
            chain = mac
        try:
            record = json.loads(body)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            kind = record.get("type")
            if kind == "run":
                run = record
            elif kind == "begin":
                operations[int(record["op"])] = _operation(record)
            elif kind == "undo" and record["op"] in operations:
                operations[record["op"]].state = "undoing"  # put back only in part if the undo was killed
            elif kind in _SETTLING and record["op"] in operations:
                operation = operations[record["op"]]
                operation.state = _SETTLING[kind]
                if kind == "done":
                    operation.target_stats = list(record.get("stats") or [])
            elif kind == "end":
                ended = True
                interrupted = bool(record.get("interrupted"))
            elif kind == "undo-end":
                undone = True
        except (ValueError, KeyError, TypeError, AttributeError):
            if not complete:
                break  # a last line cut short by a crash
            raise JournalError(f"{path}:{number}: not a journal record") from None
        if not complete:  # a whole record whose newline the crash cut off: it counts, and ends the file
            size, unterminated = end, True
    if not run:
        raise JournalError(f"{path} is not a clipsort journal")
    if not legacy and run.get("version") != VERSION:
        raise JournalRefused(f"{path}: journal version {run.get('version')!r}; this clipsort reads {VERSION}")
    return JournalView(path, run, operations, ended, undone, interrupted, legacy, chain, size, unterminated)


def _operation(record: dict[str, Any]) -> Operation:
    files = record["files"]
    if not isinstance(files, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair) for pair in files
    ):
        raise ValueError("files")
    folders = record.get("folders") or []
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ValueError("folders")
    return Operation(
        int(record["op"]),
        str(record["action"]),
        [(Path(s), Path(t)) for s, t in files],
        list(record.get("stats") or []),
        [Path(f) for f in folders],
        before=record.get("before"),
        temp=record.get("temp"),
    )


def all_journals() -> list[Path]:
    """Every journal, oldest first (names are YYYYmmdd-HHMMSS-PID[-N].jsonl)."""
    folder = journals_dir()
    if not folder.is_dir():
        return []

    def order(path: Path) -> tuple[str, int, str]:
        parts = path.stem.split("-")
        return "-".join(parts[:2]), int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0, path.name

    return sorted(folder.glob("*.jsonl"), key=order)


def history() -> list[tuple[Path, JournalView | None, str | None]]:
    """Every journal, oldest first: (path, its view, None), or (path, None, why it cannot be read)."""
    try:
        key = journal_key()
    except JournalError as exc:
        return [(path, None, str(exc)) for path in all_journals()]
    entries: list[tuple[Path, JournalView | None, str | None]] = []
    for path in all_journals():
        try:
            entries.append((path, read(path, key), None))
        except JournalError as exc:
            entries.append((path, None, str(exc)))
    return entries


# ----------------------------------------------------------------------------- claiming a journal (recovery, undo)


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[int | None]:
    """The journal's lock, or None when a live run holds it. The journal must be a regular file."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(path, "is not a regular file")
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise JournalError(f"cannot open the journal {path}: {exc.strerror or exc}") from None
    try:
        yield handle if lock(handle) else None
    finally:
        os.close(handle)


class Appender:
    """Appends sealed records to a journal read as ``view`` and claimed as ``handle``."""

    def __init__(self, handle: int, view: JournalView) -> None:
        key = journal_key()
        if key is None:
            raise JournalRefused(f"{view.path}: the key that sealed it ({key_path()}) is missing")
        self._handle = handle
        self._key = key
        self._chain = view.chain
        try:
            if os.fstat(handle).st_size > view.size:
                os.ftruncate(handle, view.size)  # a record a crash cut short: never read, never acted on
            if view.unterminated:
                os.write(handle, b"\n")
        except OSError as exc:
            raise JournalError(f"cannot write the journal {view.path}: {exc.strerror or exc}") from None

    def __call__(self, record: dict[str, Any]) -> None:
        line, mac = sealed_line(self._key, self._chain, record)
        os.write(self._handle, line)
        os.fsync(self._handle)
        self._chain = mac


#: Records that only follow the end of a run: a journal whose last line is one of them is finished.
_AFTER_END = ("end", "undo", "undone", "undo-end")


def ended_by_its_last_line(path: Path) -> bool:
    try:
        handle = open_regular(path, follow=False)  # clipsort's own file: never read through a link
        with os.fdopen(handle, "rb") as stream:
            stream.seek(max(stream.seek(0, os.SEEK_END) - 4096, 0))
            last = stream.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return json.loads(last).get("type") in _AFTER_END
    except (OSError, ValueError, AttributeError):
        return False


def resolve(name: str | None) -> Path:
    """The journal ``name`` names (a path, a file name in the journals folder), or the newest one."""
    if name is None:
        journals = all_journals()
        if not journals:
            raise UsageError(f"no journals in {journals_dir()}: nothing to undo")
        return journals[-1]
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate
    inside = journals_dir() / name
    if inside.is_file():
        return inside
    if os.path.lexists(candidate) or os.path.lexists(inside):
        raise UsageError(f"{name}: not a journal file (it is not a regular file)")
    raise UsageError(f"no journal {name!r} (see 'clipsort history')")
