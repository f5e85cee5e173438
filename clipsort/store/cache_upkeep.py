"""The embedding cache's upkeep (``clipsort cache``): dropping what no file needs any more, clearing
models, checking and sizing the file. A part of :class:`clipsort.store.cache.EmbeddingCache`."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clipsort.store.cache_file import transaction

if TYPE_CHECKING:
    from clipsort.store.cache import ModelInfo

#: Frames of clips no photo row holds any more (by content, per model).
_ORPHAN_FRAMES = (
    "DELETE FROM frames WHERE NOT EXISTS (SELECT 1 FROM images i"
    " WHERE i.model_id = frames.model_id AND i.fingerprint = frames.fingerprint)"
)


class Upkeep:
    """Upkeep of an open cache file (``db``)."""

    db: sqlite3.Connection
    path: Path

    if TYPE_CHECKING:

        def models(self) -> list[ModelInfo]: ...

    def prune(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Drop entries of files that no longer exist. Returns how many were dropped."""
        gone: list[tuple[int, bytes]] = []
        seen = 0
        for model_id, raw in self.db.execute("SELECT model_id, path FROM images"):
            seen += 1
            if not os.path.lexists(os.fsdecode(raw)):
                gone.append((model_id, raw))
            if on_progress and seen % 1000 == 0:
                on_progress(seen)
        with transaction(self.db):
            self.db.executemany("DELETE FROM images WHERE model_id=? AND path=?", gone)
            self.db.execute(_ORPHAN_FRAMES)
        self.vacuum()
        return len(gone)

    def prune_models(self) -> list[str]:
        """Drop the models that hold no photo's vector (and their prompts'). Returns their names."""
        with transaction(self.db):
            rows = self.db.execute(
                "SELECT id, name FROM models m WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.model_id=m.id)"
            ).fetchall()
            self.db.executemany("DELETE FROM models WHERE id=?", [(row[0],) for row in rows])
        self.vacuum()
        return [str(row[1]) for row in rows]

    def matching(self, model: str | None = None) -> list[ModelInfo]:
        """The models :meth:`clear` drops: all, or those whose name or identity contains ``model``."""
        return [info for info in self.models() if model is None or model in info.name or model in info.identity]

    def clear(self, model: str | None = None) -> int:
        """Drop every entry, or those of models whose name or identity contains ``model``. Returns models dropped."""
        identities = [info.identity for info in self.matching(model)]
        with transaction(self.db):
            if model is None:
                self.db.execute("DELETE FROM images")
                self.db.execute("DELETE FROM texts")
                self.db.execute("DELETE FROM frames")
                self.db.execute("DELETE FROM models")
            else:
                self.db.executemany("DELETE FROM models WHERE identity=?", [(i,) for i in identities])
        self.vacuum()
        return len(identities)

    def vacuum(self) -> None:
        self.db.execute("VACUUM")

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def size_on_disk(self) -> int:
        return sum(
            Path(str(self.path) + suffix).stat().st_size
            for suffix in ("", "-wal", "-shm")
            if Path(str(self.path) + suffix).exists()
        )
