"""Photos in object storage (``s3://``, ``gs://``, ``file://`` and every other fsspec URL), for the Ray engine.

fsspec reads and writes; credentials and endpoints come from the usual places (``AWS_*``
variables, ``~/.aws``, ``FSSPEC_S3_ENDPOINT_URL`` and other ``FSSPEC_<PROTOCOL>_<OPTION>``
variables), the same on the driver and, passed along, on the workers. Writes are one object
each (``pipe``): an object store replaces an object whole or not at all, so a sidecar is never
seen half written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from clipsort.errors import UsageError


def is_url(where: object) -> bool:
    """Whether ``where`` names an object in a store (a URL) rather than a local path: the one rule.

    A :class:`pathlib.PurePath` never is (it would have folded the ``//``): answered without
    making its string, which a run over 100,000 photos asks for several times each."""
    if isinstance(where, PurePath):
        return False
    return isinstance(where, RemotePath) or "://" in str(where)


class RemotePath:
    """An object in a store, named by its URL, with the parts of :class:`pathlib.Path` that the
    pipeline uses (name, suffix, parent, ``/``); it cannot be opened as a local file."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        self.url = f"{scheme}://{rest.rstrip('/')}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __lt__(self, other: RemotePath) -> bool:
        return self.url < other.url

    def __hash__(self) -> int:
        return hash(("remote", self.url))

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> RemotePath:
        head, _, _ = self.url.rpartition("/")
        return RemotePath(head) if not head.endswith(":/") else self

    def __truediv__(self, other: str | PurePosixPath) -> RemotePath:
        return RemotePath(f"{self.url}/{PurePosixPath(other).as_posix()}")

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> RemotePath:
        return self.with_name(self.stem + suffix)

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        if not self.url.startswith(other.url + "/"):
            raise ValueError(f"{self.url} is not inside {other.url}")
        return PurePosixPath(self.url[len(other.url) + 1 :])

    def as_posix(self) -> str:
        return self.url

    # What the sidecar writer needs of a file, on the store.
    def exists(self) -> bool:
        return exists(self)

    def read_bytes(self) -> bytes:
        fs, path = filesystem(self)
        return bytes(fs.cat_file(path))  # FileNotFoundError when there is none

    def write_bytes(self, data: bytes) -> None:
        """One PUT: an object store replaces the object whole or not at all (no temp file needed)."""
        fs, path = filesystem(self)
        fs.pipe_file(path, data)


def filesystem(url: str | RemotePath) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for ``url``; options from the ``FSSPEC_*`` variables
    as they are now (a worker process may have imported fsspec before they were set)."""
    try:
        import fsspec
        import fsspec.config
    except ImportError:
        raise UsageError(f"{url}: URLs need fsspec: pip install 'clipsort[ray]'") from None
    fsspec.config.set_conf_env(fsspec.config.conf)
    try:
        fs, path = fsspec.core.url_to_fs(str(url))
    except ImportError as exc:
        raise UsageError(f"{url}: {exc} (for s3:// URLs: pip install 'clipsort[s3]')") from None
    except ValueError as exc:
        raise UsageError(f"{url}: {exc}") from None
    return fs, path


def exists(url: RemotePath) -> bool:
    fs, path = filesystem(url)
    try:
        return bool(fs.exists(path))
    except OSError:
        return False


def discover(root: RemotePath) -> Iterator[tuple[RemotePath, int, int]]:
    """(URL, size, mtime in ns) of every object under ``root`` (or ``root`` itself), in name order;
    hidden names (a dot first) and their folders are skipped, as on disk."""
    fs, path = filesystem(root)
    try:
        found = fs.find(path, detail=True, withdirs=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{root}: cannot list: {exc}") from None
    prefix = path.rstrip("/")
    for key in sorted(found):
        info = found[key]
        inside = key[len(prefix) :].lstrip("/")
        if any(part.startswith(".") for part in inside.split("/") if part):
            continue
        yield RemotePath(url_of(fs, key)), int(info.get("size") or 0), _mtime_ns(info)


def _mtime_ns(info: dict[str, Any]) -> int:
    """The object's modification time: ``LastModified`` (S3), ``updated`` (GCS) or ``mtime``."""
    import datetime

    value = info.get("LastModified") or info.get("updated") or info.get("mtime") or info.get("created") or 0
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1_000_000_000)
    if isinstance(value, str):
        try:
            return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000_000)
        except ValueError:
            return 0
    return int(float(value) * 1_000_000_000)


def url_of(fs: Any, path: str) -> str:
    """The URL of ``path`` in ``fs`` (``bucket/key`` -> ``s3://bucket/key``)."""
    return str(fs.unstrip_protocol(path))


@contextlib.contextmanager
def local_copy(where: str | Path | RemotePath) -> Iterator[Path]:
    """A local path of ``where``: itself for a local path, else a temporary copy of the object
    (same name ending, so the decoder knows its format), removed afterwards."""
    if not is_url(where):
        yield Path(str(where))
        return
    fs, path = filesystem(str(where))
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):  # file:// needs no copy
        yield Path(path)
        return
    suffix = PurePosixPath(path).suffix
    handle, name = tempfile.mkstemp(prefix="clipsort-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out, fs.open(path, "rb") as source:
            while block := source.read(4 << 20):
                out.write(block)
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
