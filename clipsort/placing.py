"""Placing one file at a new name without ever replacing another: an atomic rename within a
filesystem (``renameat2(RENAME_NOREPLACE)``, or ``link()`` + ``unlink()``), a flushed and verified
copy across filesystems, and taking either back. Used by :mod:`clipsort.mover` and :mod:`clipsort.recovery`."""

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
from collections.abc import Callable
from pathlib import Path

#: Errors that mean "no hard link or rename here" (another filesystem, or one without them): copy instead.
NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def identical(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
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
        copy_no_clobber(source, target)  # another filesystem, or one without hard links
        os.unlink(source)
        return None
    copy_no_clobber(source, target)
    return None


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def copy_no_clobber(source: Path, target: Path) -> None:
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
    with contextlib.suppress(OSError):
        for name in os.listdir(target.parent):
            if name.startswith(f".{target.name}.") and name.endswith(".clipsort-tmp"):
                os.unlink(target.parent / name)
