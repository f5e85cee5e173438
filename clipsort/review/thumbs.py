"""The page's thumbnails: small upright JPEGs in one folder beside the page, named after it
(``PAGE_files/``, as browsers name a saved page's folder).

A photo the run decodes anyway gives its thumbnail from that picture (:meth:`Thumbnails.add`,
called by the embedder's decode threads), so no photo is decoded twice in one run; the photos
whose vectors came from the cache are decoded once, small, by :meth:`Thumbnails.ensure`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clipsort.errors import UsageError
from clipsort.photos.decode import load_image
from clipsort.safe_files import write_atomically

#: The long side of a thumbnail, in pixels (cards show them at half that or less: sharp on HiDPI screens).
SIDE = 256
QUALITY = 72
#: The shortest side of a picture decoded by the run that makes a thumbnail sharp enough (cards are 160 px high).
USABLE = 128
#: The file that marks a thumbnail folder as clipsort's (only such a folder is emptied or written).
MARKER = ".clipsort-review"
_OURS = re.compile(r"^[0-9a-f]{24}\.jpg$")


def thumbnail_folder(page: Path) -> Path:
    return page.with_name(page.stem + "_files")


def thumbnail_name(photo: Path) -> str:
    return hashlib.blake2b(os.fsencode(photo), digest_size=12).hexdigest() + ".jpg"


class Thumbnails:
    """Thumbnails of the photos of one page, made once each, thread-safe."""

    def __init__(self, page: Path) -> None:
        self.folder = thumbnail_folder(page)
        self._lock = threading.Lock()
        #: photo -> (width, height) of its thumbnail
        self.made: dict[Path, tuple[int, int]] = {}
        self.failed: dict[Path, str] = {}
        self.decoded = 0

    def prepare(self) -> None:
        """Make the folder (or empty the thumbnails of an earlier page in it); a folder of that name
        that is not clipsort's is refused (UsageError)."""
        folder = self.folder
        if os.path.lexists(folder):
            if os.path.islink(folder) or not folder.is_dir() or not (folder / MARKER).is_file():
                raise UsageError(
                    f"{folder} exists and is not a review page's thumbnail folder: choose another page name"
                )
            for entry in os.scandir(folder):
                if _OURS.match(entry.name) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
        else:
            folder.mkdir(parents=True)
            (folder / MARKER).write_text("thumbnails of a clipsort review page; clipsort empties this folder\n")

    def offer(self, photo: Path, picture: Any) -> None:
        """A picture the run decoded anyway: kept as the thumbnail when it is large enough (a model
        whose input is under :data:`USABLE` pixels, a test model, decodes too small: such photos
        are decoded again, small, by :meth:`ensure`). Called in the run's decode threads."""
        if min(picture.size) >= USABLE or max(picture.size) >= SIDE:
            self.add(photo, picture)

    def add(self, photo: Path, picture: Any) -> None:
        """Keep a thumbnail of ``picture`` (upright RGB, the decode's output) for ``photo``."""
        photo = _key(photo)
        with self._lock:
            if photo in self.made:
                return
        small = picture.copy()
        small.thumbnail((SIDE, SIDE))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=QUALITY, optimize=False)
        write_atomically(self.folder / thumbnail_name(photo), buffer.getvalue())
        with self._lock:
            self.made[photo] = small.size

    def ensure(self, photos: Sequence[Path], workers: int = 2, now_at: Mapping[Path, Path] | None = None) -> None:
        """Make the thumbnails still missing, decoding each photo once, small (failures are kept in
        :attr:`failed`: the card shows the name without a picture). ``now_at``: where a photo is
        now, when the run moved it."""
        todo = [p for p in dict.fromkeys(map(_key, photos)) if p not in self.made and p not in self.failed]
        where = {_key(a): b for a, b in (now_at or {}).items()}

        def one(photo: Path) -> None:
            try:
                picture = load_image(where.get(photo, photo), min_side=SIDE)
            except Exception as exc:  # noqa: BLE001 - a card without a picture, named why
                with self._lock:
                    self.failed[photo] = str(exc)
                return
            with self._lock:
                self.decoded += 1
            self.add(photo, picture)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(one, todo))

    def keep_only(self, photos: Sequence[Path]) -> None:
        """Remove the thumbnails made on the way (the run decoded more photos than the page shows)."""
        wanted = {_key(p) for p in photos}
        for photo in [p for p in self.made if p not in wanted]:
            with contextlib.suppress(OSError):
                os.unlink(self.folder / thumbnail_name(photo))
            del self.made[photo]

    def size(self, photo: Path) -> tuple[int, int]:
        return self.made[_key(photo)]

    def why_not(self, photo: Path) -> str:
        """Why a photo has no thumbnail."""
        return self.failed.get(_key(photo), "no picture")

    def src(self, photo: Path) -> str | None:
        """The thumbnail's address relative to the page, None when there is none."""
        photo = _key(photo)
        if photo not in self.made:
            return None
        return quote(self.folder.name) + "/" + thumbnail_name(photo)


def _key(photo: Path) -> Path:
    """Photos are known by their absolute path (a run's results may hold relative ones)."""
    return Path(os.path.abspath(photo))
