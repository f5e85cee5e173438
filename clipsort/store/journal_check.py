"""What makes a journal safe to act on, checked before undo or recovery touches a file.

A journal tells :mod:`clipsort.writes.recovery` which files to move, copy back or delete, so every
path in it is held to its run's own folders: sources inside the folders sorted (``roots``),
targets and created folders inside the destination (``dest``), all absolute and normalised;
and every file an undo or recovery may touch must carry the identity it had (device, inode,
size, mtime_ns, ctime_ns). A journal that breaks any of these is refused as a whole
(:class:`JournalRefused`), before anything happens. When a file is about to be touched, its
real location (links in its folders resolved) must still be inside those folders:
:class:`Bounds`. A ``tag`` run's journal is held to the folders it tagged: each operation
rewrote one photo there in place, with its temporary file beside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from clipsort.safe_files import TEMP_SUFFIX, inside, real_location, temp_prefix
from clipsort.store.journal import ACTIONS, LEGACY_HELP, RETAG, Identity, JournalRefused
from clipsort.store.journal_read import JournalView, Operation


def _clean(path: str | os.PathLike[str]) -> bool:
    text = os.fspath(path)
    return os.path.isabs(text) and os.path.normpath(text) == text and "\0" not in text


def as_identity(value: object) -> Identity | None:
    """A recorded identity, or None when ``value`` is not one."""
    if isinstance(value, list) and len(value) == 5 and all(type(v) is int for v in value):
        return (value[0], value[1], value[2], value[3], value[4])
    return None


def check_journal(view: JournalView) -> None:
    """Refuse (:class:`JournalRefused`) a journal undo or recovery must not act on; see the module."""
    name = view.path.name
    if view.legacy:
        raise JournalRefused(f"{name}: {LEGACY_HELP}")
    run = view.run
    if run.get("command") == "tag":
        _check_tag_journal(view)
        return
    if run.get("command") != "sort":
        raise JournalRefused(f"{name} is not the journal of a sort run")
    roots, dest = run.get("roots"), run.get("dest")
    if not isinstance(roots, list) or not roots or not all(isinstance(r, str) and _clean(r) for r in roots):
        raise JournalRefused(f"{name}: its run does not name the folders it sorted as absolute paths")
    if not isinstance(dest, str) or not _clean(dest):
        raise JournalRefused(f"{name}: its run does not name its destination as an absolute path")
    for operation in view.operations.values():
        problem = _operation_problem(operation, roots, dest)
        if problem:
            raise JournalRefused(f"{name}: operation {operation.op}: {problem}; nothing was touched")


def _operation_problem(operation: Operation, roots: Sequence[str], dest: str) -> str | None:
    if operation.action not in ACTIONS:
        return f"unknown action {operation.action!r}"
    if not operation.files or (operation.action == "dedupe" and len(operation.files) != 1):
        return "no files, or a dedupe of several"
    for source, target in operation.files:
        if not _clean(source) or not _clean(target):
            return f"a path that is not absolute and normalised ({source} -> {target})"
        if not any(inside(source, root) for root in roots):
            return f"{source} is outside the folders its run sorted"
        if not inside(target, dest) or os.fspath(target) == dest:
            return f"{target} is outside its run's destination {dest}"
    for folder in operation.folders:  # made by the run: the destination, its missing parents, folders in it
        if not _clean(folder) or not (inside(folder, dest) or inside(dest, folder)):
            return f"the folder {folder} is outside its run's destination {dest}"
    if len(operation.source_stats) != len(operation.files):
        return "it does not record the identity of each file"
    if operation.state in ("begun",) and not all(as_identity(s) for s in operation.source_stats):
        return "it does not record the identity of each file it was moving"
    if operation.state in ("done", "undoing"):
        stats = operation.target_stats
        if len(stats) != len(operation.files) or not all(as_identity(s) for s in stats):
            return "it does not record the identity of each file it placed"
        if operation.action == "dedupe" and not as_identity(operation.source_stats[0]):
            return "it does not record the identity of the duplicate it removed"
    return None


def _check_tag_journal(view: JournalView) -> None:
    """A ``tag --into photo`` run's journal: each operation rewrote one photo inside the folders
    tagged, in place, and records what its keyword fields were (lists of strings) and the
    temporary file beside it."""
    name = view.path.name
    roots = view.run.get("roots")
    if not isinstance(roots, list) or not roots or not all(isinstance(r, str) and _clean(r) for r in roots):
        raise JournalRefused(f"{name}: its run does not name the folders it tagged as absolute paths")
    for operation in view.operations.values():
        problem = _retag_problem(operation, roots)
        if problem:
            raise JournalRefused(f"{name}: operation {operation.op}: {problem}; nothing was touched")


def _retag_problem(operation: Operation, roots: Sequence[str]) -> str | None:
    if operation.action != RETAG or len(operation.files) != 1 or operation.folders:
        return f"not a rewrite of one photo ({operation.action!r})"
    photo, same = operation.files[0]
    if photo != same or not _clean(photo):
        return f"a path that is not absolute and normalised, or two of them ({photo} -> {same})"
    if not any(inside(photo, root) for root in roots):
        return f"{photo} is outside the folders its run tagged"
    temp = operation.temp
    expected = temp_prefix(photo.name)
    if not isinstance(temp, str) or not _clean(temp) or os.path.dirname(temp) != os.fspath(photo.parent):
        return f"its temporary file is not beside {photo}"
    if not (os.path.basename(temp).startswith(expected) and temp.endswith(TEMP_SUFFIX)):
        return f"its temporary file {temp} is not named as clipsort names them"
    before = operation.before
    fields = before.get("fields") if isinstance(before, dict) else None
    if (
        not isinstance(before, dict)
        or not isinstance(before.get("xmp"), bool)
        or not isinstance(fields, dict)
        or not all(isinstance(k, str) and _strings(v) for k, v in fields.items())
        or not _strings(before.get("iptc"))
    ):
        return "it does not record the photo's keywords as they were"
    if len(operation.source_stats) != 1:
        return "it does not record the photo's identity"
    if operation.state in ("done", "undoing") and not (
        len(operation.target_stats) == 1 and as_identity(operation.target_stats[0])
    ):
        return "it does not record the identity of the photo it rewrote"
    return None


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class Bounds:
    """A run's folders, as they really are now: a file about to be touched must still be in them."""

    def __init__(self, view: JournalView) -> None:
        self.roots = [os.path.realpath(r) for r in view.run["roots"]]
        #: None: a run that moved nothing (tag): its files stay in the folders it tagged.
        self.dest = os.path.realpath(view.run["dest"]) if "dest" in view.run else None

    def problem(self, operation: Operation) -> str | None:
        """Why a file of ``operation`` may not be touched now (a folder on its way is a link to
        somewhere else since), or None."""
        for source, target in operation.files:
            real = real_location(source)
            if not any(inside(real, root) for root in self.roots):
                return f"{source} now leads outside the folders sorted (to {real}); left alone"
            real = real_location(target)
            if self.dest is not None and not inside(real, self.dest):
                return f"{target} now leads outside the destination (to {real}); left alone"
            if self.dest is None and not any(inside(real, root) for root in self.roots):
                return f"{target} now leads outside the folders tagged (to {real}); left alone"
        return None
