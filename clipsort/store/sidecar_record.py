"""What clipsort last wrote to each sidecar, kept in the cache, so a nightly re-run costs a stat, not a parse.

For every sidecar ``tag`` writes, the cache keeps its size and mtime right after the
write, and a digest of what was written (keywords, tag root, model, mode). On the
next run a photo whose decision gives the same digest, and whose sidecar still has
that size and mtime, is left alone without reading the sidecar. A sidecar changed
since (edited in digiKam or darktable, touched by a sync tool) has another size or
mtime: it is read and merged again, so the other program's changes are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from typing import NamedTuple

from clipsort.photos.location import Location, cheap_stat
from clipsort.store.cache import EmbeddingCache
from clipsort.store.cache_file import transaction

_TABLE = """
CREATE TABLE IF NOT EXISTS sidecars(
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    has_keywords INTEGER NOT NULL
)
"""


class Written(NamedTuple):  # a tuple: 100,000 of them are made at each start
    size: int
    mtime_ns: int
    digest: str
    has_keywords: bool


def digest_of(*parts: object) -> str:
    """A digest of what a write puts in a sidecar (any JSON-able values)."""
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class SidecarRecord:
    """The record of one run: read in bulk at the start, written in batches."""

    def __init__(self, cache: EmbeddingCache | None) -> None:
        self._db: sqlite3.Connection | None = cache.db if cache is not None else None
        self._known: dict[bytes, Written] = {}
        self._pending: list[tuple[bytes, int, int, str, int]] = []
        if self._db is not None:
            try:
                self._db.execute(_TABLE)
                rows = self._db.execute("SELECT path, size, mtime_ns, digest, has_keywords FROM sidecars")
                self._known = {bytes(r[0]): Written(r[1], r[2], r[3], bool(r[4])) for r in rows}
            except sqlite3.Error:
                self._db = None  # a read-only or odd cache: work as without a record

    def unchanged(self, sidecar: Location | str, digest: str, seen: tuple[int, int] | None = None) -> bool:
        """Whether ``sidecar`` holds exactly what ``digest`` stands for, and nobody touched it since.

        ``seen``: its (size, mtime_ns) when the run found it; None: stat it now.
        """
        known = self._known.get(_key(sidecar))
        if known is None or known.digest != digest:
            return False
        return (seen or cheap_stat(sidecar)) == (known.size, known.mtime_ns)

    def has_keywords(self, sidecar: Location) -> bool | None:
        """Whether clipsort's keywords are in ``sidecar`` by the record; None when the record cannot say."""
        known = self._known.get(_key(sidecar))
        if known is None or cheap_stat(sidecar) != (known.size, known.mtime_ns):
            return None
        return known.has_keywords

    def wrote(self, sidecar: Location, digest: str, has_keywords: Callable[[], bool]) -> None:
        """Note that ``sidecar`` now holds what ``digest`` stands for (stat taken now), and whether it
        holds clipsort's keywords (asked only when the record keeps this sidecar: a sidecar in an
        object store has no cheap stat, and is not kept)."""
        stat = cheap_stat(sidecar)
        if stat is None or self._db is None:
            return
        key = _key(sidecar)
        holds = has_keywords()
        self._known[key] = Written(stat[0], stat[1], digest, holds)
        self._pending.append((key, stat[0], stat[1], digest, int(holds)))
        if len(self._pending) >= 2000:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self._db is None:
            return
        rows, self._pending = self._pending, []
        try:
            with transaction(self._db):
                self._db.executemany(
                    "INSERT OR REPLACE INTO sidecars(path, size, mtime_ns, digest, has_keywords) VALUES(?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error:
            pass  # the record only saves work; losing it costs a parse next time


def _key(sidecar: Location | str) -> bytes:
    """How the record names a sidecar: its path (or URL) as bytes."""
    return os.fsencode(str(sidecar))
