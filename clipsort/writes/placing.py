"""Placing one file at a new name without ever replacing another: an atomic rename within a
filesystem (``renameat2(RENAME_NOREPLACE)``, or ``link()`` + ``unlink()``), a flushed and verified
copy across filesystems, and taking either back. Used by
:mod:`clipsort.writes.mover` and :mod:`clipsort.writes.recovery`."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import filecmp
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from clipsort.safe_files import TEMP_SUFFIX, open_regular, temp_prefix

#: Errors that mean "no hard link or rename here" (another filesystem, or one without them): copy instead.
NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def identical(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are regular files (links are not followed) with the same bytes."""
    try:
        first, second = os.lstat(a), os.lstat(b)
        if not (stat.S_ISREG(first.st_mode) and stat.S_ISREG(second.st_mode)):
            return False
        return first.st_size == second.st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


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


def place(source: Path, target: Path, action: str) -> str | None:
    """Put ``source`` at ``target`` without ever replacing an existing file."""
    if action == "link":
        try:
            os.link(source, target, follow_symlinks=False)
            return None
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
        copy_no_clobber(source, target)
        return f"{source}: hard links are not possible to {target.parent}; copied instead"
    if action == "move":
        try:
            rename_no_replace(source, target)
            return None
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
        # Another filesystem, or one without hard links: copy, then remove the source, but only if
        # it is still the file that was copied (a photo edited meanwhile must not lose its edit).
        before = _version(source)
        copy_no_clobber(source, target)
        if _version(source) != before:
            os.unlink(target)  # the copy, just made: the source keeps the newer bytes
            raise OSError(errno.EAGAIN, "the photo changed while it was being copied; left where it is", str(source))
        os.unlink(source)
        return None
    copy_no_clobber(source, target)
    return None


def _version(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file's bytes are written: inode, size and modification and change times."""
    st = os.lstat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    with os.fdopen(open_regular(path, follow=False), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def copy_no_clobber(source: Path, target: Path) -> None:
    """Copy to a temp name beside ``target``, flush to disk, verify, then give it the final name.

    ``source`` must be a regular file (a link is not followed); the copy keeps its permission
    bits, times and extended attributes.
    """
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, os.fdopen(open_regular(source, follow=False), "rb") as original:
            shutil.copyfileobj(original, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(source, tmp, follow_symlinks=False)
        if os.path.getsize(tmp) != os.path.getsize(source) or _digest(Path(tmp)) != _digest(source):
            raise OSError(errno.EIO, "the copy differs from the original", str(target))
        try:
            os.link(tmp, target)  # fails if target exists
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
            if os.path.lexists(target):  # filesystems without hard links: check, then rename
                raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
            os.rename(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def undo_one(source: Path, target: Path, action: str) -> None:
    with contextlib.suppress(OSError):
        if action == "move" and not os.path.lexists(source):
            place(target, source, "move")
        elif action in ("copy", "link") and os.path.lexists(target):
            os.unlink(target)


def remove_temp_copies(target: Path) -> None:
    """Remove the temp copies a killed run left beside ``target`` (named by :func:`temp_prefix`)."""
    prefix = temp_prefix(target.name)
    with contextlib.suppress(OSError):
        for name in os.listdir(target.parent):
            if name.startswith(prefix) and name.endswith(TEMP_SUFFIX):
                os.unlink(target.parent / name)
