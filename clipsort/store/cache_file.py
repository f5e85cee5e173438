"""The embedding cache's SQLite file: its schema and migrations, opening it (a file that is
damaged, newer or not clipsort's is moved aside and a new one started) and transactions.
What it holds and how it is read: :mod:`clipsort.store.cache`."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from clipsort.errors import ClipsortError
from clipsort.safe_files import regular_or_absent

SCHEMA_VERSION = 3
#: Identifies clipsort's cache files (PRAGMA application_id): "ClSt".
APPLICATION_ID = 0x436C5374

# Vectors are about 1 KB (512 float16s): in a WITHOUT ROWID table a row that size spills onto
# an overflow page of its own, which made schema 1 files 4.7x larger than their data (470 MB
# for 100,000 photos) and every open's integrity check read all of it. Rowid tables keep
# three such rows to a 4 KiB page.
_IMAGES = """
CREATE TABLE IF NOT EXISTS {name}(
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    path BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    vector BLOB NOT NULL,
    phash INTEGER,
    UNIQUE(model_id, path)
);
"""
_TEXTS = """
CREATE TABLE IF NOT EXISTS {name}(
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE(model_id, text)
);
"""
# A clip's frames (their times, float32 seconds, and their vectors, float16 rows), by content:
# a copy of the clip elsewhere shares them. Added without a new schema version: a clipsort
# that does not know videos leaves the table alone.
_FRAMES = """
CREATE TABLE IF NOT EXISTS frames(
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    fingerprint BLOB NOT NULL,
    times BLOB NOT NULL,
    vectors BLOB NOT NULL,
    UNIQUE(model_id, fingerprint)
);
"""
_INDEX = "CREATE INDEX IF NOT EXISTS images_by_fingerprint ON images(model_id, fingerprint);\n"

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models(
    id INTEGER PRIMARY KEY,
    identity TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    logit_scale REAL,
    used_ns INTEGER NOT NULL
);
"""
    + _IMAGES.format(name="images")
    + _TEXTS.format(name="texts")
    + _INDEX
    + _FRAMES
)


def _rowid_tables(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: images and texts move from WITHOUT ROWID tables to rowid tables."""
    for table, ddl, columns in (
        ("images", _IMAGES, "model_id, path, size, mtime_ns, fingerprint, vector"),
        ("texts", _TEXTS, "model_id, text, vector"),
    ):
        db.execute(ddl.format(name=f"{table}_v2"))
        db.execute(f"INSERT INTO {table}_v2({columns}) SELECT {columns} FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {table}_v2 RENAME TO {table}")
    db.execute(_INDEX)


def _perceptual_hashes(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: a perceptual hash beside each vector (filled when a photo is next embedded or
    when ``dupes`` needs it). A file migrated from schema 1 has the column already (today's table)."""
    if "phash" not in {row[1] for row in db.execute("PRAGMA table_info(images)")}:
        db.execute("ALTER TABLE images ADD COLUMN phash INTEGER")


#: Migrations from version N to N+1, run in order on older files.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _rowid_tables, 2: _perceptual_hashes}


class CacheError(ClipsortError):
    """The cache cannot be opened or written."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the cache file at ``path`` (autocommit: writes go through :func:`transaction`)."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA foreign_keys=ON")
    return db


def open_file(path: Path, warn: Callable[[str], None]) -> sqlite3.Connection:
    """Open, create or migrate the cache file at ``path``; one that is damaged, newer or not ours is
    moved aside (``warn`` says so) and a new one started."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the cache folder {path.parent}: {exc.strerror or exc}") from None
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:  # SQLite follows links: one planted at the cache's names would make it write elsewhere
            st = regular_or_absent(Path(str(path) + suffix))
        except OSError as exc:
            why = exc.strerror or str(exc)
            if "link" in why:
                why += "; clipsort does not follow links for the files it writes (give the real file with --cache)"
            raise CacheError(f"the cache file {path}{suffix} {why}") from None
        if st is not None and st.st_nlink > 1:
            raise CacheError(f"the cache file {path}{suffix} has other names (hard links); left untouched")
    problem = _problem(path)
    if problem:
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(path) + suffix)
            if source.exists():
                os.replace(source, Path(str(aside) + suffix))
        warn(f"the cache {path} {problem}; moved it to {aside.name} and started a new one")
    try:
        db = connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrated = False
        with transaction(db):
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in _statements(_SCHEMA):  # not executescript(): it commits on its own
                db.execute(statement)
            version = _schema_version(db)
            if version is None:
                db.execute("INSERT INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif version < SCHEMA_VERSION:
                for step in range(version, SCHEMA_VERSION):
                    _MIGRATIONS[step](db)
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                migrated = True
        if migrated:
            try:
                db.execute("VACUUM")  # give back the pages the old tables used
            except sqlite3.OperationalError:  # another reader: `clipsort cache prune` reclaims it later
                pass
    except sqlite3.Error as exc:
        raise CacheError(f"cannot open the cache {path}: {exc}") from None
    return db


def _problem(path: Path) -> str | None:
    """Why the existing file cannot be used, or None."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    if not os.access(path, os.R_OK):
        raise CacheError(f"cannot read the cache {path}: permission denied")
    try:
        db = sqlite3.connect(f"file:{quote(os.fspath(path))}?mode=ro", uri=True, timeout=60)
        try:
            app = db.execute("PRAGMA application_id").fetchone()[0]
            if app != APPLICATION_ID:
                return "is not a clipsort cache"
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                return f"is damaged ({check})"
            try:
                version = _schema_version(db)
            except ValueError:
                return "is damaged (its schema version is not a number)"
            if version is not None and version > SCHEMA_VERSION:
                return f"was written by a newer clipsort (schema {version})"
            if version is not None and version < 1:
                return f"is damaged (schema version {version})"
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return f"is damaged ({exc})"
    return None


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _schema_version(db: sqlite3.Connection) -> int | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else int(row[0])


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
