"""Find the photos under the paths a user gives.

Walks folders recursively in a deterministic order (files of a folder sorted by
name, then its sub-folders sorted by name), skips hidden files and folders and
well-known junk folders, and yields each image file once. Like ``find``, ``fd`` and
``rg``, it does not follow symbolic links to folders unless asked
(:attr:`WalkOptions.follow_links`; a folder is then never walked twice, so link loops
end); a path the user names is followed. Folders that another application manages
(:mod:`clipsort.photos.managed`) are left out unless asked (``include_managed``). What is
left out is said through ``on_left_out``; only regular files are ever yielded. What the person
excludes (``--exclude``, ``.clipsortignore``: :mod:`clipsort.photos.ignore`) is not there at all.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from clipsort.photos import managed
from clipsort.photos.formats import COMPANION_EXTENSIONS, KNOWN_EXTENSIONS, format_of, is_raw, is_video
from clipsort.photos.ignore import IgnoreFileError, Rules
from clipsort.photos.remote import is_url
from clipsort.safe_files import TEMP_SUFFIX, not_regular_reason

#: File extensions (lower case) treated as images: every format of clipsort.photos.formats, readable here or not.
IMAGE_EXTENSIONS = KNOWN_EXTENSIONS

#: Folders that hold thumbnails or trash of NAS boxes and operating systems.
JUNK_DIRS = frozenset({"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "__MACOSX", "System Volume Information"})


@dataclass(frozen=True)
class ImageRef:
    """An image file found on disk, with the identity of the version seen."""

    path: Path
    size: int
    mtime_ns: int


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def hidden_name(name: str) -> bool:
    """Whether the walk skips a file or folder of this name (hidden, or a NAS's or OS's junk folder)."""
    return name.startswith(".") or name in JUNK_DIRS


#: Called with (path, reason) for a path that cannot be walked or read, and for one left out on purpose.
OnError = Callable[[Path, str], None]

#: Why a symbolic link to a folder is not walked.
LINK_NOT_FOLLOWED = "a symbolic link to a folder: not followed (--follow-links follows it)"


@dataclass(frozen=True)
class WalkOptions:
    """What the walk enters beyond the folders themselves."""

    #: Follow symbolic links to folders met in the walk (paths named by the user always are).
    follow_links: bool = False
    #: Enter folders another application manages (:mod:`clipsort.photos.managed`): read-only commands only.
    include_managed: bool = False
    #: gitignore-style patterns, relative to each root, of what the walk leaves out (``--exclude``).
    exclude: tuple[str, ...] = ()


def _ignore(path: Path, reason: str) -> None:
    return None


class SideFiles:
    """Size and mtime of the non-image files with these name endings (sidecars) met during a walk.

    ``tag`` compares sidecars with its record of what it wrote; statting them here, in the
    walk that lists their folder anyway and before any worker thread runs, is several times
    cheaper than one ``stat`` per sidecar later. Keyed by the path as a string.
    """

    def __init__(self, endings: tuple[str, ...]) -> None:
        self.endings = endings
        self.stats: dict[str, tuple[int, int]] = {}


class Others:
    """The files a walk met that are neither photos nor videos (a text file, a PDF, a format clipsort
    does not know), by extension, named up to :attr:`limit`. Sidecars, Apple's edit files and
    clipsort's own temporary files are not counted: they belong to photos."""

    limit = 100_000

    def __init__(self) -> None:
        self.by_extension: Counter[str] = Counter()
        self.paths: list[Path] = []

    def add(self, path: Path) -> None:
        self.by_extension[extension_of(path.name)] += 1
        if len(self.paths) < self.limit:
            self.paths.append(path)


def extension_of(name: str) -> str:
    """A file's kind as the summary counts it: its extension in lower case (``.txt``)."""
    return os.path.splitext(name)[1].lower() or "(no extension)"


#: Name endings of files that belong to photos, not counted among the others.
_BELONGING = (".xmp", ".clipsort.json", *COMPANION_EXTENSIONS, TEMP_SUFFIX)


def _belongs(name: str) -> bool:
    return name.lower().endswith(_BELONGING)


def discover(
    roots: Iterable[Path | str],
    on_error: OnError = _ignore,
    side_files: SideFiles | None = None,
    options: WalkOptions = WalkOptions(),
    on_left_out: OnError = _ignore,
    others: Others | None = None,
) -> Iterator[ImageRef]:
    """Yield every image under ``roots`` once, in a deterministic order.

    A root may be a file (taken if it is a regular file with an image extension, reported through
    ``on_error`` otherwise) or a folder. Roots named explicitly are walked even when hidden or
    links. Unreadable folders are reported through ``on_error`` and skipped; links not followed
    and managed folders through ``on_left_out``.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in roots:
        if is_url(root):  # an object store's URL (the Ray engine): clipsort.photos.remote
            yield from _discover_remote(root, on_error)
            continue
        root = Path(root)
        try:
            st = root.stat()
        except FileNotFoundError:
            on_error(root, "no such file or folder")
            continue
        except OSError as exc:
            on_error(root, exc.strerror or str(exc))
            continue
        if not options.include_managed:
            owner = managed.managed_ancestor(root)
            if owner is not None:  # named by the user: a failure to see, not a quiet omission
                where = "" if owner[0] == Path(os.path.realpath(root)) else f" ({owner[0]})"
                hint = " (index, search and dupes read it with --include-managed)"
                on_error(root, managed.left_out_reason(owner[1] + where) + hint)
                continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, st, seen_dirs, seen_files, on_error, side_files, options, on_left_out, others)
        elif Rules.for_root(root.parent, options.exclude).excludes(root, is_folder=False):
            continue  # a file named and excluded too (a shell's glob): excluded wins, as in git
        elif not stat.S_ISREG(st.st_mode):
            on_error(root, not_regular_reason(st.st_mode) + " or folder; not read")
        elif not is_image_name(root.name):
            on_error(root, f"not a photo or video file name (known extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif _first_sight(st, seen_files):
            yield ImageRef(root, st.st_size, st.st_mtime_ns)


def _discover_remote(root: object, on_error: OnError) -> Iterator[ImageRef]:
    """The images under a URL. Their paths are :class:`clipsort.photos.remote.RemotePath` objects, which
    have the parts of a Path the pipeline reads (name, suffix, parent) and are never opened locally."""
    from clipsort.photos.remote import RemotePath
    from clipsort.photos.remote import discover as listing

    url = root if isinstance(root, RemotePath) else RemotePath(str(root))
    found = False
    for path, size, mtime_ns in listing(url):
        found = True
        if is_image_name(path.name):
            yield ImageRef(cast(Path, path), size, mtime_ns)
    if not found:
        on_error(cast(Path, url), "no such object or prefix")


def _first_sight(st: os.stat_result, seen: set[tuple[int, int]]) -> bool:
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _walk(
    folder: Path,
    folder_stat: os.stat_result,
    seen_dirs: set[tuple[int, int]],
    seen_files: set[tuple[int, int]],
    on_error: OnError,
    side_files: SideFiles | None = None,
    options: WalkOptions = WalkOptions(),
    on_left_out: OnError = _ignore,
    others: Others | None = None,
) -> Iterator[ImageRef]:
    # An explicit stack instead of recursion: deep trees cannot hit the recursion limit.
    # Each folder to walk with the exclusion rules of its parent.
    stack: list[tuple[Path, os.stat_result, Rules]] = [(folder, folder_stat, Rules.for_root(folder, options.exclude))]
    endings = side_files.endings if side_files is not None else ()
    side_stats = side_files.stats if side_files is not None else {}
    while stack:
        current, current_stat, rules = stack.pop()
        if not _first_sight(current_stat, seen_dirs):
            continue  # reached again through a symlink: walked already (or a loop)
        try:
            with os.scandir(current) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            on_error(current, f"cannot read folder: {exc.strerror or exc}")
            continue
        names = {entry.name for entry in listing}
        if not options.include_managed:
            owner = managed.by_content(current, names)
            if owner is not None:
                on_left_out(current, managed.left_out_reason(owner))
                continue
        try:
            rules = rules.entering(current, names)
        except IgnoreFileError as exc:  # what its owner meant to keep away is unknown: keep away from all
            on_error(current, f"{exc}; the folder is not walked")
            continue
        subfolders: list[tuple[Path, os.stat_result, Rules]] = []
        for entry in listing:
            name = entry.name
            if hidden_name(name):
                continue
            try:
                # is_dir(): the entry's type, no stat. No image name ends like a sidecar's.
                if endings and name.endswith(endings) and not entry.is_dir():
                    st = entry.stat()
                    side_stats[entry.path] = (st.st_size, st.st_mtime_ns)
                    continue
                image = is_image_name(name)
                if not image and not entry.is_dir():
                    if others is not None and not _belongs(name):
                        other = Path(entry.path)
                        if not (rules and rules.excludes(other, is_folder=False)):
                            others.add(other)
                    continue
            except OSError:
                continue
            path = Path(entry.path)
            try:
                if rules and rules.excludes(path, is_folder=entry.is_dir()):
                    continue
            except OSError:
                continue
            try:
                st = entry.stat()  # follows symlinks
            except OSError as exc:
                if entry.is_symlink():
                    on_error(path, "broken symbolic link")
                else:
                    on_error(path, exc.strerror or str(exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.is_symlink():
                    if not options.follow_links:
                        on_left_out(path, LINK_NOT_FOLLOWED)
                        continue
                    if _points_to_ancestor(path):
                        on_error(path, "symbolic link loop (it points to a folder that contains it); not followed")
                        continue
                if not options.include_managed:
                    owner = managed.by_name(name)
                    if owner is not None:
                        on_left_out(path, managed.left_out_reason(owner))
                        continue
                subfolders.append((path, st, rules))
            elif not stat.S_ISREG(st.st_mode):
                on_error(path, not_regular_reason(st.st_mode) + "; not read")
            elif _first_sight(st, seen_files):
                yield ImageRef(path, st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subfolders))


def _points_to_ancestor(link: Path) -> bool:
    """Whether the folder symlink ``link`` points to a folder that contains it."""
    try:
        target = Path(os.path.realpath(link))
        here = Path(os.path.realpath(link.parent))
    except OSError:
        return False
    return here == target or target in here.parents


#: Capture times of a RAW and its JPEG further apart than this are two pictures, not one.
PAIR_SECONDS = 2.0

#: Why a RAW and a JPEG of one name are not one picture (None: they may be), given their paths.
PairCheck = Callable[[Path, Path], "str | None"]


def capture_mismatch(raw: Path, jpeg: Path) -> str | None:
    """Why ``raw`` and ``jpeg`` (one folder, one name) are not one picture: capture times more than
    :data:`PAIR_SECONDS` apart, or cameras that differ, where both files say. None when nothing
    they say tells them apart (a file without a capture time is compared by its camera alone)."""
    from clipsort.photos.exif import read_facts

    a, b = read_facts(raw), read_facts(jpeg)
    if a.taken_source != "mtime" and b.taken_source != "mtime":
        apart = abs((a.taken - b.taken).total_seconds())
        if apart > PAIR_SECONDS:
            return f"taken {a.taken:%Y-%m-%d %H:%M:%S} and {b.taken:%Y-%m-%d %H:%M:%S}"
    if a.camera and b.camera and _camera_key(a.camera) != _camera_key(b.camera):
        return f"taken with {a.camera} and {b.camera}"
    return None


def _camera_key(camera: str) -> str:
    return " ".join(camera.casefold().split())


def pair_raw_with_jpeg(
    refs: Sequence[ImageRef], check: PairCheck | None = None, apart: list[str] | None = None
) -> tuple[list[ImageRef], dict[Path, list[ImageRef]]]:
    """Split RAW+JPEG pairs (same folder, same stem): the photos to score, and each JPEG's RAW partners.

    A camera shooting RAW+JPEG writes two files of one picture; the JPEG (or HEIC)
    stands for both: it is embedded and judged once, and its RAW partners get the
    same labels and travel with it. A RAW without a JPEG beside it is a photo of its own, and so
    is one that ``check`` (:func:`capture_mismatch`) tells apart from the JPEG of its name: why is
    added to ``apart``.
    """
    # Keyed by the path without its extension; only RAW files are collected, so a library
    # without RAW files costs one extension check per photo.
    raws_by_key: dict[str, list[ImageRef]] = {}
    for ref in refs:
        if is_raw(ref.path.name):
            raws_by_key.setdefault(os.path.splitext(str(ref.path))[0], []).append(ref)
    partners: dict[Path, list[ImageRef]] = {}
    if not raws_by_key:
        return list(refs), partners
    for ref in refs:
        key = os.path.splitext(str(ref.path))[0]
        raws = raws_by_key.get(key)
        if raws and _pairs_with_raw(ref.path.name):
            if check is not None:
                raws = [raw for raw in raws if _matches(raw.path, ref.path, check, apart)]
            if raws:
                partners[ref.path] = raws
            raws_by_key[key] = []  # the first JPEG (or HEIC) of the stem takes them; a second stays alone
    skipped = {r.path for raws in partners.values() for r in raws}
    return [r for r in refs if r.path not in skipped], partners


def _matches(raw: Path, jpeg: Path, check: PairCheck, apart: list[str] | None) -> bool:
    why = check(raw, jpeg)
    if why is not None and apart is not None:
        apart.append(f"{raw.name} and {jpeg.name} share a name but not a picture ({why}): each judged on its own")
    return why is None


def _pairs_with_raw(name: str) -> bool:
    fmt = format_of(name)
    return fmt is not None and fmt.name in ("JPEG", "HEIC/HEIF")


def live_photo_videos(
    refs: Sequence[ImageRef], beside: Sequence[ImageRef] = ()
) -> tuple[list[ImageRef], list[ImageRef]]:
    """Split off the video halves of Live Photos: a ``.mov`` beside a photo of the same name
    (``IMG_0001.HEIC`` + ``IMG_0001.MOV``) is that photo's companion, which travels with it
    (:func:`clipsort.writes.mover.companions_of`), not a clip judged on its own. Returns (the
    files to judge, the companions split off). ``beside``: other photos found (of formats this
    installation cannot read), whose videos are companions all the same."""
    stems = {os.path.splitext(str(ref.path))[0] for ref in (*refs, *beside) if not is_video(ref.path.name)}
    kept: list[ImageRef] = []
    companions: list[ImageRef] = []
    for ref in refs:
        name = str(ref.path)
        stem, extension = os.path.splitext(name)
        if extension.lower() in COMPANION_EXTENSIONS and stem in stems:
            companions.append(ref)
        else:
            kept.append(ref)
    return kept, companions
