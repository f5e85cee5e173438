"""Settling what a killed ``sort`` left half-done (:func:`recover`), and ``undo``: each journaled
unit (:mod:`clipsort.store.journal`) is completed, rolled back or put back as one.

Nothing here trusts a journal's word alone. A journal is acted on only when it is sealed by
this user's key and every path in it lies in its run's folders (:mod:`clipsort.store.journal_check`);
a file is moved, copied back or deleted only when it is still the file the journal recorded
(same device, inode, size, mtime and change time), and a file is deleted only when its bytes live on
elsewhere: a copy whose original is still there, a name that is a hard link of another, a
source whose moved self is already in place.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clipsort.errors import FileFailure, UsageError
from clipsort.store.journal import RETAG, Identity, JournalError, identity_of
from clipsort.store.journal_check import Bounds, as_identity, check_journal
from clipsort.store.journal_read import (
    Appender,
    JournalView,
    Operation,
    all_journals,
    claimed,
    ended_by_its_last_line,
    read,
    resolve,
)
from clipsort.writes.placing import copy_no_clobber, identical, place, remove_temp_copies, rename_no_replace
from clipsort.writes.undo_in_photo import Restorer, settle_retag


def _same(path: Path, expected: Identity | None) -> bool:
    """Whether ``path`` is still exactly the file recorded as ``expected`` (after the run placed it)."""
    return expected is not None and identity_of(path) == expected


def _unchanged_source(path: Path, expected: Identity | None) -> bool:
    """Whether ``path`` is still the source recorded before its operation began: its change time is
    not compared, since placing it (a hard link, a rename) changes that by itself."""
    found = identity_of(path)
    return expected is not None and found is not None and found[:4] == expected[:4]


def _placed_from(target: Path, source: Path, source_id: Identity | None) -> bool:
    """Whether ``target`` is the file clipsort placed from ``source`` (recorded as ``source_id``):
    the same inode (renamed or linked), or a copy of it (same size and mtime, and the same bytes
    where the source is still there)."""
    found = identity_of(target)
    if found is None or source_id is None:
        return False
    if found[:2] == source_id[:2]:
        return True
    if found[2:4] != source_id[2:4]:
        return False
    return not os.path.lexists(source) or identical(source, target)


def complete_or_roll_back(operation: Operation) -> tuple[str, list[str]]:
    """Settle a unit a killed run left half-done. Returns ("done" or "failed", files left alone).

    The photo decides: if it reached its target, the rest of the unit follows it; if not,
    whatever of the unit moved goes back. A file that is not the one recorded is left alone.
    """
    files = operation.files
    ids = [as_identity(s) for s in operation.source_stats]
    left: list[str] = []
    for _, target in files:
        remove_temp_copies(target)
    if operation.action == "dedupe":
        return ("done" if not os.path.lexists(files[0][0]) else "failed"), left
    if operation.action == "move":
        for (source, target), source_id in zip(files, ids, strict=True):
            if os.path.lexists(source) and os.path.lexists(target) and _unchanged_source(source, source_id):
                # interrupted between placing and removing the source (link + unlink, or a copy)
                if os.path.samefile(source, target) or (_placed_from(target, source, source_id)):
                    os.unlink(source)
        photo_source, photo_target = files[0]
        forward = _placed_from(photo_target, photo_source, ids[0]) and not os.path.lexists(photo_source)
    else:
        forward = _placed_from(files[0][1], files[0][0], ids[0])
    for (source, target), source_id in zip(files, ids, strict=True):
        if forward and os.path.lexists(source) and not os.path.lexists(target):
            if _unchanged_source(source, source_id):
                place(source, target, operation.action)
            else:
                left.append(f"{source} changed since the run began; left where it is")
        elif not forward and os.path.lexists(target):
            if not _placed_from(target, source, source_id):
                left.append(f"{target} is not the file the run placed; left alone")
            elif not os.path.lexists(source):
                if operation.action == "move":
                    rename_no_replace(target, source)
                # a copy or link whose original is gone since stays: it may be the only one now
            elif _second_copy(source, target):
                os.unlink(target)  # the file is at its source: this is a second name or a copy of it
    if not forward:
        for folder in reversed(operation.folders):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only an empty folder goes
    return ("done" if forward else "failed"), left


@dataclass
class UndoResult:
    undone: int = 0
    refused: list[FileFailure] = field(default_factory=list)


def undo_operations(view: JournalView, record: Callable[[dict], None]) -> UndoResult:
    """Put back, newest first, every unit ``view`` records as done. Refuses units whose files changed.

    ``view`` must have passed :func:`clipsort.store.journal_check.check_journal`.
    """
    result = UndoResult()
    bounds = Bounds(view)
    folders: list[Path] = []
    restorer = Restorer()  # photos whose keywords a tag run rewrote (ExifTool started at the first)
    try:
        for operation in sorted(view.operations.values(), key=lambda o: o.op, reverse=True):
            if operation.state in ("done", "undoing") and _undo_one(operation, bounds, restorer, record, result):
                folders += operation.folders
    finally:
        restorer.close()
    for folder in sorted(set(folders), key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only empty folders the run created
    return result


def _undo_one(
    operation: Operation, bounds: Bounds, restorer: Restorer, record: Callable[[dict], None], result: UndoResult
) -> bool:
    """Put back one unit (refused into ``result`` when it may not be); whether it was."""
    resuming = operation.state == "undoing"  # an undo killed half-way through this unit
    retag = operation.action == RETAG
    problem = bounds.problem(operation) or (
        restorer.problem(operation, resuming) if retag else _undo_problem(operation, resuming)
    )
    if problem:
        result.refused.append(FileFailure(operation.files[0][0], problem))
        return False
    record({"type": "undo", "op": operation.op})
    try:
        if retag:
            restorer.put_back(operation, resuming)
        else:
            _put_back(operation, resuming)
    except FileFailure as failure:
        result.refused.append(failure)
        return False
    except OSError as exc:
        result.refused.append(FileFailure(operation.files[0][0], f"cannot put back: {exc.strerror or exc}"))
        return False
    record({"type": "undone", "op": operation.op})
    operation.state = "undone"
    result.undone += 1
    return True


def _second_copy(source: Path, target: Path) -> bool:
    """Whether deleting ``target`` loses nothing: ``source`` is there, the same file (a hard link) or
    the same bytes (a copy)."""
    try:
        return os.path.samefile(source, target) or identical(source, target)
    except OSError:
        return False


def _put_back_already(source: Path, placed: Identity | None) -> bool:
    """Whether a file placed as ``placed`` is back at ``source`` (an undo killed after moving it)."""
    found = identity_of(source)
    return found is not None and placed is not None and (found[:2] == placed[:2] or found[2:4] == placed[2:4])


def _undo_problem(operation: Operation, resuming: bool) -> str | None:
    placed = [as_identity(s) for s in operation.target_stats]
    if operation.action == "dedupe":
        source, kept = operation.files[0]
        if os.path.lexists(source):
            return f"{source} exists again" if not resuming else None
        if not _same(kept, placed[0]):
            return f"the kept copy {kept} is gone or changed since the sort; {source} not restored"
        return None
    for (source, target), expected in zip(operation.files, placed, strict=True):
        if resuming and not os.path.lexists(target) and _put_back_already(source, expected):
            continue
        if not os.path.lexists(target):
            return f"{target} is gone"
        if not _same(target, expected):
            return f"{target} changed since it was sorted; left in place"
        if operation.action == "move" and os.path.lexists(source):
            return f"{source} is taken by another file; {target} left in place"
        if operation.action in ("copy", "link") and not _second_copy(source, target):
            return f"the original {source} is gone or changed: {target} may be its only copy; left in place"
    return None


def _put_back(operation: Operation, resuming: bool) -> None:
    if operation.action == "dedupe":
        source, kept = operation.files[0]
        if resuming and os.path.lexists(source):
            return
        copy_no_clobber(kept, source)
        stat = as_identity(operation.source_stats[0]) if operation.source_stats else None
        if stat:
            os.utime(source, ns=(stat[3], stat[3]), follow_symlinks=False)
        return
    done: list[tuple[Path, Path]] = []
    try:
        for source, target in operation.files:
            if resuming and not os.path.lexists(target):
                continue  # already put back before the interruption
            if operation.action == "move":
                source.parent.mkdir(parents=True, exist_ok=True)
                place(target, source, "move")
            else:
                os.unlink(target)  # a copy whose original is there, or a second name of it (checked)
            done.append((source, target))
    except OSError:
        for source, target in reversed(done):
            if operation.action == "move":
                place(source, target, "move")
        raise


# ----------------------------------------------------------------------------- whole journals


def recover(report: Callable[[str], None]) -> int:
    """Finish or roll back the operation a killed run left half-done, in every unfinished journal.

    Returns how many journals were recovered; ``report`` gets one message per action, and one
    for each unfinished journal that is not acted on (refused, and why).
    """
    recovered = 0
    for path in all_journals():
        if ended_by_its_last_line(path):
            continue  # the common case, decided without reading the whole file
        try:
            with claimed(path) as handle:
                if handle is None:
                    continue  # its run is still going
                view = read(path)  # read once the lock is held: nothing is appended meanwhile
                if view.ended:
                    continue
                check_journal(view)
                recovered += _recover_one(view, Appender(handle, view), report)
        except JournalError as exc:
            report(f"an interrupted run was not recovered: {exc}")
    return recovered


def _recover_one(view: JournalView, append: Appender, report: Callable[[str], None]) -> int:
    bounds = Bounds(view)
    for operation in view.operations.values():
        if operation.state != "begun":
            continue
        problem = bounds.problem(operation)
        if problem:
            outcome, left = "failed", [problem]
        elif operation.action == RETAG:
            outcome, left = settle_retag(operation)
        else:
            outcome, left = complete_or_roll_back(operation)
        append({"type": f"recovered-{outcome}", "op": operation.op})
        if outcome == "done":
            operation.state = "done"
            append({"type": "done", "op": operation.op, "stats": [identity_of(t) for _, t in operation.files]})
        report(
            f"{view.path.name}: an interrupted "
            + ("keyword rewrite" if operation.action == RETAG else operation.action)
            + f" of {operation.files[0][0]} was "
            + ("completed" if outcome == "done" else "rolled back")
        )
        for note in left:
            report(f"{view.path.name}: {note}")
    append({"type": "end", "finished": time.time(), "interrupted": True})
    return 1


def undo(name: str | None, report: Callable[[str], None]) -> tuple[Path, UndoResult]:
    """Undo the sort or tag run recorded in journal ``name`` (default: the newest). Returns (journal, result).

    Raises :class:`clipsort.store.journal.JournalRefused` (nothing touched) for a journal that is not
    this user's clipsort's own, was changed, is from an older clipsort, or names files outside
    its run's folders.
    """
    recover(report)
    path = resolve(name)
    with claimed(path) as handle:
        if handle is None:
            raise UsageError(f"the run of {path.name} is still going; undo it when it has finished")
        view = read(path)
        check_journal(view)
        append = Appender(handle, view)
        result = undo_operations(view, append)
        if not result.refused:
            append({"type": "undo-end", "finished": time.time()})
    return path, result
