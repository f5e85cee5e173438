"""Sort journals: what a ``clipsort sort`` run did to which file, for undo and crash recovery.

A journal is a JSON-lines file under ``<data dir>/journals/``. Before a photo (with
its sidecars) is placed, a ``begin`` record naming every file's source and target is
written and flushed to disk; after, a ``done`` record gives each target's size and
mtime. Folders are recorded before they are created. The file is ``flock``-ed for
as long as its run lasts, so a journal without an ``end`` record whose lock is free
belongs to a run that was killed: :func:`clipsort.recovery.recover` then finishes or rolls back the
one operation that was under way (at most one unit can be half-done).

``clipsort undo`` replays a journal backwards, refusing, unit by unit, where a
file was changed or a name was taken since.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsort import settings
from clipsort.errors import ClipsortError, UsageError

VERSION = 1


def journals_dir() -> Path:
    return settings.data_dir() / "journals"


class JournalError(ClipsortError):
    """A journal cannot be written or read."""


def file_stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class Journal:
    """An open journal, locked for its run. Paths are stored as str (surrogate-escaped names survive JSON)."""

    def __init__(self, path: Path, handle: int) -> None:
        self.path = path
        self._fd = handle
        self._next_op = 0

    @classmethod
    def create(cls, command: str, details: dict[str, Any]) -> Journal:
        folder = journals_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for n in range(1000):  # runs of one process within one second get -1, -2, ...
                path = folder / (f"{stamp}-{os.getpid()}" + (f"-{n}" if n else "") + ".jsonl")
                try:
                    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                    break
                except FileExistsError:
                    continue
            else:
                raise FileExistsError(errno.EEXIST, "too many journals this second", str(folder))
        except OSError as exc:
            raise JournalError(f"cannot write the journal in {folder}: {exc.strerror or exc}") from None
        _lock(handle)
        journal = cls(path, handle)
        journal.write(
            {"type": "run", "version": VERSION, "command": command, "started": time.time(), **details}, sync=True
        )
        return journal

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd, line.encode("ascii"))
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def begin(self, action: str, files: list[tuple[Path, Path]], folders: list[Path]) -> int:
        """Record an operation before it happens (flushed to disk). Returns its number."""
        op = self._next_op
        self._next_op += 1
        self.write(
            {
                "type": "begin",
                "op": op,
                "action": action,
                "files": [[str(s), str(t)] for s, t in files],
                "stats": [file_stat(s) for s, _ in files],
                "folders": [str(f) for f in folders],
            },
            sync=True,
        )
        return op

    def done(self, op: int, targets: list[Path]) -> None:
        self.write({"type": "done", "op": op, "stats": [file_stat(t) for t in targets]})

    def failed(self, op: int, reason: str) -> None:
        self.write({"type": "failed", "op": op, "reason": reason})

    def end(self, summary: dict[str, Any]) -> None:
        self.write({"type": "end", "finished": time.time(), **summary}, sync=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1


def _lock(handle: int, wait: bool = False) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


# ----------------------------------------------------------------------------- reading


@dataclass
class Operation:
    op: int
    action: str
    files: list[tuple[Path, Path]]
    source_stats: list[Any]
    folders: list[Path]
    state: str = "begun"  #: begun, done, failed, undoing, undone
    target_stats: list[Any] = field(default_factory=list)


@dataclass
class JournalView:
    """A journal, read back."""

    path: Path
    run: dict[str, Any]
    operations: dict[int, Operation]
    ended: bool
    undone: bool
    interrupted: bool = False

    @property
    def started(self) -> float:
        return float(self.run.get("started", 0))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for operation in self.operations.values():
            counts[operation.state] = counts.get(operation.state, 0) + 1
        return counts


def read(path: Path) -> JournalView:
    run: dict[str, Any] = {}
    operations: dict[int, Operation] = {}
    ended = undone = interrupted = False
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break  # a last line cut short by a crash
            raise JournalError(f"{path}:{number}: not a journal record") from None
        kind = record.get("type")
        if kind == "run":
            run = record
        elif kind == "begin":
            operations[record["op"]] = Operation(
                record["op"],
                record["action"],
                [(Path(s), Path(t)) for s, t in record["files"]],
                record.get("stats", []),
                [Path(f) for f in record.get("folders", [])],
            )
        elif kind == "undo" and record["op"] in operations:
            operations[record["op"]].state = "undoing"  # put back only in part if the undo was killed
        elif kind in ("done", "failed", "undone", "recovered-done", "recovered-failed") and record["op"] in operations:
            operation = operations[record["op"]]
            operation.state = {"recovered-done": "done", "recovered-failed": "failed"}.get(kind, kind)
            if kind == "done":
                operation.target_stats = record.get("stats", [])
        elif kind == "end":
            ended = True
            interrupted = bool(record.get("interrupted"))
        elif kind == "undo-end":
            undone = True
    if not run:
        raise JournalError(f"{path} is not a clipsort journal")
    return JournalView(path, run, operations, ended, undone, interrupted)


def all_journals() -> list[Path]:
    """Every journal, oldest first (names are YYYYmmdd-HHMMSS-PID[-N].jsonl)."""
    folder = journals_dir()
    if not folder.is_dir():
        return []

    def order(path: Path) -> tuple[str, int, str]:
        parts = path.stem.split("-")
        return "-".join(parts[:2]), int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0, path.name

    return sorted(folder.glob("*.jsonl"), key=order)


def history() -> list[JournalView]:
    views = []
    for path in all_journals():
        with contextlib.suppress(JournalError):
            views.append(read(path))
    return views


# ----------------------------------------------------------------------------- claiming a journal (recovery, undo)


@contextlib.contextmanager
def claimed(path: Path, wait: bool = False) -> Iterator[int | None]:
    """The journal's lock, or None when a live run holds it."""
    handle = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        yield handle if _lock(handle, wait) else None
    finally:
        os.close(handle)


def append_record(handle: int, record: dict[str, Any]) -> None:
    os.write(handle, (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii"))
    os.fsync(handle)


#: Records that only follow the end of a run: a journal whose last line is one of them is finished.
_AFTER_END = ("end", "undo", "undone", "undo-end")


def ended_by_its_last_line(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(handle.seek(0, os.SEEK_END) - 4096, 0))
            last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return json.loads(last).get("type") in _AFTER_END
    except (OSError, ValueError, AttributeError):
        return False


def resolve(name: str | None) -> Path:
    """The journal ``name`` names (a path, a file name in the journals folder), or the newest one."""
    if name is None:
        journals = all_journals()
        if not journals:
            raise UsageError(f"no sort journals in {journals_dir()}: nothing to undo")
        return journals[-1]
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate
    inside = journals_dir() / name
    if inside.is_file():
        return inside
    raise UsageError(f"no journal {name!r} (see 'clipsort history')")
