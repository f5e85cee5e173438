"""Move, copy or hard-link photos into label folders, their sidecars with them.

Rules (docs/sorting.md):

* Nothing is ever overwritten. Placing a file uses ``link()`` (which fails if the
  name exists) or a temp file + ``link()``; a name clash gets a numbered suffix
  (``photo_1.jpg``), chosen so that the photo and all its sidecars are free.
* A file whose identical copy already sits at the destination name is left
  where it is and reported as a duplicate.
* A photo and its sidecars (``photo.jpg.xmp``, ``photo.xmp``,
  ``photo.jpg.clipsort.json``) move as one unit: if a sidecar cannot follow,
  what was moved goes back.
* A photo already in its target folder is not touched, so sorting a sorted
  folder again changes nothing.
"""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clipsort.errors import MoveError
from clipsort.sidecar import json_path, xmp_path

MODES = ("move", "copy", "link")
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


@dataclass(frozen=True)
class Plan:
    """What will happen to one photo. ``action`` is one of: move, copy, link, in-place, duplicate."""

    action: str
    source: Path
    target: Path
    #: (sidecar, its target) pairs that travel with the photo.
    companions: tuple[tuple[Path, Path], ...] = ()


def companions_of(photo: Path) -> list[Path]:
    """The sidecars that belong to ``photo`` and exist.

    ``photo.xmp`` is taken only when no other file shares the photo's stem
    (``photo.jpg`` beside ``photo.cr2`` makes it ambiguous).
    """
    found = [p for p in (xmp_path(photo, "full"), json_path(photo)) if p.is_file()]
    stem_xmp = xmp_path(photo, "stem")
    if stem_xmp != photo and stem_xmp.is_file() and not _stem_shared(photo):
        found.insert(1, stem_xmp)
    return found


def _stem_shared(photo: Path) -> bool:
    prefix = photo.stem + "."
    try:
        names = os.listdir(photo.parent)
    except OSError:
        return True
    for name in names:
        if name == photo.name or not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if "." not in rest and rest.lower() not in ("xmp",):
            return True  # another file with the same stem: photo.cr2, photo.png, photo.mov ...
    return False


def _companion_target(photo: Path, sidecar: Path, target: Path) -> Path:
    if sidecar.name.startswith(photo.name):  # photo.jpg.xmp, photo.jpg.clipsort.json
        return target.with_name(target.name + sidecar.name[len(photo.name) :])
    return target.with_name(target.stem + sidecar.name[len(photo.stem) :])  # photo.xmp


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

    def __init__(self, mode: str = "move") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self._reserved: set[str] = set()

    def plan(self, photo: Path, folder: Path) -> Plan:
        """Where ``photo`` goes in ``folder``, with its sidecars."""
        if photo.parent.exists() and folder.exists() and _same_folder(photo.parent, folder):
            return Plan("in-place", photo, photo)
        sidecars = companions_of(photo)
        stem, suffix = photo.stem, photo.suffix
        n = 0
        while True:
            name = photo.name if n == 0 else f"{stem}_{n}{suffix}"
            target = folder / name
            pairs = tuple((s, _companion_target(photo, s, target)) for s in sidecars)
            taken = [p for p in (target, *(t for _, t in pairs)) if self._taken(p)]
            if not taken:
                break
            if n == 0 and target in taken and _identical(photo, target):
                return Plan("duplicate", photo, target)
            n += 1
        for path in (target, *(t for _, t in pairs)):
            self._reserved.add(os.path.abspath(path))
        return Plan(self.mode, photo, target, pairs)

    def _taken(self, path: Path) -> bool:
        return os.path.lexists(path) or os.path.abspath(path) in self._reserved

    def execute(self, plan: Plan) -> list[str]:
        """Carry out ``plan``. Returns warnings (e.g. a link that fell back to a copy).

        Raises :class:`MoveError`; then the photo and its sidecars are where they were.
        """
        if plan.action in ("in-place", "duplicate"):
            return []
        warnings: list[str] = []
        try:
            plan.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MoveError(plan.source, f"cannot create folder {plan.target.parent}: {exc.strerror or exc}") from None
        done: list[tuple[Path, Path]] = []
        try:
            for source, target in ((plan.source, plan.target), *plan.companions):
                note = _place(source, target, plan.action)
                if note and source == plan.source:
                    warnings.append(note)
                done.append((source, target))
        except OSError as exc:
            failed = exc.filename if isinstance(exc.filename, str) else plan.source
            for source, target in reversed(done):
                _undo(source, target, plan.action)
            raise MoveError(
                plan.source, f"cannot {plan.action} to {plan.target.parent}: {exc.strerror or exc} ({failed})"
            ) from None
        return warnings


def _identical(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


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
            os.link(source, target, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            _copy_no_clobber(source, target)  # another filesystem, or one without hard links
        os.unlink(source)
        return None
    _copy_no_clobber(source, target)
    return None


def _copy_no_clobber(source: Path, target: Path) -> None:
    """Copy to a temp name beside ``target``, flush to disk, then give it the final name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".clipsort-tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if os.path.getsize(tmp) != os.path.getsize(source):
            raise OSError(errno.EIO, "copy is incomplete", str(target))
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


def _undo(source: Path, target: Path, action: str) -> None:
    try:
        if action == "move" and not os.path.lexists(source):
            _place(target, source, "move")
        elif action in ("copy", "link"):
            os.unlink(target)
    except OSError:
        pass
