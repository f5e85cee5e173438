"""Settling what a killed ``sort`` left half-done (:func:`recover`), and ``undo``: each journaled
unit (:mod:`clipsort.journal`) is completed, rolled back or put back as one."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clipsort.errors import FileFailure, UsageError
from clipsort.journal import (
    JournalError,
    JournalView,
    Operation,
    all_journals,
    append_record,
    claimed,
    ended_by_its_last_line,
    file_stat,
    read,
    resolve,
)
from clipsort.placing import copy_no_clobber, identical, place, remove_temp_copies, rename_no_replace


def complete_or_roll_back(operation: Operation) -> str:
    """Settle a unit a killed run left half-done. Returns "done" or "failed".

    The photo decides: if it reached its target, the rest of the unit follows it;
    if not, whatever of the unit moved goes back.
    """
    files = operation.files
    for _, target in files:
        remove_temp_copies(target)
    if operation.action == "dedupe":
        return "done" if not os.path.lexists(files[0][0]) else "failed"
    photo_source, photo_target = files[0]
    if operation.action == "move":
        for source, target in files:
            if os.path.lexists(source) and os.path.lexists(target):
                # interrupted between placing and removing the source (link + unlink, or a copy)
                if os.path.samefile(source, target) or identical(source, target):
                    os.unlink(source)
        forward = os.path.lexists(photo_target) and not os.path.lexists(photo_source)
    else:
        forward = os.path.lexists(photo_target)
    for source, target in files:
        if forward and os.path.lexists(source) and not os.path.lexists(target):
            place(source, target, operation.action)
        elif not forward and os.path.lexists(target):
            if operation.action == "move" and not os.path.lexists(source):
                rename_no_replace(target, source)
            elif operation.action != "move" and identical(source, target):
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
        copy_no_clobber(kept, source)
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
                place(target, source, "move")
            else:
                os.unlink(target)
            done.append((source, target))
    except OSError:
        for source, target in reversed(done):
            if operation.action == "move":
                place(source, target, "move")
        raise


# ----------------------------------------------------------------------------- whole journals


def recover(report: Callable[[str], None]) -> int:
    """Finish or roll back the operation a killed run left half-done, in every unfinished journal.

    Returns how many journals were recovered; ``report`` gets one message per action.
    """
    recovered = 0
    for path in all_journals():
        if ended_by_its_last_line(path):
            continue  # the common case, decided without reading the whole file
        try:
            view = read(path)
        except JournalError:
            continue
        if view.ended:
            continue
        with claimed(path) as handle:
            if handle is None:
                continue  # its run is still going
            for operation in view.operations.values():
                if operation.state != "begun":
                    continue
                outcome = complete_or_roll_back(operation)
                append_record(handle, {"type": f"recovered-{outcome}", "op": operation.op})
                if outcome == "done":
                    operation.state = "done"
                    append_record(
                        handle,
                        {"type": "done", "op": operation.op, "stats": [file_stat(t) for _, t in operation.files]},
                    )
                report(
                    f"{path.name}: an interrupted {operation.action} of {operation.files[0][0]} was "
                    + ("completed" if outcome == "done" else "rolled back")
                )
            append_record(handle, {"type": "end", "finished": time.time(), "interrupted": True})
            recovered += 1
    return recovered


def undo(name: str | None, report: Callable[[str], None]) -> tuple[Path, UndoResult]:
    """Undo the sort run recorded in journal ``name`` (default: the newest). Returns (journal, result)."""
    recover(report)
    path = resolve(name)
    view = read(path)
    if view.run.get("command") != "sort":
        raise UsageError(f"{path.name} is not the journal of a sort run")
    with claimed(path) as handle:
        if handle is None:
            raise UsageError(f"the run of {path.name} is still going; undo it when it has finished")
        result = undo_operations(view, lambda record: append_record(handle, record))
        if not result.refused:
            append_record(handle, {"type": "undo-end", "finished": time.time()})
    return path, result
