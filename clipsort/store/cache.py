"""The embedding cache: one SQLite file that remembers image and text vectors per model.

* A vector is stored for (model identity, file identity). Model identity is the
  architecture + pretrained tag, or a hash of the weights and config, plus the
  version of clipsort's decoding (see :func:`model_identity`); several models
  share one file without mixing.
* File identity is (path, size, mtime_ns): an unchanged photo costs one ``stat``
  (done by discovery) and one indexed lookup. A content fingerprint (size and
  hashes of the first and last 64 KiB) lets a renamed or copied photo reuse its
  vector without being decoded.
* Vectors are float16. Prompt embeddings are cached too, so relabelling a
  library never loads the image encoder.
* WAL journal, results committed batch by batch: a run killed at any point keeps
  what it committed. A file that is corrupt or not ours is moved aside and rebuilt.
* Paths are kept absolute, so a run from another folder finds them (before schema 3 they were
  kept as the runs gave them: such rows still serve through their fingerprint).
* A perceptual hash of each photo (:mod:`clipsort.photos.phash`) is kept beside its vector, for
  ``clipsort dupes``; photos indexed before schema 3 get theirs when first needed.
* Search and dupes read many vectors at once (:meth:`EmbeddingCache.scan`): the rows under a
  folder are one range of the ``(model_id, path)`` index.
* One run at a time per cache file: :class:`clipsort.store.cache_lock.CacheLock`. The file itself (schema,
  migrations, opening, setting a damaged file aside): :mod:`clipsort.store.cache_file`.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsort.photos.location import path_key
from clipsort.store.cache_file import connect, open_file, transaction
from clipsort.store.cache_upkeep import Upkeep

#: Bumped whenever decoding or preprocessing changes the pixels a model sees.
DECODE_VERSION = "decode-1"
#: Paths looked up in one query (SQLite allows 999 parameters in builds before 3.32).
LOOKUP_CHUNK = 500


#: What :meth:`EmbeddingCache.scan` can read of each photo.
SCAN_COLUMNS = "path, size, mtime_ns, fingerprint, vector, phash"


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float16).tobytes()


def as_stored(vectors: np.ndarray) -> np.ndarray:
    """Vectors as the cache returns them (float16-rounded), so cached and fresh runs score alike."""
    return np.asarray(vectors, dtype=np.float16).astype(np.float32)


@dataclass(frozen=True)
class ModelInfo:
    identity: str
    name: str
    logit_scale: float | None
    images: int
    texts: int
    used_ns: int


class EmbeddingCache(Upkeep):
    """An open cache file. Not thread-safe: worker threads use :meth:`reader` connections."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self._warn = warn or (lambda message: None)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.db = open_file(self.path, self._warn)
        #: The length of each model's vectors, where known (:meth:`expect_dimension`).
        self._dims: dict[int, int] = {}
        #: Vectors found damaged (not finite, or of the wrong length) and not used.
        self.damaged = 0
        self._damage_lock = threading.Lock()

    # -- checking what comes out ----------------------------------------------------------------
    def expect_dimension(self, model_id: int, dim: int | None) -> None:
        """Vectors of ``model_id`` have ``dim`` numbers: others are damaged and not used."""
        if dim:
            self._dims[model_id] = int(dim)

    def checked_matrix(self, model_id: int, blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of ``blobs`` of one model as the rows of one float16 matrix, and which blobs
        they are (a mask): a blob is left out when it is damaged, of another length than the model's
        (or, where that is not known, than most of them) or holding NaN or infinities. A cache may
        come from elsewhere: what it holds is checked where it enters. The first damage is told
        once (``warn``); a damaged vector counts as not cached."""
        lengths = [len(blob) for blob in blobs]
        if not lengths:
            return np.zeros((0, 0), dtype=np.float16), np.zeros(0, dtype=bool)
        expected = self._dims.get(model_id, 0) * 2 or max(set(lengths), key=lengths.count)
        mask = np.array([n == expected and n > 0 and n % 2 == 0 for n in lengths], dtype=bool)
        if mask.all():
            matrix = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1)
        elif mask.any():
            matrix = np.frombuffer(b"".join(b for b, ok in zip(blobs, mask, strict=True) if ok), dtype=np.float16)
            matrix = matrix.reshape(int(mask.sum()), -1)
        else:
            matrix = np.zeros((0, max(expected // 2, 0)), dtype=np.float16)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            matrix = matrix[finite]
            mask[np.flatnonzero(mask)[~finite]] = False
        if not mask.all():
            self._note_damage(int((~mask).sum()))
        return matrix, mask

    def vectors(self, model_id: int, blobs: Sequence[bytes]) -> list[np.ndarray | None]:
        """The vectors of ``blobs`` (float32), None for each damaged one (see :meth:`checked_matrix`)."""
        matrix, mask = self.checked_matrix(model_id, blobs)
        rows = iter(matrix.astype(np.float32))
        return [next(rows) if ok else None for ok in mask]

    def _note_damage(self, count: int) -> None:
        with self._damage_lock:
            first = self.damaged == 0
            self.damaged += count
        if first:
            self._warn(
                f"the cache {self.path} holds damaged vectors (not finite numbers, or of the wrong length); "
                "they are not used: those photos and prompts are embedded again"
            )

    # -- opening ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        self.db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- models -------------------------------------------------------------------------------
    def model_id(self, identity: str, name: str) -> int:
        now = time.time_ns()
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO models(identity, name, used_ns) VALUES(?, ?, ?) "
                "ON CONFLICT(identity) DO UPDATE SET used_ns=excluded.used_ns, name=excluded.name",
                (identity, name, now),
            )
            row = self.db.execute("SELECT id FROM models WHERE identity=?", (identity,)).fetchone()
        return int(row[0])

    def holds_images(self, identity: str) -> bool:
        """Whether any photo's vector of the model ``identity`` is cached."""
        row = self.db.execute(
            "SELECT EXISTS(SELECT 1 FROM images WHERE model_id=(SELECT id FROM models WHERE identity=?))", (identity,)
        ).fetchone()
        return bool(row[0])

    def logit_scale(self, model_id: int) -> float | None:
        """The model's logit scale as remembered; None when unknown or not a plausible one (CLIP's is
        at most 100): the model is then asked."""
        row = self.db.execute("SELECT logit_scale FROM models WHERE id=?", (model_id,)).fetchone()
        value = _finite(row[0]) if row is not None else None
        return value if value is not None and 0 < value <= 1000 else None

    def set_logit_scale(self, model_id: int, logit_scale: float) -> None:
        """Remember the model's logit scale, so that scoring from the cache needs no model."""
        with transaction(self.db):
            self.db.execute("UPDATE models SET logit_scale=? WHERE id=?", (logit_scale, model_id))

    def model_fact(self, model_id: int, name: str) -> float | None:
        """A number measured once per model (``unrelated_level``), kept in the meta table."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (f"model:{model_id}:{name}",)).fetchone()
        return _finite(row[0]) if row is not None else None

    def set_model_fact(self, model_id: int, name: str, value: float) -> None:
        with transaction(self.db):
            self.db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (f"model:{model_id}:{name}", repr(value))
            )

    def models(self) -> list[ModelInfo]:
        rows = self.db.execute(
            "SELECT m.identity, m.name, m.logit_scale, m.used_ns,"
            " (SELECT COUNT(*) FROM images i WHERE i.model_id=m.id),"
            " (SELECT COUNT(*) FROM texts t WHERE t.model_id=m.id)"
            " FROM models m ORDER BY m.used_ns DESC"
        ).fetchall()
        return [ModelInfo(r[0], r[1], r[2], r[4], r[5], r[3]) for r in rows]

    # -- texts --------------------------------------------------------------------------------
    def texts(self, model_id: int, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(dict.fromkeys(texts)), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT text, vector FROM texts WHERE model_id=? AND text IN ({marks})", (model_id, *chunk)
            ).fetchall()
            for (text, _), vector in zip(rows, self.vectors(model_id, [blob for _, blob in rows]), strict=True):
                if vector is not None:
                    found[text] = vector
        return found

    def put_texts(self, model_id: int, texts: Sequence[str], vectors: np.ndarray) -> None:
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO texts(model_id, text, vector) VALUES(?, ?, ?)",
                [(model_id, text, to_blob(v)) for text, v in zip(texts, vectors, strict=True)],
            )

    # -- images -------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """A read connection for the calling thread (WAL lets it read while the run writes)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    def lookup_path(
        self, model_id: int, path: Path, size: int, mtime_ns: int, db: sqlite3.Connection | None = None
    ) -> np.ndarray | None:
        return self.lookup_paths(model_id, [(path, size, mtime_ns)], db)[0]

    def lookup_paths(
        self, model_id: int, photos: Sequence[tuple[Path, int, int]], db: sqlite3.Connection | None = None
    ) -> list[np.ndarray | None]:
        """For each (path, size, mtime_ns), the vector cached for that path if its size and mtime
        are the same, else None. One query per :data:`LOOKUP_CHUNK` paths: a re-run over a library
        that is all cached spent most of its time on one query per photo."""
        keys = [path_key(path) for path, _, _ in photos]
        found: dict[bytes, tuple[int, int, bytes]] = {}
        for chunk in _chunks(sorted(set(keys)), LOOKUP_CHUNK):
            query = (
                "SELECT path, size, mtime_ns, vector FROM images"
                f" WHERE model_id=? AND path IN ({','.join('?' * len(chunk))})"
            )
            for key, size, mtime_ns, blob in (db or self.db).execute(query, (model_id, *chunk)):
                found[key] = (size, mtime_ns, blob)
        same = [
            (row := found.get(key)) is not None and row[:2] == (size, mtime_ns)
            for key, (_, size, mtime_ns) in zip(keys, photos, strict=True)
        ]
        rows = iter(self.vectors(model_id, [found[key][2] for key, hit in zip(keys, same, strict=True) if hit]))
        return [next(rows) if hit else None for hit in same]

    def lookup_fingerprint(
        self, model_id: int, fingerprint: bytes, db: sqlite3.Connection | None = None
    ) -> tuple[np.ndarray, int | None] | None:
        """The vector and perceptual hash of a photo of the same content, or None."""
        row = (
            (db or self.db)
            .execute(
                "SELECT vector, phash FROM images WHERE model_id=? AND fingerprint=? ORDER BY phash IS NULL LIMIT 1",
                (model_id, fingerprint),
            )
            .fetchone()
        )
        if row is None:
            return None
        vector = self.vectors(model_id, [row[0]])[0]
        return None if vector is None else (vector, row[1])

    def put_images(
        self,
        model_id: int,
        rows: Iterable[tuple[Path, int, int, bytes, np.ndarray, int | None]],
        frames: Iterable[tuple[bytes, Sequence[float], np.ndarray]] = (),
    ) -> None:
        """Store (path, size, mtime_ns, fingerprint, vector, perceptual hash or None) rows, and the
        clips' frames (fingerprint, times, vectors), in one transaction."""
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO images(model_id, path, size, mtime_ns, fingerprint, vector, phash)"
                " VALUES(?, ?, ?, ?, ?, ?, ?)",
                [(model_id, path_key(p), s, m, f, to_blob(v), h) for p, s, m, f, v, h in rows],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO frames(model_id, fingerprint, times, vectors) VALUES(?, ?, ?, ?)",
                [
                    (model_id, f, np.asarray(t, dtype=np.float32).tobytes(), to_blob(v))
                    for f, t, v in frames
                    if f and len(t) == len(v)  # an object in a store has no fingerprint: not kept
                ],
            )

    def frames(self, model_id: int, fingerprints: Sequence[bytes]) -> dict[bytes, tuple[np.ndarray, np.ndarray]]:
        """The frames kept for the clips of ``fingerprints``: (times in seconds, float32 vectors in
        rows) by fingerprint. Frames that do not hold up (times and vectors that do not agree in
        number, damaged vectors, times that are not finite) are left out: the clip then stands by
        its own vector."""
        found: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        for chunk in _chunks(sorted(set(fingerprints)), LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT fingerprint, times, vectors FROM frames WHERE model_id=? AND fingerprint IN ({marks})"
            for fingerprint, times_blob, blob in self.db.execute(query, (model_id, *chunk)):
                if not isinstance(times_blob, bytes) or not isinstance(blob, bytes) or len(times_blob) % 4:
                    continue
                times = np.frombuffer(times_blob, dtype=np.float32)
                count = len(times)
                if not count or len(blob) % count or not np.isfinite(times).all():
                    continue
                size = len(blob) // count
                matrix, mask = self.checked_matrix(model_id, [blob[i * size : (i + 1) * size] for i in range(count)])
                if mask.all():
                    found[bytes(fingerprint)] = (times.astype(np.float64), matrix.astype(np.float32))
        return found

    def retouched(self, path: Path, before: tuple[int, int], after: tuple[int, int, bytes]) -> int:
        """A photo whose metadata alone clipsort rewrote (its picture checked the same): its vectors,
        of every model, follow it to its new (size, mtime_ns, fingerprint). Only rows of the file as
        it was (``before``: size, mtime_ns) move; returns how many did."""
        where = (path_key(path), before[0], before[1])
        with transaction(self.db):
            # a clip's frames, kept by content, follow it too
            self.db.execute(
                "INSERT OR REPLACE INTO frames(model_id, fingerprint, times, vectors)"
                " SELECT f.model_id, ?, f.times, f.vectors FROM frames f JOIN images i"
                " ON i.model_id = f.model_id AND i.fingerprint = f.fingerprint"
                " WHERE i.path = ? AND i.size = ? AND i.mtime_ns = ?",
                (after[2], *where),
            )
            moved = self.db.execute(
                "UPDATE images SET size = ?, mtime_ns = ?, fingerprint = ?"
                " WHERE path = ? AND size = ? AND mtime_ns = ?",
                (*after, *where),
            )
        return moved.rowcount

    def set_phashes(self, model_id: int, hashes: Iterable[tuple[bytes, int]]) -> None:
        """Store perceptual hashes of photos already cached (``(path key, hash)``: see :func:`path_key`)."""
        with transaction(self.db):
            self.db.executemany(
                "UPDATE images SET phash=? WHERE model_id=? AND path=?", [(h, model_id, k) for k, h in hashes]
            )

    def scan(
        self, model_id: int, roots: Sequence[Path], columns: str = SCAN_COLUMNS, chunk: int = 8192
    ) -> Iterator[list[tuple]]:
        """The rows of ``model_id`` under ``roots`` (files, or folders at any depth), ``chunk`` at a time,
        each a tuple of ``columns`` (some of :data:`SCAN_COLUMNS`, in that order; ``path`` is the key
        of :func:`path_key`, ``vector`` a blob, ``phash`` an integer or None).

        A folder's rows are one range of the ``(model_id, path)`` index: its path, a slash, anything.
        Each row comes once, however the roots nest.
        """
        names = [c.strip() for c in columns.split(",")]
        if not names or any(n not in SCAN_COLUMNS.split(", ") for n in names):
            raise ValueError(f"columns {columns!r}: choose among {SCAN_COLUMNS}")
        query = f"SELECT {', '.join(names)} FROM images WHERE model_id=? AND (path=? OR (path>=? AND path<?))"
        keys = sorted({path_key(root) for root in roots})
        kept: list[bytes] = []
        for key in keys:
            if any(key == k or key.startswith(k.rstrip(b"/") + b"/") for k in kept):
                continue  # inside a root already scanned
            kept.append(key)
            prefix = key if key.endswith(b"/") else key + b"/"
            cursor = self.db.execute(query, (model_id, key, prefix, prefix[:-1] + b"0"))
            while rows := cursor.fetchmany(chunk):
                yield rows

    def image_count(self, model_id: int | None = None) -> int:
        if model_id is None:
            return int(self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM images WHERE model_id=?", (model_id,)).fetchone()[0])


def _finite(value: object) -> float | None:
    """A number read from the cache, or None when it is not a finite one (a damaged or foreign file)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
