"""Move, copy or hard-link photos into label folders, their companions with them, journaled.

Rules (docs/sorting.md):

* Nothing is ever overwritten. Within a filesystem a photo is renamed with
  ``renameat2(RENAME_NOREPLACE)`` (atomic: the photo is always at exactly one of
  its two names), or, where that is missing, ``link()`` + ``unlink()``. Across
  filesystems it is copied to a temp name beside the target, flushed to disk,
  checked (size and content hash), linked into place, and only then is the
  source removed. A name clash gets a numbered suffix (``photo_1.jpg``), chosen
  so that the photo and all its companions are free.
* A photo whose identical copy already has its name at the destination is a
  duplicate: left where it is, or removed with ``--dedupe``.
* A photo and its companions (``photo.jpg.xmp``, ``photo.xmp``,
  ``photo.jpg.clipsort.json``, ``photo.AAE``, a Live Photo's ``photo.MOV``) move
  as one unit or not at all.
* A photo already in its target folder is not touched.
* Every unit is journaled (:mod:`clipsort.journal`) before it moves, so an
  interrupted run is completed or rolled back by the next one, and ``undo`` can
  put everything back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import filecmp
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clipsort.errors import DestinationFullError, FileFailure, MoveError
from clipsort.sidecar import json_path, xmp_path

if TYPE_CHECKING:
    from clipsort.journal import Journal, JournalView, Operation

MODES = ("move", "copy", "link")
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_FULL = {errno.ENOSPC, errno.EDQUOT}
#: Same-stem files that belong to a photo (Apple edit files, the video half of a Live Photo).
COMPANION_EXTENSIONS = (".aae", ".mov")


@dataclass(frozen=True)
class Plan:
    """What will happen to one photo: move, copy, link, dedupe, in-place or duplicate."""

    action: str
    source: Path
    target: Path
    #: (companion, its target) pairs that travel with the photo.
    companions: tuple[tuple[Path, Path], ...] = ()

    @property
    def files(self) -> list[tuple[Path, Path]]:
        return [(self.source, self.target), *self.companions]


class FolderIndex:
    """The names in one folder, and which of them are ``<stem>.<one extension>``, by stem.

    Read once per folder and kept up to date with this run's own moves, so finding a
    photo's companions costs no system call, however many photos the folder holds.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: set[str] = set()
        self._by_stem: dict[str, set[str]] = {}
        try:
            entries = os.listdir(folder)
        except OSError:
            entries = []
        for name in entries:
            self.add(name)

    def add(self, name: str) -> None:
        self.names.add(name)
        stem, dot, extension = name.rpartition(".")
        if dot and stem and "." not in extension:
            self._by_stem.setdefault(stem, set()).add(name)

    def discard(self, name: str) -> None:
        self.names.discard(name)
        self._by_stem.get(name.rpartition(".")[0], set()).discard(name)

    def same_stem(self, photo: Path) -> list[Path]:
        """Other files named ``<stem>.<one extension>`` beside ``photo``."""
        return [self.folder / n for n in sorted(self._by_stem.get(photo.stem, ())) if n != photo.name]


def companions_of(photo: Path, index: FolderIndex | None = None, partners: Sequence[Path] = ()) -> list[Path]:
    """The sidecars and companion files of ``photo`` that exist, and its RAW ``partners`` with theirs.

    ``photo.xmp`` is taken only when no other image or raw file shares the stem
    (``photo.jpg`` beside ``photo.cr2`` makes it ambiguous), unless the others are
    the photo's partners: a RAW+JPEG pair moves as one, with the sidecar it shares.
    """
    index = index or FolderIndex(photo.parent)
    found = [p for p in (xmp_path(photo, "full"), json_path(photo)) if p.name in index.names]
    same_stem = index.same_stem(photo)
    stem_xmp = xmp_path(photo, "stem")
    if stem_xmp != photo and stem_xmp.name in index.names:
        others = [
            p for p in same_stem if p.suffix.lower() not in COMPANION_EXTENSIONS + (".xmp",) and p not in partners
        ]
        if not others:
            found.insert(1, stem_xmp)
    for partner in partners:
        if partner.name in index.names:
            found.append(partner)
            found += [p for p in (xmp_path(partner, "full"), json_path(partner)) if p.name in index.names]
    found += [p for p in same_stem if p.suffix.lower() in COMPANION_EXTENSIONS]
    return found


def _companion_target(photo: Path, companion: Path, target: Path) -> Path:
    if companion.name.startswith(photo.name + "."):  # photo.jpg.xmp, photo.jpg.clipsort.json
        return target.with_name(target.name + companion.name[len(photo.name) :])
    return target.with_name(target.stem + companion.name[len(photo.stem) :])  # photo.xmp, photo.MOV


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


class Mover:
    """Plans and carries out the placement of photos into folders.

    Remembers the names it has given out in this run, so that a dry run shows
    exactly the names a real run would use.
    """

    def __init__(self, mode: str = "move", journal: Journal | None = None, dedupe: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.journal = journal
        self.dedupe = dedupe
        self._reserved: set[str] = set()
        self._folders: dict[str, FolderIndex] = {}

    def _index(self, folder: Path) -> FolderIndex:
        key = os.path.abspath(folder)
        if key not in self._folders:
            self._folders[key] = FolderIndex(folder)
        return self._folders[key]

    def _moved(self, files: list[tuple[Path, Path]], sources_gone: bool) -> None:
        """Keep the folder indexes in step with what this run just did."""
        for source, target in files:
            if sources_gone and os.path.abspath(source.parent) in self._folders:
                self._index(source.parent).discard(source.name)
            if os.path.abspath(target.parent) in self._folders:
                self._index(target.parent).add(target.name)

    def plan(self, photo: Path, folder: Path, partners: Sequence[Path] = ()) -> Plan:
        """Where ``photo`` goes in ``folder``, with its companions and RAW partners."""
        if photo.parent.exists() and folder.exists() and _same_folder(photo.parent, folder):
            return Plan("in-place", photo, photo)
        companions = companions_of(photo, self._index(photo.parent), partners)
        stem, suffix = photo.stem, photo.suffix
        n = 0
        while True:
            name = photo.name if n == 0 else f"{stem}_{n}{suffix}"
            target = folder / name
            pairs = tuple((c, _companion_target(photo, c, target)) for c in companions)
            taken = [p for p in (target, *(t for _, t in pairs)) if self._taken(p)]
            if not taken:
                break
            if n == 0 and target in taken and _identical(photo, target):
                return Plan("dedupe" if self.dedupe and not companions else "duplicate", photo, target)
            n += 1
        for path in (target, *(t for _, t in pairs)):
            self._reserved.add(os.path.abspath(path))
        return Plan(self.mode, photo, target, pairs)

    def _taken(self, path: Path) -> bool:
        return os.path.lexists(path) or os.path.abspath(path) in self._reserved

    def execute(self, plan: Plan) -> list[str]:
        """Carry out ``plan``. Returns warnings (e.g. a link that fell back to a copy).

        Raises :class:`MoveError` with the unit back where it was, or
        :class:`DestinationFullError` (same, and the run should stop).
        """
        if plan.action in ("in-place", "duplicate"):
            return []
        if plan.action == "dedupe":
            return self._dedupe(plan)
        folders = _missing_folders(plan.target.parent)
        op = self.journal.begin(plan.action, plan.files, folders) if self.journal else None
        warnings: list[str] = []
        done: list[tuple[Path, Path]] = []
        try:
            for folder in folders:
                os.mkdir(folder)
            for source, target in plan.files:
                note = _place(source, target, plan.action)
                if note and source == plan.source:
                    warnings.append(note)
                done.append((source, target))
        except OSError as exc:
            for source, target in reversed(done):
                _undo_one(source, target, plan.action)
            for folder in reversed(folders):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            reason = f"cannot {plan.action} to {plan.target.parent}: {exc.strerror or exc}"
            if self.journal and op is not None:
                self.journal.failed(op, reason)
            if exc.errno in _FULL:
                raise DestinationFullError(
                    f"{plan.target.parent}: no space left; stopped moving ({plan.source} and every photo not yet "
                    "moved are where they were)"
                ) from None
            raise MoveError(plan.source, reason) from None
        if self.journal and op is not None:
            self.journal.done(op, [t for _, t in plan.files])
        self._moved(plan.files, sources_gone=plan.action == "move")
        return warnings

    def _dedupe(self, plan: Plan) -> list[str]:
        if not _identical(plan.source, plan.target):  # checked again: it may have changed since planning
            raise MoveError(plan.source, f"{plan.target} changed; duplicate not removed")
        op = self.journal.begin("dedupe", plan.files, []) if self.journal else None
        try:
            os.unlink(plan.source)
        except OSError as exc:
            if self.journal and op is not None:
                self.journal.failed(op, str(exc))
            raise MoveError(plan.source, f"cannot remove duplicate: {exc.strerror or exc}") from None
        if self.journal and op is not None:
            self.journal.done(op, [plan.target])
        self._moved([(plan.source, plan.target)], sources_gone=True)
        return []


def _missing_folders(folder: Path) -> list[Path]:
    """The folders that must be created for ``folder`` to exist, outermost first."""
    missing: list[Path] = []
    while not os.path.isdir(folder):
        if os.path.lexists(folder):
            break  # a file in the way: mkdir will fail with a clear error
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    return list(reversed(missing))


def _identical(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


# ----------------------------------------------------------------------------- placing one file


def _load_renameat2() -> Callable[[bytes, bytes], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    at_fdcwd, rename_noreplace = -100, 1
    return lambda source, target: function(at_fdcwd, source, at_fdcwd, target, rename_noreplace)


_RENAMEAT2 = _load_renameat2()


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` atomically, failing with EEXIST if ``target`` exists."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(os.fsencode(source), os.fsencode(target)) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # unsupported by this filesystem: fall back
            raise OSError(code, os.strerror(code), str(target))
    os.link(source, target, follow_symlinks=False)  # fails if target exists
    os.unlink(source)


def _place(source: Path, target: Path, action: str) -> str | None:
    """Put ``source`` at ``target`` without ever replacing an existing file."""
    if action == "link":
        try:
            os.link(source, target, follow_symlinks=False)
            return None
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        _copy_no_clobber(source, target)
        return f"{source}: hard links are not possible to {target.parent}; copied instead"
    if action == "move":
        try:
            rename_no_replace(source, target)
            return None
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        _copy_no_clobber(source, target)  # another filesystem, or one without hard links
        os.unlink(source)
        return None
    _copy_no_clobber(source, target)
    return None


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _copy_no_clobber(source: Path, target: Path) -> None:
    """Copy to a temp name beside ``target``, flush to disk, verify, then give it the final name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".clipsort-tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp, follow_symlinks=False)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if os.path.getsize(tmp) != os.path.getsize(source) or _digest(Path(tmp)) != _digest(source):
            raise OSError(errno.EIO, "the copy differs from the original", str(target))
        try:
            os.link(tmp, target)  # fails if target exists
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            if os.path.lexists(target):  # filesystems without hard links: check, then rename
                raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
            os.rename(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _undo_one(source: Path, target: Path, action: str) -> None:
    with contextlib.suppress(OSError):
        if action == "move" and not os.path.lexists(source):
            _place(target, source, "move")
        elif action in ("copy", "link") and os.path.lexists(target):
            os.unlink(target)


def _remove_temp_copies(target: Path) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(target.parent):
            if name.startswith(f".{target.name}.") and name.endswith(".clipsort-tmp"):
                os.unlink(target.parent / name)


# ----------------------------------------------------------------------------- recovery and undo


def complete_or_roll_back(operation: Operation) -> str:
    """Settle a unit a killed run left half-done. Returns "done" or "failed".

    The photo decides: if it reached its target, the rest of the unit follows it;
    if not, whatever of the unit moved goes back.
    """
    files = operation.files
    for _, target in files:
        _remove_temp_copies(target)
    if operation.action == "dedupe":
        return "done" if not os.path.lexists(files[0][0]) else "failed"
    photo_source, photo_target = files[0]
    if operation.action == "move":
        for source, target in files:
            if os.path.lexists(source) and os.path.lexists(target):
                # interrupted between placing and removing the source (link + unlink, or a copy)
                if os.path.samefile(source, target) or _identical(source, target):
                    os.unlink(source)
        forward = os.path.lexists(photo_target) and not os.path.lexists(photo_source)
    else:
        forward = os.path.lexists(photo_target)
    for source, target in files:
        if forward and os.path.lexists(source) and not os.path.lexists(target):
            _place(source, target, operation.action)
        elif not forward and os.path.lexists(target):
            if operation.action == "move" and not os.path.lexists(source):
                rename_no_replace(target, source)
            elif operation.action != "move" and _identical(source, target):
                os.unlink(target)
    if not forward:
        for folder in reversed(operation.folders):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
    return "done" if forward else "failed"


@dataclass
class UndoResult:
    undone: int = 0
    refused: list[FileFailure] | None = None


def undo_operations(view: JournalView, record: Callable[[dict], None]) -> UndoResult:
    """Put back, newest first, every unit ``view`` records as done. Refuses units whose files changed."""
    result = UndoResult(refused=[])
    assert result.refused is not None
    folders: list[Path] = []
    for operation in sorted(view.operations.values(), key=lambda o: o.op, reverse=True):
        if operation.state not in ("done", "undoing"):
            continue
        resuming = operation.state == "undoing"  # an undo killed half-way through this unit
        problem = None if resuming else _undo_problem(operation)
        if problem:
            result.refused.append(FileFailure(operation.files[0][0], problem))
            continue
        record({"type": "undo", "op": operation.op})
        try:
            _put_back(operation, resuming)
        except OSError as exc:
            result.refused.append(FileFailure(operation.files[0][0], f"cannot put back: {exc.strerror or exc}"))
            continue
        record({"type": "undone", "op": operation.op})
        operation.state = "undone"
        result.undone += 1
        folders += operation.folders
    for folder in sorted(set(folders), key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only empty folders the run created
    return result


def _undo_problem(operation: Operation) -> str | None:
    if operation.action == "dedupe":
        source, kept = operation.files[0]
        if os.path.lexists(source):
            return f"{source} exists again"
        if not os.path.exists(kept):
            return f"the kept copy {kept} is gone"
        return None
    for (source, target), stat in zip(operation.files, operation.target_stats, strict=False):
        try:
            st = os.lstat(target)
        except OSError:
            return f"{target} is gone"
        if stat is not None and [st.st_size, st.st_mtime_ns] != list(stat):
            return f"{target} changed since it was sorted; left in place"
        if operation.action == "move" and os.path.lexists(source):
            return f"{source} is taken by another file; {target} left in place"
    return None


def _put_back(operation: Operation, resuming: bool = False) -> None:
    if operation.action == "dedupe":
        source, kept = operation.files[0]
        if resuming and os.path.lexists(source):
            return
        _copy_no_clobber(kept, source)
        stat = operation.source_stats[0] if operation.source_stats else None
        if stat:
            os.utime(source, ns=(stat[1], stat[1]))
        return
    done: list[tuple[Path, Path]] = []
    try:
        for source, target in operation.files:
            if resuming and not os.path.lexists(target):
                continue  # already put back before the interruption
            if operation.action == "move":
                source.parent.mkdir(parents=True, exist_ok=True)
                _place(target, source, "move")
            else:
                os.unlink(target)
            done.append((source, target))
    except OSError:
        for source, target in reversed(done):
            if operation.action == "move":
                _place(source, target, "move")
        raise
