"""Errors raised by clipsort's library code, each carrying the exit code it maps to.

Core code never prints or exits: it raises one of these, and the CLI's ``main()``
turns it into a one-line message on stderr and the matching exit code.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Protocol


class ExitCode(IntEnum):
    """Process exit codes. Scripts and cron jobs rely on these; see docs/exit-codes.md."""

    OK = 0  #: everything asked for was done
    ERROR = 1  #: the run could not be done (model missing, destination unwritable, ...)
    USAGE = 2  #: bad command line or bad label file
    PARTIAL = 3  #: the run finished, but some files failed (they are named on stderr)
    BUSY = 75  #: another run holds the cache and --no-wait was given (EX_TEMPFAIL: try again later)
    INTERRUPTED = 130  #: stopped by Ctrl-C


class ClipsortError(Exception):
    """Base class of every error clipsort raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(ClipsortError):
    """The command line asks for something impossible or contradictory."""

    exit_code = ExitCode.USAGE


class LabelFileError(UsageError):
    """A label file cannot be used. Names the file and, where known, the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")


class ModelError(ClipsortError):
    """The model cannot be loaded or used."""


class ModelUnavailableError(ModelError):
    """The model's weights are not cached and cannot be downloaded."""


class DeviceError(ClipsortError):
    """The requested compute device does not exist on this machine."""


class CacheBusyError(ClipsortError):
    """Another clipsort run is using the cache, and the user asked not to wait."""

    exit_code = ExitCode.BUSY


class DestinationFullError(ClipsortError):
    """The destination filesystem is full: moving stops, with every photo intact."""


class Place(Protocol):
    """Where a file is: a local :class:`~pathlib.Path`, or an object in a store
    (:class:`clipsort.photos.remote.RemotePath`); both have a name and print as themselves."""

    @property
    def name(self) -> str: ...


class FileFailure(ClipsortError):
    """One photo could not be processed; the run records it and goes on."""

    def __init__(self, path: Place | str, reason: str) -> None:
        # a place kept as it is (Path() would fold a URL's "//"); a string is a local path
        self.path: Place = Path(path) if isinstance(path, str) else path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class DecodeError(FileFailure):
    """The file is not an image Pillow can decode (empty, truncated, not an image, ...)."""


class SidecarError(FileFailure):
    """A sidecar cannot be read, merged or written."""


class MoveError(FileFailure):
    """A photo cannot be moved, copied or linked."""
