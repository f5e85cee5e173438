"""Undo and recovery of ``tag --into photo|both`` runs: each journaled rewrite of a photo
(:meth:`clipsort.store.journal.Journal.begin_retag`) is put back by writing its keyword fields and
IPTC Keywords as they were, by the same steps as any in-file write (:mod:`clipsort.writes.in_photo`);
the picture and every other field stay as they are.

A photo is put back only when it is still the file the run left (same device, inode, size, mtime
and change time): one edited since is refused and named. A run killed between the journal's
``begin`` and ``done`` left the photo whole either way (the rename is one step): recovery records
which it is, and removes the temporary file if it is still there.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from clipsort.store.journal import identity_of
from clipsort.store.journal_check import as_identity
from clipsort.store.journal_read import Operation
from clipsort.writes.exiftool import ExifTool, ExifToolError
from clipsort.writes.in_photo import InPhotoError, PhotoWriter


class Restorer:
    """Puts photos' keywords back, through one ExifTool made at the first photo."""

    def __init__(self) -> None:
        self._exiftool: ExifTool | None = None
        self._writer: PhotoWriter | None = None
        self._missing: str | None = None

    def problem(self, operation: Operation, resuming: bool) -> str | None:
        """Why ``operation``'s photo may not be put back now, or None."""
        photo = operation.files[0][0]
        placed = as_identity(operation.target_stats[0])
        found = identity_of(photo)
        if found is None:
            return f"{photo} is gone"
        if found != placed and not resuming:
            return f"{photo} changed since it was tagged; its keywords left as they are"
        return None

    def put_back(self, operation: Operation, resuming: bool) -> None:
        """Write the photo's keywords as they were (InPhotoError, OSError when it cannot be).
        Resuming an undo that was killed: a photo already put back is left as it is."""
        writer = self._writer_or_error(operation.files[0][0])
        photo = operation.files[0][0]
        if resuming and identity_of(photo) != as_identity(operation.target_stats[0]):
            return  # rewritten since the run: by the undo that was killed (refused otherwise, above)
        writer.restore(photo, operation.before)

    def _writer_or_error(self, photo: Path) -> PhotoWriter:
        if self._writer is None and self._missing is None:
            try:
                self._exiftool = ExifTool()
                self._writer = PhotoWriter(self._exiftool)
            except ExifToolError as exc:
                self._missing = f"its keywords cannot be put back: {exc}"
        if self._writer is None:
            raise InPhotoError(photo, self._missing or "exiftool is not available")
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._exiftool is not None:
            self._exiftool.close()


def settle_retag(operation: Operation) -> tuple[str, list[str]]:
    """A rewrite a killed run left between ``begin`` and ``done``: ``done`` when the photo was
    replaced (its identity is no longer the one recorded before), else ``failed``; its temporary
    file removed if it is still there (a regular file, by the name the journal recorded)."""
    photo = operation.files[0][0]
    before = as_identity(operation.source_stats[0]) if operation.source_stats else None
    found = identity_of(photo)
    temp = Path(operation.temp)
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(temp).st_mode):
            os.unlink(temp)
    if found is None:
        return "failed", [f"{photo} is gone"]
    return ("failed" if found == before else "done"), []
