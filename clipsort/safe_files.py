"""Opening files that may not be what their names say: the one place for clipsort's rules on
what it reads and how it creates its own files.

* **Only regular files are read.** A FIFO, socket or device where a sidecar, label file,
  journal or configuration is expected would block a run forever or read without end: it is
  refused from its ``stat``, before any ``open`` (opening some devices already acts).
* **Reads are bounded.** Each kind of file has a documented size limit (:data:`LIMITS`,
  docs/security.md); a larger file is refused, not read.
* **Links are not followed where clipsort creates or replaces files** (locks, journals,
  the cache, temporary copies, sidecars it merges): a link planted there could point at a
  file outside clipsort's folders.

Every refusal is an :class:`UnsafeFile`, an ``OSError`` whose ``strerror`` says why in
words (``is a FIFO, not a regular file``), so callers that already turn ``OSError`` into
a one-line message need nothing new.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

#: The largest file of each kind clipsort reads (bytes). XMP sidecars written by photo
#: managers are a few KiB to a few hundred KiB (darktable's with a long history, a few MiB).
SIDECAR_LIMIT = 16 * MiB
#: Label files: a text file of 100,000 labels is about 2 MiB; a learned file holds a vector per label.
LABEL_FILE_LIMIT = 64 * MiB
#: The most labels one file may hold (each is embedded with up to a dozen prompts).
MAX_LABELS = 20_000
CONFIG_LIMIT = 1 * MiB
#: A journal grows by about 1 KiB per photo sorted: 1 GiB is about a million photos.
JOURNAL_LIMIT = 1024 * MiB
JOURNAL_LINE_LIMIT = 1 * MiB
#: Small JSON files that come with models and artifacts (open_clip_config.json, manifest.json).
MODEL_CONFIG_LIMIT = 16 * MiB

LIMITS = {
    "sidecar": SIDECAR_LIMIT,
    "label file": LABEL_FILE_LIMIT,
    "config file": CONFIG_LIMIT,
    "journal": JOURNAL_LIMIT,
    "model config": MODEL_CONFIG_LIMIT,
}


class UnsafeFile(OSError):
    """A file clipsort refuses to open or read: not a regular file, a link where none may be,
    or larger than its limit. ``strerror`` is the reason, in words."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(errno.EINVAL, reason, str(path))
        self.reason = reason


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words: ``a FIFO``, ``a folder``..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def not_regular_reason(mode: int) -> str:
    return f"is {kind_of(mode)}, not a regular file"


def human_size(size: int) -> str:
    """``2.1 MiB``: a number of bytes for people."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def human_limit(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB and limit % MiB == 0 else f"{limit} bytes"


def open_regular(path: Path | str, *, follow: bool) -> int:
    """A read-only descriptor of the regular file ``path``.

    Its type is checked with ``stat`` (``lstat`` when ``follow`` is False: a symbolic link is
    refused) before it is opened, and again on the open descriptor, which must be the same file:
    a FIFO or device is never opened, and one swapped in between is not read.
    """
    before = os.stat(path, follow_symlinks=follow)
    if not stat.S_ISREG(before.st_mode):
        raise UnsafeFile(path, not_regular_reason(before.st_mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    return _open_same(path, flags, before)


def _open_same(path: Path | str, flags: int, before: os.stat_result | None, mode: int = 0o644) -> int:
    """``os.open``, then proof that what was opened is a regular file, and the one ``before``
    described (None: one just created). A link met with ``O_NOFOLLOW`` is refused in words."""
    try:
        handle = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(path, "is a symbolic link") from None
        raise
    after = os.fstat(handle)
    same = before is None or (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    if not stat.S_ISREG(after.st_mode) or not same:
        os.close(handle)
        raise UnsafeFile(path, "changed while it was being opened")
    return handle


def read_regular(path: Path | str, limit: int, what: str = "file", follow: bool = True) -> bytes:
    """The bytes of the regular file ``path``, refused (:class:`UnsafeFile`) when it is not one or
    holds more than ``limit`` bytes. ``what`` names the kind of file in the message."""
    handle = open_regular(path, follow=follow)
    try:
        size = os.fstat(handle).st_size
        if size > limit:
            raise UnsafeFile(path, f"is {size / MiB:.1f} MiB, more than the {human_limit(limit)} a {what} may be")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(handle, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise UnsafeFile(path, f"is more than the {human_limit(limit)} a {what} may be")
        return b"".join(chunks)
    finally:
        os.close(handle)


def read_json(path: Path | str, limit: int = MODEL_CONFIG_LIMIT, what: str = "model config") -> Any:
    """A small JSON file clipsort reads (a model's config, an artifact's manifest), through
    :func:`read_regular`. Raises OSError or ValueError (for nesting too deep too)."""
    try:
        return json.loads(read_regular(path, limit, what))
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply") from None


def regular_or_absent(path: Path | str, follow: bool = False) -> os.stat_result | None:
    """``path``'s stat when it is a regular file, None when nothing is there; :class:`UnsafeFile`
    for anything else (a link, with ``follow`` False; a FIFO; a folder)."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(path, "is a symbolic link" if stat.S_ISLNK(st.st_mode) else not_regular_reason(st.st_mode))
    return st


#: The ending of every temporary file clipsort makes beside a file it is about to place or replace.
TEMP_SUFFIX = ".clipsort-tmp"
#: A file name may be 255 bytes on common file systems; mkstemp adds 8 characters.
_TEMP_NAME_BUDGET = 255 - len(TEMP_SUFFIX) - 8 - 2


def temp_prefix(name: str) -> str:
    """The start of a temporary file's name for ``name``: ``.NAME.``, with NAME cut short where a
    long name would make the temporary name too long for the file system."""
    encoded = os.fsencode(name)
    if len(encoded) > _TEMP_NAME_BUDGET:
        name = os.fsdecode(encoded[:_TEMP_NAME_BUDGET])
    return f".{name}."


def open_append(path: Path | str, mode: int = 0o644) -> int:
    """A descriptor that appends to the regular file ``path`` (created if missing), such as a log the
    user names: a FIFO, socket or device there is refused, never opened (a FIFO would block)."""
    st = regular_or_absent(path, follow=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    return _open_same(path, flags, st, mode)


def create_private(path: Path | str, mode: int = 0o600) -> int:
    """Create ``path`` for writing; never opens an existing file or follows a link (``O_EXCL``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, mode)


def open_own(path: Path | str, mode: int = 0o644) -> int:
    """Open (or create) a file clipsort keeps for itself, such as a lock, for reading and writing,
    without following a link. An existing file must be a regular file with no other name (a hard
    link would make writes land in another file too)."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        pass
    before = regular_or_absent(path)  # a link or special file: refused
    if before is None:
        raise FileNotFoundError(errno.ENOENT, "removed while it was being opened", str(path))
    handle = _open_same(path, flags, before)
    after = os.fstat(handle)
    if after.st_nlink > 1:
        os.close(handle)
        raise UnsafeFile(path, f"has {after.st_nlink} names (hard links): writing to it would change another file")
    return handle


def inside(path: Path | str, base: Path | str) -> bool:
    """Whether ``path`` is ``base`` or below it, by their absolute, normalised names."""
    path, base = os.fspath(path), os.fspath(base)
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def real_location(path: Path) -> str:
    """Where ``path`` really is: its folder with links resolved as far as it exists, the rest of
    the folder's name as it is, then ``path``'s own name (``path`` itself is not followed: a link
    is where it is). ``os.path.realpath`` resolves a path that does not exist yet this way."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temp file in the same folder, flushed, and a rename:
    a crash leaves either the old file or the new one, never a half-written one.

    An existing file's permission bits are kept (a new file gets ``0o666`` less the umask); a link
    or special file at ``path`` is never replaced (:class:`UnsafeFile`). OSError when it cannot be
    written, the temp file removed."""
    existing = regular_or_absent(path)
    mode = existing.st_mode & 0o7777 if existing is not None else None
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import: os.umask() can only be read by setting it, which races with other threads.
_UMASK = _read_umask()
