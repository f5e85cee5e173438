"""Sort journals: what a ``clipsort sort`` run did to which file, for undo and crash recovery.

A journal is a JSON-lines file under ``<data dir>/journals/``. Its first record names the
run: the folders sorted (``roots``) and the destination (``dest``), as absolute paths, and
the working folder. Before a photo (with its sidecars) is placed, a ``begin`` record names
every file's source and target, absolute, with the identity each source has (device, inode,
size, mtime_ns and ctime_ns), and is flushed to disk; after, a ``done`` record gives the identity of each
file placed. Folders are recorded before they are created. The file is ``flock``-ed for as
long as its run lasts, so a journal without an ``end`` record whose lock is free belongs to a
run that was killed: :func:`clipsort.writes.recovery.recover` then finishes or rolls back the one
operation that was under way (at most one unit can be half-done).

**Sealed.** Every record carries an HMAC-SHA256 over itself and the record before it, keyed
with a secret made once per user (``journal.key`` in the data dir, readable by its owner
only). A journal this installation did not write, or one edited since, fails the check and is
refused as a whole before any file is touched (:class:`JournalRefused`): undo and recovery
move and delete files, so what tells them to must be clipsort's own. A last line cut short
(a run killed while writing it) is ignored, as it always was.

Journals of clipsort before version 2 hold paths relative to the folder the sort ran in and
no identities; they are listed by ``history`` but never acted on (:data:`LEGACY_HELP`).

``clipsort undo`` replays a journal backwards (:mod:`clipsort.writes.recovery`).

``tag --into photo|both`` runs keep journals too (``command`` ``tag``, no ``dest``): one
``retag`` operation per photo rewritten in place, whose begin record holds the photo's keyword
fields as they were (what undo writes back) and the temporary file that was to replace it
(:mod:`clipsort.writes.undo_in_photo`).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipsort import settings
from clipsort.errors import ClipsortError
from clipsort.safe_files import (
    UnsafeFile,
    create_private,
    open_regular,
)

VERSION = 2
KEY_NAME = "journal.key"
SEED = b"clipsort journal 2\n"
SEALED = re.compile(rb'^(\{.*),"mac":"([0-9a-f]{64})"\}$', re.DOTALL)
ACTIONS = ("move", "copy", "link", "dedupe")
#: What a ``tag --into photo|both`` run does to a photo: its metadata rewritten, nothing moved.
RETAG = "retag"

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


def key_path() -> Path:
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
    path = key_path()
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
            try:
                os.write(handle, secrets.token_hex(32).encode("ascii"))
                os.fsync(handle)
            finally:
                os.close(handle)
            os.link(temp, path)
        except FileExistsError:
            pass  # another run made it first: use theirs
        finally:
            os.unlink(temp)  # also when the disk is full: no half-written key is left behind
        return _read_key(path)
    except OSError as exc:
        raise JournalError(f"cannot make the journal key {path}: {exc.strerror or exc}") from None


def seal(key: bytes, chain: bytes, body: bytes) -> bytes:
    return hmac.new(key, chain + body, hashlib.sha256).digest()


def sealed_line(key: bytes, chain: bytes, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """The line that writes ``record`` after the record sealed with ``chain``, and its own seal."""
    body = json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    mac = seal(key, chain, body)
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
    def create(
        cls, command: str, roots: Sequence[Path | str], dest: Path | str | None, details: dict[str, Any]
    ) -> Journal:
        """A new journal for a run over ``roots`` into ``dest`` (None: a run that moves nothing, as
        ``tag`` with keywords inside photos); every path is made absolute against the working
        folder of now."""
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
        journal = cls(path, handle, key, SEED, cwd)
        header = {
            "type": "run",
            "version": VERSION,
            "id": secrets.token_hex(8),
            "command": command,
            "started": time.time(),
            "cwd": cwd,
            "roots": [absolute(r, cwd) for r in roots],
            **({"dest": absolute(dest, cwd)} if dest is not None else {}),
            **details,
        }
        journal.write(header, sync=True)
        return journal

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        line, mac = sealed_line(self._key, self._chain, record)
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

    def begin_retag(self, photo: Path, before: dict[str, Any], temp: Path) -> int:
        """Record (flushed to disk), before ``temp`` is even made, that it is to replace ``photo``
        with new metadata; ``before`` is what undo puts back (its keyword fields and IPTC
        Keywords). Returns the operation's number."""
        op = self._next_op
        self._next_op += 1
        path = absolute(photo, self.cwd)
        self.write(
            {
                "type": "begin",
                "op": op,
                "action": RETAG,
                "files": [[path, path]],
                "stats": [identity_of(photo)],
                "folders": [],
                "before": before,
                "temp": absolute(temp, self.cwd),
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


def lock(handle: int) -> bool:
    """Take the journal's lock without waiting: False when a live run holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
