"""The photos under some folders as the cache knows them, for ``search`` and ``dupes``.

:func:`index_missing` walks the folders and embeds only what the cache lacks: the cache's
rows under each folder are read in one range scan, not looked up one photo at a time, so a
library that is all cached costs its walk and that scan. :func:`cached_photos` then reads
the vectors as matrices, a chunk at a time (float16, as stored), so search holds one chunk
at a time whatever the library's size.

RAW+JPEG pairs count once, through the JPEG (as ``index`` embeds them); RAW files without a
JPEG are photos of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsort.model.embed import Embedder
from clipsort.photos.discover import ImageRef, capture_mismatch, pair_raw_with_jpeg
from clipsort.photos.location import path_key
from clipsort.run.events import Events, RunOptions
from clipsort.run.pipeline import check_roots, embedded_photos, find_photos
from clipsort.run.report import Report
from clipsort.store.cache import EmbeddingCache

#: Rows read from the cache at a time (8 MB of ViT-B-32 vectors).
CHUNK = 8192


@dataclass
class Photos:
    """A chunk of cached photos: per photo its cache key (absolute path as bytes), vector,
    perceptual hash (``known`` says which are), content fingerprint and size in bytes. Paths
    as the user sees them are made only for the photos shown (:meth:`path`)."""

    keys: list[bytes]
    vectors: np.ndarray  #: (n, dim) float16
    phashes: np.ndarray  #: (n,) int64
    known: np.ndarray  #: (n,) bool: the perceptual hash is known
    fingerprints: list[bytes]
    sizes: np.ndarray  #: (n,) int64
    #: A cache key -> the photo's path as the walk found it (or as the cache names it).
    name: Callable[[bytes], Path]

    def __len__(self) -> int:
        return len(self.keys)

    def path(self, i: int) -> Path:
        return self.name(self.keys[i])


def open_library(roots: Sequence[Path], embedder: Embedder, command: str) -> tuple[EmbeddingCache, int]:
    """The cache, and the model's number in it, for a ``command`` that reads the photos under ``roots``
    from the cache. Every root must exist."""
    from clipsort.errors import UsageError

    check_roots(roots)
    if embedder.cache is None:
        raise UsageError(f"{command} reads the embedding cache: drop --no-cache")
    return embedder.cache, embedder.cache_model_id()


def index_missing(
    roots: Sequence[Path], embedder: Embedder, run: RunOptions, report: Report, events: Events
) -> dict[bytes, ImageRef]:
    """Walk ``roots`` and embed the photos whose vectors the cache lacks (or whose file changed).

    Returns every photo found, by its cache key. Files that fail are reported (and left out).
    """
    cache, model_id = open_library(roots, embedder, "indexing")
    events = _Indexing(events)
    refs = find_photos(roots, report, events, run=run)
    if run.pairs:
        refs, _ = pair_raw_with_jpeg(refs, capture_mismatch)
    wanted = {path_key(ref.path): ref for ref in refs}
    current: dict[bytes, tuple[int, int]] = {}
    for rows in cache.scan(model_id, roots, columns="path, size, mtime_ns", chunk=CHUNK):
        current.update((row[0], (row[1], row[2])) for row in rows)
    missing = [ref for key, ref in wanted.items() if current.get(key) != (ref.size, ref.mtime_ns)]
    if missing:
        events.started(len(missing))
        failed = len(report.failures)
        for chunk in embedded_photos(missing, embedder, run, report, events):
            events.advanced(len(chunk))
        for failure in report.failures[failed:]:  # not searched: no vector
            wanted.pop(path_key(failure.path), None)
    report.cached = len(wanted) - report.embedded
    return wanted


def cached_photos(
    cache: EmbeddingCache,
    model_id: int,
    roots: Sequence[Path],
    wanted: dict[bytes, ImageRef] | None,
    chunk: int = CHUNK,
    hashes: bool = True,
) -> Iterator[Photos]:
    """The cached photos under ``roots``, ``chunk`` at a time (``hashes=False``: without fingerprints
    and perceptual hashes, which search does not need).

    ``wanted``: the photos a walk found (:func:`index_missing`): only their current vectors are
    given. None: every photo the cache holds under ``roots``, as it holds it (``--no-index``),
    named relative to the working folder when a root was given relative.
    """
    if wanted is not None:
        name: Callable[[bytes], Path] = lambda key: wanted[key].path  # noqa: E731
    elif any(not Path(root).is_absolute() for root in roots):
        name = lambda key: Path(os.path.relpath(os.fsdecode(key)))  # noqa: E731
    else:
        name = lambda key: Path(os.fsdecode(key))  # noqa: E731
    columns = "path, size, mtime_ns, fingerprint, vector, phash" if hashes else "path, size, mtime_ns, vector"
    for rows in cache.scan(model_id, roots, columns=columns, chunk=chunk):
        if wanted is not None:
            rows = [r for r in rows if (ref := wanted.get(r[0])) is not None and (ref.size, ref.mtime_ns) == r[1:3]]
        rows = [r for r in rows if _sound(r, hashes)]  # a cache may come from elsewhere
        if not rows:
            continue
        vectors, mask = cache.checked_matrix(model_id, [r[-1 if not hashes else 4] for r in rows])
        if not mask.all():  # damaged vectors (told once by the cache) stay out
            rows = [r for r, ok in zip(rows, mask, strict=True) if ok]
            if not rows:
                continue
        count = len(rows)
        if hashes:
            found = [r[5] for r in rows]
            phashes = np.array([h if h is not None else 0 for h in found], dtype=np.int64)
            known = np.array([h is not None for h in found], dtype=bool)
            fingerprints = [r[3] for r in rows]
        else:
            phashes, known, fingerprints = np.zeros(count, np.int64), np.zeros(count, bool), []
        yield Photos(
            keys=[r[0] for r in rows],
            vectors=vectors,
            phashes=phashes,
            known=known,
            fingerprints=fingerprints,
            sizes=np.array([r[1] for r in rows], dtype=np.int64),
            name=name,
        )


def _sound(row: tuple, hashes: bool) -> bool:
    """Whether a cache row has the types clipsort writes (a foreign or damaged file may not):
    a path key of bytes, a size and mtime that are integers, a perceptual hash that is one or none."""
    return (
        isinstance(row[0], bytes)
        and type(row[1]) is int
        and type(row[2]) is int
        and (not hashes or (isinstance(row[3], bytes) and (row[5] is None or type(row[5]) is int)))
    )


def holders(cache: EmbeddingCache, roots: Sequence[Path], model_id: int) -> list[tuple[str, int]]:
    """Other models whose vectors the cache holds under ``roots``: (name, photos), most first."""
    counts = []
    for info_id, name in cache.db.execute("SELECT id, name FROM models WHERE id != ?", (model_id,)).fetchall():
        count = sum(len(rows) for rows in cache.scan(info_id, roots, columns="path"))
        if count:
            counts.append((str(name), count))
    return sorted(counts, key=lambda pair: -pair[1])


class _Indexing:
    """The events of indexing for a search: progress, failures and warnings, but no per-photo
    results (the search's results are its output)."""

    def __init__(self, events: Events) -> None:
        self._events = events
        self.discovering = events.discovering
        self.started = events.started
        self.advanced = events.advanced
        self.failed = events.failed
        self.warned = events.warned

    def photo(self, result: object) -> None:
        pass
