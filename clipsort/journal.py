"""Sort journals: what a ``clipsort sort`` run did to which file, for undo and crash recovery.

A journal is a JSON-lines file under ``<data dir>/journals/``. Its first record names the
run: the folders sorted (``roots``) and the destination (``dest``), as absolute paths, and
the working folder. Before a photo (with its sidecars) is placed, a ``begin`` record names
every file's source and target, absolute, with the identity each source has (device, inode,
size, mtime_ns and ctime_ns), and is flushed to disk; after, a ``done`` record gives the identity of each
file placed. Folders are recorded before they are created. The file is ``flock``-ed for as
long as its run lasts, so a journal without an ``end`` record whose lock is free belongs to a
run that was killed: :func:`clipsort.recovery.recover` then finishes or rolls back the one
operation that was under way (at most one unit can be half-done).

**Sealed.** Every record carries an HMAC-SHA256 over itself and the record before it, keyed
with a secret made once per user (``journal.key`` in the data dir, readable by its owner
only). A journal this installation did not write, or one edited since, fails the check and is
refused as a whole before any file is touched (:class:`JournalRefused`): undo and recovery
move and delete files, so what tells them to must be clipsort's own. A last line cut short
(a run killed while writing it) is ignored, as it always was.

Journals of clipsort before version 2 hold paths relative to the folder the sort ran in and
no identities; they are listed by ``history`` but never acted on (:data:`LEGACY_HELP`).

``clipsort undo`` replays a journal backwards (:mod:`clipsort.recovery`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsort import settings
from clipsort.errors import ClipsortError, UsageError
from clipsort.safe_files import (
    JOURNAL_LIMIT,
    JOURNAL_LINE_LIMIT,
    UnsafeFile,
    create_private,
    human_limit,
    open_regular,
)

VERSION = 2
KEY_NAME = "journal.key"
_SEED = b"clipsort journal 2\n"
_SEALED = re.compile(rb'^(\{.*),"mac":"([0-9a-f]{64})"\}$', re.DOTALL)
ACTIONS = ("move", "copy", "link", "dedupe")

LEGACY_HELP = (
    "it was written by a clipsort older than journal version 2, with paths relative to the folder that sort ran "
    "in and no file identities, so undo cannot prove it would touch only that run's files. To undo it by hand: "
    "each 'begin' line lists [source, target] pairs; from that folder, move each target back to its source "
    "(mv -n TARGET SOURCE), newest line first"
)


def journals_dir() -> Path:
    return settings.data_dir() / "journals"


class JournalError(ClipsortError):
    """A journal cannot be written or read."""


class JournalRefused(JournalError):
    """A journal that undo and recovery will not act on: not clipsort's own, changed since it was
    written, from an older clipsort, or naming files outside its run's folders."""


#: A file's identity: (device, inode, size, mtime_ns, ctime_ns). The change time is there because
#: file systems give a freed inode number to the next new file: a file put in the place of the one
#: clipsort placed can have its device, inode, size and mtime, but no call can set its ctime.
Identity = tuple[int, int, int, int, int]


def identity_of(path: Path | str) -> Identity | None:
    """The identity of whatever is at ``path`` (not following a link), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


# ----------------------------------------------------------------------------- the key


def _key_path() -> Path:
    return settings.data_dir() / KEY_NAME


def _read_key(path: Path) -> bytes:
    handle = open_regular(path, follow=False)
    try:
        st = os.fstat(handle)
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise UnsafeFile(path, "belongs to another user")
        data = os.read(handle, 65)
    finally:
        os.close(handle)
    if len(data) != 64 or not re.fullmatch(rb"[0-9a-f]{64}", data):
        raise UnsafeFile(path, "is not a clipsort journal key")
    return bytes.fromhex(data.decode("ascii"))


def journal_key(create: bool = False) -> bytes | None:
    """The secret that seals this user's journals (made on first use when ``create``); None when
    there is none and ``create`` is False. Raises :class:`JournalError` for a key file that is not
    one (a link, another user's, damaged)."""
    path = _key_path()
    if os.path.exists(path.parent) and not os.path.isdir(path.parent):
        raise JournalError(f"the data folder {path.parent} is a file, not a folder")
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        raise JournalError(f"the journal key {path} cannot be used: {exc.strerror or exc}") from None
    try:  # written to a temp file, then linked into place: a second process never sees half a key
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{KEY_NAME}.{secrets.token_hex(6)}.tmp")
        handle = create_private(temp)
        try:
            os.write(handle, secrets.token_hex(32).encode("ascii"))
            os.fsync(handle)
        finally:
            os.close(handle)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another run made it first: use theirs
        finally:
            os.unlink(temp)
        return _read_key(path)
    except OSError as exc:
        raise JournalError(f"cannot make the journal key {path}: {exc.strerror or exc}") from None


def _seal(key: bytes, chain: bytes, body: bytes) -> bytes:
    return hmac.new(key, chain + body, hashlib.sha256).digest()


def _sealed_line(key: bytes, chain: bytes, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """The line that writes ``record`` after the record sealed with ``chain``, and its own seal."""
    body = json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    mac = _seal(key, chain, body)
    return body[:-1] + b',"mac":"' + mac.hex().encode("ascii") + b'"}\n', mac


# ----------------------------------------------------------------------------- writing


def absolute(path: Path | str, cwd: str) -> str:
    """``path`` made absolute against ``cwd`` and normalised (no ``.`` or ``..`` parts)."""
    return os.path.normpath(os.path.join(cwd, os.fspath(path)))


class Journal:
    """An open journal, locked for its run. Paths are stored absolute, as str (surrogate-escaped
    names survive JSON)."""

    def __init__(self, path: Path, handle: int, key: bytes, chain: bytes, cwd: str) -> None:
        self.path = path
        self._fd = handle
        self._key = key
        self._chain = chain
        self.cwd = cwd
        self._next_op = 0

    @classmethod
    def create(cls, command: str, roots: Sequence[Path | str], dest: Path | str, details: dict[str, Any]) -> Journal:
        """A new journal for a run over ``roots`` into ``dest``; every path is made absolute against
        the working folder of now."""
        key = journal_key(create=True)
        assert key is not None
        cwd = os.getcwd()
        folder = journals_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for n in range(1000):  # runs of one process within one second get -1, -2, ...
                path = folder / (f"{stamp}-{os.getpid()}" + (f"-{n}" if n else "") + ".jsonl")
                try:
                    handle = create_private(path, 0o600)
                    break
                except FileExistsError:
                    continue
            else:
                raise FileExistsError(errno.EEXIST, "too many journals this second", str(folder))
        except OSError as exc:
            raise JournalError(f"cannot write the journal in {folder}: {exc.strerror or exc}") from None
        lock(handle)
        journal = cls(path, handle, key, _SEED, cwd)
        header = {
            "type": "run",
            "version": VERSION,
            "id": secrets.token_hex(8),
            "command": command,
            "started": time.time(),
            "cwd": cwd,
            "roots": [absolute(r, cwd) for r in roots],
            "dest": absolute(dest, cwd),
            **details,
        }
        journal.write(header, sync=True)
        return journal

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        line, mac = _sealed_line(self._key, self._chain, record)
        try:
            os.write(self._fd, line)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None
        self._chain = mac

    def begin(self, action: str, files: list[tuple[Path, Path]], folders: list[Path]) -> int:
        """Record an operation before it happens (flushed to disk). Returns its number."""
        op = self._next_op
        self._next_op += 1
        self.write(
            {
                "type": "begin",
                "op": op,
                "action": action,
                "files": [[absolute(s, self.cwd), absolute(t, self.cwd)] for s, t in files],
                "stats": [identity_of(s) for s, _ in files],
                "folders": [absolute(f, self.cwd) for f in folders],
            },
            sync=True,
        )
        return op

    def done(self, op: int, targets: list[Path]) -> None:
        self.write({"type": "done", "op": op, "stats": [identity_of(t) for t in targets]})

    def failed(self, op: int, reason: str) -> None:
        self.write({"type": "failed", "op": op, "reason": reason})

    def end(self, summary: dict[str, Any]) -> None:
        self.write({"type": "end", "finished": time.time(), **summary}, sync=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1


def lock(handle: int, wait: bool = False) -> bool:
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
    #: Each source's identity before the operation (None: it was missing).
    source_stats: list[Any]
    folders: list[Path]
    state: str = "begun"  #: begun, done, failed, undoing, undone
    #: Each placed file's identity after the operation (``done`` records).
    target_stats: list[Any] = field(default_factory=list)


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

    @property
    def started(self) -> float:
        value = self.run.get("started", 0)
        return float(value) if isinstance(value, (int, float)) else 0.0

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


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(number, line without its newline, whether it was complete) for each line of a journal,
    which must be a regular file within the size limits."""
    try:
        handle = open_regular(path)
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    with os.fdopen(handle, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size > JOURNAL_LIMIT:
            raise JournalError(f"{path} is larger than a journal may be ({human_limit(JOURNAL_LIMIT)})")
        number = 0
        while True:
            line = stream.readline(JOURNAL_LINE_LIMIT + 2)
            if not line:
                return
            number += 1
            complete = line.endswith(b"\n")
            if not complete and len(line) > JOURNAL_LINE_LIMIT:
                raise JournalError(f"{path}:{number}: a line longer than a journal record may be")
            yield number, line.rstrip(b"\n"), complete


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
    chain = _SEED
    for number, line, complete in _lines(path):
        if not line.strip():
            continue
        sealed = _SEALED.match(line)
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
                raise JournalRefused(f"{path}: not sealed by this user's clipsort (no journal key {_key_path()})")
            mac = bytes.fromhex(sealed.group(2).decode("ascii"))
            if not hmac.compare_digest(mac, _seal(key, chain, body)):
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
    if not run:
        raise JournalError(f"{path} is not a clipsort journal")
    if not legacy and run.get("version") != VERSION:
        raise JournalRefused(f"{path}: journal version {run.get('version')!r}; this clipsort reads {VERSION}")
    return JournalView(path, run, operations, ended, undone, interrupted, legacy, chain)


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
def claimed(path: Path, wait: bool = False) -> Iterator[int | None]:
    """The journal's lock, or None when a live run holds it. The journal must be a regular file."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(path, "is not a regular file")
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise JournalError(f"cannot open the journal {path}: {exc.strerror or exc}") from None
    try:
        yield handle if lock(handle, wait) else None
    finally:
        os.close(handle)


class Appender:
    """Appends sealed records to a journal read as ``view`` and claimed as ``handle``."""

    def __init__(self, handle: int, view: JournalView) -> None:
        key = journal_key()
        if key is None:
            raise JournalRefused(f"{view.path}: the key that sealed it ({_key_path()}) is missing")
        self._handle = handle
        self._key = key
        self._chain = view.chain

    def __call__(self, record: dict[str, Any]) -> None:
        line, mac = _sealed_line(self._key, self._chain, record)
        os.write(self._handle, line)
        os.fsync(self._handle)
        self._chain = mac


#: Records that only follow the end of a run: a journal whose last line is one of them is finished.
_AFTER_END = ("end", "undo", "undone", "undo-end")


def ended_by_its_last_line(path: Path) -> bool:
    try:
        handle = open_regular(path)
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
            raise UsageError(f"no sort journals in {journals_dir()}: nothing to undo")
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
