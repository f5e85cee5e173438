"""Where a photo lives: a local path, or an object in a store named by its URL (``s3://``, ``gs://``
and every other fsspec URL, which the Ray engine reads).

Decided once, where a command-line argument enters (:func:`location`): after that a photo's
place is a :data:`Location`, and the stages after this one use it through the functions here
(its key in the cache, a cheap stat, a fingerprint before decoding, reading and replacing a small
file beside it) without asking which kind it is. The store's side is :mod:`.remote`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias

from clipsort.errors import Place, UsageError
from clipsort.photos.remote import RemotePath, is_url
from clipsort.safe_files import read_regular, regular_or_absent, write_atomically

#: A photo's (or a sidecar's) place: a local path, or an object in a store.
Location: TypeAlias = Path | RemotePath

FINGERPRINT_CHUNK = 64 * 1024


def location(argument: str) -> Location:
    """A command-line PATH: a URL (``s3://bucket/photos``) or a local path."""
    return RemotePath(argument) if is_url(argument) else Path(argument)


def require_local(places: Iterable[Location | str], why: str) -> None:
    """Refuse (:class:`UsageError`, naming the first) any place that is an object in a store, for
    work that only local files allow; ``why`` says what instead."""
    for place in places:
        if is_url(place):
            raise UsageError(f"{place}: {why}")


def missing(places: Iterable[Location | str]) -> list[str]:
    """The local places among ``places`` where nothing is (a dangling link counts as something);
    objects in a store are looked for when they are listed."""
    return [str(place) for place in places if not is_url(place) and not os.path.lexists(str(place))]


def path_key(where: Place | str) -> bytes:
    """How the cache names a photo: its absolute path (not resolved: a link is its own name), as
    bytes; an object in a store: its URL."""
    if is_url(where):
        return str(where).encode("utf-8")
    return os.fsencode(os.path.abspath(str(where)))


def cheap_stat(where: Place | str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a local file, from one ``stat``; None when it is missing or cannot be
    stat'ed, and for an object in a store (no cheap stat there: records of it are not kept)."""
    if is_url(where):
        return None
    try:
        st = os.stat(str(where))
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def file_fingerprint(path: Path | str, size: int | None = None) -> bytes:
    """Size + BLAKE2b of the first and last 64 KiB of a local file: cheap, and unchanged by renames
    and copies (the cache finds a copy's vector by it)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size if size is None else size
        digest.update(size.to_bytes(8, "little"))
        digest.update(handle.read(FINGERPRINT_CHUNK))
        if size > FINGERPRINT_CHUNK:
            handle.seek(max(size - FINGERPRINT_CHUNK, FINGERPRINT_CHUNK))
            digest.update(handle.read(FINGERPRINT_CHUNK))
    return digest.digest()


def fingerprint_before_decoding(where: Location) -> bytes | None:
    """:func:`file_fingerprint` of a local photo (OSError when it cannot be read); None for an object
    in a store, which is fingerprinted where it is read (the Ray engine's decode stage), not fetched
    twice."""
    if is_url(where):
        return None
    return file_fingerprint(str(where))


def read_whole(where: Location, limit: int, what: str) -> bytes | None:
    """The bytes of the small file at ``where`` (a sidecar), None when there is none.

    Locally, only a regular file is read, never through a link, and at most ``limit`` bytes
    (:class:`clipsort.safe_files.UnsafeFile` otherwise); in a store, one GET. OSError when it
    cannot be read."""
    if isinstance(where, RemotePath):
        return where.read_bytes() if where.exists() else None
    if regular_or_absent(where) is None:
        return None
    return read_regular(where, limit, what, follow=False)


def write_whole(where: Location, data: bytes) -> None:
    """Replace the small file at ``where`` with ``data``, all or nothing: locally through a temp
    file and a rename (:func:`clipsort.safe_files.write_atomically`), in a store in one PUT, which
    replaces an object whole. OSError (:class:`UnsafeFile` for a link or special file) when it
    cannot be written."""
    if isinstance(where, RemotePath):
        where.write_bytes(data)
        return
    write_atomically(where, data)
