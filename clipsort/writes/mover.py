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
* Every unit is journaled (:mod:`clipsort.store.journal`) before it moves, so an
  interrupted run is completed or rolled back by the next one, and ``undo`` can
  put everything back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clipsort.errors import DestinationFullError, MoveError
from clipsort.labels.names import NameLimits
from clipsort.photos.formats import COMPANION_EXTENSIONS
from clipsort.safe_files import inside, not_regular_reason, real_location
from clipsort.writes.placing import identical, place, undo_one
from clipsort.writes.sidecar import json_path, xmp_path

if TYPE_CHECKING:
    from clipsort.store.journal import Journal

MODES = ("move", "copy", "link")
_FULL = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True)
class Plan:
    """What will happen to one photo: move, copy, link, dedupe, in-place, duplicate, or left
    (left where it is, ``note`` says why)."""

    action: str
    source: Path
    target: Path
    #: (companion, its target) pairs that travel with the photo.
    companions: tuple[tuple[Path, Path], ...] = ()
    note: str | None = None

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
        stem = name.rpartition(".")[0]
        if stem:  # a name with a dot, not only a leading one
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
    if stem_xmp.name in index.names:  # the photo itself is never an .xmp
        others = [
            p for p in same_stem if p.suffix.lower() not in COMPANION_EXTENSIONS + (".xmp",) and p not in partners
        ]
        if not others:
            found.append(stem_xmp)
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
    """Whether ``a`` and ``b`` are one folder that exists (a destination not made yet is not)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class Mover:
    """Plans and carries out the placement of photos into folders.

    Remembers the names it has given out in this run, so that a dry run shows
    exactly the names a real run would use.
    """

    def __init__(
        self,
        mode: str = "move",
        journal: Journal | None = None,
        dedupe: bool = False,
        roots: Sequence[Path] | None = None,
        dest: Path | None = None,
    ) -> None:
        """``roots`` and ``dest``: the folders sorted and the destination. A photo whose real location
        is outside ``roots`` is left where it is; a target folder whose real location is outside
        ``dest`` (a link in the destination) is refused; names are held to the limits of ``dest``'s
        file system."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.journal = journal
        self.dedupe = dedupe
        self._reserved: set[str] = set()
        self._folders: dict[str, FolderIndex] = {}
        self._roots = [os.path.realpath(root) for root in roots] if roots else None
        self._dest = os.path.realpath(dest) if dest is not None else None
        self._limits = NameLimits(dest if dest is not None else ".")
        self._real: dict[str, str] = {}  # folder -> its real location, once per folder

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

    def _real_folder(self, folder: Path) -> str:
        key = os.fspath(folder)
        if key not in self._real:
            self._real[key] = os.path.dirname(real_location(folder / "x"))
        return self._real[key]

    def _left_because(self, photo: Path, companions: Sequence[Path]) -> str | None:
        """Why the unit of ``photo`` stays where it is (a link, or outside the folders sorted), or None."""
        for path in (photo, *companions):
            what = "the photo" if path == photo else f"its companion {path.name}"
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue  # gone since: placing it fails, and the unit with it
            if stat.S_ISLNK(mode):
                return f"{what} is a symbolic link: left where it is (moved, a link can end up pointing at nothing)"
            if not stat.S_ISREG(mode):
                return f"{what} {not_regular_reason(mode)}: left where it is"
        if self._roots is not None:
            real = os.path.join(self._real_folder(photo.parent), photo.name)
            if not any(inside(real, root) for root in self._roots):
                return f"it really is in {os.path.dirname(real)}, outside the folders given: left where it is"
        return None

    def _target_problem(self, folder: Path, paths: Sequence[Path]) -> str | None:
        for path in paths:
            problem = self._limits.problem(path)
            if problem:
                return f"cannot be placed as {path.name[:60]!r}...: {problem}"
        if self._dest is not None and not inside(self._real_folder(folder), self._dest):
            return f"{folder} leads outside the destination (to {self._real_folder(folder)}): not followed"
        return None

    def plan(self, photo: Path, folder: Path, partners: Sequence[Path] = ()) -> Plan:
        """Where ``photo`` goes in ``folder``, with its companions and RAW partners.

        Raises :class:`MoveError` when it cannot go there (a name too long, a folder that leads
        outside the destination).
        """
        problem = self._target_problem(folder, [folder / photo.name])
        if problem:
            raise MoveError(photo, problem)
        if _same_folder(photo.parent, folder):
            return Plan("in-place", photo, photo)
        companions = companions_of(photo, self._index(photo.parent), partners)
        why = self._left_because(photo, companions)
        if why:
            return Plan("left", photo, photo, note=why)
        stem, suffix = photo.stem, photo.suffix
        n = 0
        while True:
            name = photo.name if n == 0 else f"{stem}_{n}{suffix}"
            target = folder / name
            pairs = tuple((c, _companion_target(photo, c, target)) for c in companions)
            problem = self._target_problem(folder, [target, *(t for _, t in pairs)])
            if problem:
                raise MoveError(photo, problem)
            taken = [p for p in (target, *(t for _, t in pairs)) if self._taken(p)]
            if not taken:
                break
            if target in taken and identical(photo, target):  # sorted before, maybe under a numbered name
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
        if plan.action in ("in-place", "duplicate", "left"):
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
                note = place(source, target, plan.action)
                if note and source == plan.source:
                    warnings.append(note)
                done.append((source, target))
        except OSError as exc:
            for source, target in reversed(done):
                undo_one(source, target, plan.action)
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
        if not identical(plan.source, plan.target):  # checked again: it may have changed since planning
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
