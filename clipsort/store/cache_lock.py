"""One clipsort run per cache file: :class:`CacheLock`, an ``flock`` that the OS releases when
its holder dies, so a stale lock never blocks."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from clipsort.errors import CacheBusyError
from clipsort.safe_files import open_own
from clipsort.store.cache_file import CacheError


class CacheLock:
    """One clipsort run per cache file, held for the whole run.

    An ``flock`` on ``<cache>.lock``: the OS drops it when the holder exits or is
    killed, so a stale lock never blocks. The lock file is opened without following a link,
    must have no other name (hard link), and is written only when it holds nothing or what
    clipsort writes there: a link or a file planted at its name is never emptied. ``wait=False`` raises
    :class:`CacheBusyError`; otherwise ``on_wait`` is called once and the lock is
    awaited.
    """

    def __init__(self, cache_path: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(str(cache_path) + ".lock")
        self.wait = wait
        self.on_wait = on_wait or (lambda message: None)
        self._handle: int | None = None

    def __enter__(self) -> CacheLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock (documented)
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise CacheError(f"the cache folder {self.path.parent} is a file, not a folder") from None
        except OSError as exc:
            raise CacheError(f"cannot create the cache folder {self.path.parent}: {exc.strerror or exc}") from None
        try:
            handle = open_own(self.path)
        except OSError as exc:
            raise CacheError(f"cannot use the lock file {self.path}: {exc.strerror or exc}") from None
        if not _ours(handle):
            os.close(handle)
            raise CacheError(
                f"the lock file {self.path} holds something that is not clipsort's; left untouched "
                "(remove it if it is yours, or choose another --cache)"
            )
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            message = f"another clipsort run{holder} is using the cache {self.path.with_suffix('')}"
            if not self.wait:
                os.close(handle)
                raise CacheBusyError(message + "; not waiting (--no-wait)") from None
            self.on_wait(message + "; waiting for it to finish...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            import fcntl

            with contextlib.suppress(OSError):
                os.ftruncate(self._handle, 0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None


def _ours(handle: int) -> bool:
    """Whether the lock file is empty or holds what clipsort writes there (a holder's pid and time):
    only then may it be emptied and written."""
    try:
        data = os.pread(handle, 4097, 0)
        if not data:
            return True
        record = json.loads(data)
        return isinstance(record, dict) and set(record) == {"pid", "since"} and len(data) < 200
    except (OSError, ValueError):
        return False


def _read_holder(handle: int) -> str:
    try:
        data = json.loads(os.pread(handle, 200, 0) or b"{}")
        return f" (process {int(data['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
