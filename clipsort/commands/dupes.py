"""``dupes``: groups of copies of the same picture (and with ``similar``, of the same scene).
Never deletes, moves or changes anything: it suggests which photo of each group to keep.

How a copy is told (docs/search.md, "dupes"):

1. **Exact copies**: the same size and content fingerprint (the cache's), confirmed by a hash
   of the whole files.
2. **Candidates**: each photo's nearest CLIP neighbours (cosine at least
   :data:`CANDIDATE_COSINE`, :data:`NEIGHBOURS` a photo, by blocked matrix products), and
   photos whose perceptual hashes share a 16-bit quarter (found however many neighbours a
   photo has), if their cosine reaches :data:`HASH_COSINE`.
3. **Confirmed** by the pictures themselves, never by CLIP alone: perceptual hashes at most
   :data:`COPY_BITS` bits apart (turned by 90, 180 or 270 degrees where that brings them nearer:
   a copy rotated in an editor; :data:`TURN_SLACK` more bits then), the same aspect ratio (within
   2%, the turned one's), and the two upright
   pictures correlating at :data:`COPY_CORRELATION` or more in grey at 64x64 (the picture's
   structure) and :data:`COLOUR_CORRELATION` or more in RGB at 32x32 (its colours). On the
   corpus's camera photos, resized and re-encoded copies reach 0.996 in grey, re-oriented
   ones 0.9997, retouched ones (brightness +15%, contrast, saturation, white balance) 0.991,
   and 0.989 in RGB; an HDR and its plain shot reach 0.983 in grey; pictures of the same
   shapes in other colours up to 0.997 in grey but at most 0.973 in RGB; other shots of a
   scene much less (docs/search.md).
4. ``similar``: also pairs whose CLIP cosine reaches that threshold (bursts, an HDR and its
   plain shot): groups of the same scene.

The suggested keeper: the largest picture (pixels), then the oldest (date taken, else file
time), then the path.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from clipsort.commands.candidates import cosines, neighbour_pairs, turned_hash_pairs, unique_pairs
from clipsort.commands.library import Photos, cached_photos, index_missing, open_library
from clipsort.errors import ClipsortError, DecodeError, FileFailure
from clipsort.model.embed import Embedder
from clipsort.photos import phash
from clipsort.photos.decode import dimensions, load_image
from clipsort.run.events import Events, RunOptions, SilentEvents
from clipsort.run.report import Report

CANDIDATE_COSINE = 0.80
NEIGHBOURS = 8
#: The CLIP cosine a pair found by its hashes needs before its pictures are compared (copies
#: reach 0.95 and more with any model tried, random weights included).
HASH_COSINE = 0.5
COPY_BITS = 16
#: More bits allowed to a copy turned by a quarter: its hash is derived, a few bits off (phash.turned).
TURN_SLACK = 8
COPY_CORRELATION = 0.988
COLOUR_CORRELATION = 0.98
#: ``--similar`` without a value (ViT-B-32 with real weights: bursts 0.92-0.98, see docs/search.md).
SIMILAR_COSINE = 0.92
#: The pictures compared: decoded with this short side at least, then grey at SIDE x SIDE.
_DECODE_SIDE = 224
_SIDE = 64


@dataclass(frozen=True)
class Member:
    """A photo of a group, and how it relates to the group's keeper."""

    path: Path
    relation: str  #: keep, exact (the same bytes), copy (the same picture), similar (the same scene)
    width: int | None
    height: int | None
    bytes: int
    taken: datetime | None
    similarity: float  #: CLIP cosine to the keeper
    distance: int | None  #: perceptual hash bits from the keeper's

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "relation": self.relation,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "taken": self.taken.isoformat(timespec="seconds") if self.taken else None,
            "similarity": round(self.similarity, 4),
            "distance": self.distance,
        }


@dataclass(frozen=True)
class Group:
    kind: str  #: copies (every photo a copy of the keeper) or similar
    members: tuple[Member, ...]  #: the keeper first

    @property
    def keeper(self) -> Member:
        return self.members[0]

    def to_json(self, number: int) -> dict[str, object]:
        return {
            "group": number,
            "kind": self.kind,
            "keep": str(self.keeper.path),
            "photos": [m.to_json() for m in self.members],
        }


@dataclass(frozen=True)
class DupesOptions:
    similar: float | None = None  #: also group the same scene, at this CLIP cosine
    index: bool = True
    run: RunOptions = field(default_factory=RunOptions)


class _Sets:
    """Union-find over photo numbers."""

    def __init__(self, count: int) -> None:
        self.parent = list(range(count))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            members.setdefault(self.find(i), []).append(i)
        return [m for m in members.values() if len(m) > 1]


class _Pictures:
    """The photos' pictures as the copy check compares them, decoded when first needed.

    The last :data:`KEPT` are kept (14 KB each), so memory stays bounded however many photos
    the check meets; pairs are checked in photo order, so the photos of a pair are usually
    still there.
    """

    KEPT = 8192

    def __init__(
        self,
        photos: Photos,
        on_failure: Callable[[FileFailure], None],
        on_picture: Callable[[Path, Image.Image], None] | None = None,
    ) -> None:
        self.photos = photos
        #: Given each picture decoded here (a review page's thumbnails are made from it).
        self._on_picture = on_picture
        #: Per photo: its grey (64x64) and RGB (32x32) pictures, each centred and of unit length,
        #: as float16, and its aspect ratio; None for a photo that could not be decoded.
        self._seen: OrderedDict[int, tuple[np.ndarray, np.ndarray, float] | None] = OrderedDict()
        self._on_failure = on_failure
        #: Perceptual hashes computed here (photos indexed before the cache kept them): key -> hash.
        self.new_hashes: dict[bytes, int] = {}

    def hash(self, i: int) -> int | None:
        if not self.photos.known[i]:
            self._picture(i)
        return int(self.photos.phashes[i]) if self.photos.known[i] else None

    def _picture(self, i: int) -> tuple[np.ndarray, np.ndarray, float] | None:
        if i in self._seen:
            self._seen.move_to_end(i)
        else:
            try:
                picture = load_image(self.photos.path(i), min_side=_DECODE_SIDE)
            except DecodeError as failure:
                self._on_failure(failure)
                self._seen[i] = None
                return None
            if self._on_picture is not None:
                self._on_picture(self.photos.path(i), picture)
            if not self.photos.known[i]:
                self.photos.phashes[i] = phash.perceptual_hash(picture)
                self.photos.known[i] = True
                self.new_hashes[self.photos.keys[i]] = int(self.photos.phashes[i])
            # bilinear, which Pillow widens when it shrinks: noise averages out (a box filter left it)
            small = picture.convert("RGB").resize((_SIDE, _SIDE), Image.Resampling.BILINEAR)
            colour = small.resize((_SIDE // 2, _SIDE // 2), Image.Resampling.BILINEAR)
            self._seen[i] = (_unit(small.convert("L")), _unit(colour), picture.width / picture.height)
            if len(self._seen) > self.KEPT:
                self._seen.popitem(last=False)
        return self._seen[i]

    def alike(self, i: int, j: int, turns: int = 0) -> bool:
        """The copy check of step 3, photo ``j``'s picture turned ``turns`` quarters counter-clockwise
        (the hashes are checked first, by the caller)."""
        a, b = self._picture(i), self._picture(j)
        if a is None or b is None:
            return False
        grey_b, colour_b, aspect_b = b
        if turns % 4:
            grey_b = np.rot90(grey_b.reshape(_SIDE, _SIDE), turns).ravel()
            colour_b = np.rot90(colour_b.reshape(_SIDE // 2, _SIDE // 2, 3), turns, axes=(0, 1)).ravel()
            aspect_b = aspect_b if turns % 2 == 0 else 1 / aspect_b
        if abs(a[2] / aspect_b - 1) > 0.02:
            return False
        grey = float(a[0].astype(np.float32) @ grey_b.astype(np.float32))
        colour = float(a[1].astype(np.float32) @ colour_b.astype(np.float32))
        return grey >= COPY_CORRELATION and colour >= COLOUR_CORRELATION


def _unit(picture: Image.Image) -> np.ndarray:
    values = np.asarray(picture, dtype=np.float32).ravel()
    values -= values.mean()
    return (values / max(float(np.linalg.norm(values)), 1e-9)).astype(np.float16)


def find_groups(
    photos: Photos,
    similar: float | None = None,
    on_failure: Callable[[FileFailure], None] | None = None,
    on_picture: Callable[[Path, Image.Image], None] | None = None,
) -> tuple[list[Group], dict[bytes, int]]:
    """The groups of ``photos`` (largest first), and the perceptual hashes computed on the way
    (``on_picture``: given each picture decoded to compare)."""
    pictures = _Pictures(photos, on_failure or (lambda failure: None), on_picture)
    copies = _Sets(len(photos))
    for i, j in _exact_pairs(photos):
        copies.union(i, j)
    floor = min(CANDIDATE_COSINE, similar) if similar is not None else CANDIDATE_COSINE
    first, second, cosine = neighbour_pairs(photos.vectors, floor, NEIGHBOURS)
    near = cosine >= CANDIDATE_COSINE
    by_hash = turned_hash_pairs(photos.phashes, photos.known)
    pair_i, pair_j = unique_pairs(np.r_[first[near], by_hash[0]], np.r_[second[near], by_hash[1]])
    # Hashes first (photos indexed before the cache kept them are decoded now), then the cheap
    # tests on every pair at once; only the pairs that pass them decode pictures.
    for k in np.unique(np.r_[pair_i, pair_j][~photos.known[np.r_[pair_i, pair_j]]]).tolist():
        pictures.hash(k)
    close = photos.known[pair_i] & photos.known[pair_j]
    turns, bits = phash.nearest_turns(photos.phashes[pair_i], photos.phashes[pair_j])
    close &= bits <= COPY_BITS + np.where(turns > 0, TURN_SLACK, 0)
    close &= cosines(photos.vectors, pair_i, pair_j) >= HASH_COSINE
    for i, j, turn in zip(pair_i[close].tolist(), pair_j[close].tolist(), turns[close].tolist(), strict=True):
        if copies.find(i) != copies.find(j) and pictures.alike(i, j, turn):
            copies.union(i, j)
    scenes = _Sets(len(photos))
    scenes.parent = [copies.find(i) for i in range(len(photos))]
    if similar is not None:
        for i, j in zip(first[cosine >= similar].tolist(), second[cosine >= similar].tolist(), strict=True):
            scenes.union(i, j)
    groups = [_group(members, photos, copies) for members in scenes.groups()]
    groups.sort(key=lambda g: (-len(g.members), str(g.keeper.path)))
    return groups, pictures.new_hashes


def _exact_pairs(photos: Photos) -> list[tuple[int, int]]:
    """Photos of the same size and fingerprint whose whole files hash alike (each to the first of its kind)."""
    by_fingerprint: dict[tuple[int, bytes], list[int]] = {}
    for i, (size, fingerprint) in enumerate(zip(photos.sizes.tolist(), photos.fingerprints, strict=True)):
        by_fingerprint.setdefault((size, fingerprint), []).append(i)
    pairs = []
    for members in by_fingerprint.values():
        if len(members) < 2:
            continue
        by_content: dict[bytes, int] = {}
        for i in members:
            digest = _content_hash(photos.path(i))
            if digest is not None:
                pairs.append((by_content.setdefault(digest, i), i))
    return [(i, j) for i, j in pairs if i != j]


def _content_hash(path: Path) -> bytes | None:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.digest()


def _group(members: list[int], photos: Photos, copies: _Sets) -> Group:
    facts = {i: _facts(photos.path(i)) for i in members}

    def rank(i: int) -> tuple:
        width, height, taken, mtime = facts[i]
        return (-(width or 0) * (height or 0), taken or datetime.max, mtime, str(photos.path(i)))

    keeper = min(members, key=rank)
    keeper_vector = photos.vectors[keeper].astype(np.float32)
    keeper_content: bytes | None = None
    ordered = [keeper] + sorted((i for i in members if i != keeper), key=rank)
    result = []
    for i in ordered:
        if i == keeper:
            relation = "keep"
        elif copies.find(i) != copies.find(keeper):
            relation = "similar"
        else:
            relation = "copy"
            if photos.sizes[i] == photos.sizes[keeper] and photos.fingerprints[i] == photos.fingerprints[keeper]:
                keeper_content = keeper_content or _content_hash(photos.path(keeper))
                if keeper_content is not None and _content_hash(photos.path(i)) == keeper_content:
                    relation = "exact"
        width, height, taken, _ = facts[i]
        distance = (  # turned where that brings the hashes nearer (a copy rotated in an editor)
            int(phash.nearest_turns(photos.phashes[[keeper]], photos.phashes[[i]])[1][0])
            if photos.known[i] and photos.known[keeper]
            else None
        )
        # a cosine: at most 1 (vectors kept as float16 can give 1.0002 for a photo and itself)
        similarity = min(1.0, float(photos.vectors[i].astype(np.float32) @ keeper_vector))
        result.append(
            Member(photos.path(i), relation, width, height, int(photos.sizes[i]), taken, similarity, distance)
        )
    kind = "copies" if all(m.relation != "similar" for m in result) else "similar"
    return Group(kind, tuple(result))


def _facts(path: Path) -> tuple[int | None, int | None, datetime | None, int]:
    from clipsort.photos.exif import read_facts

    size = dimensions(path)
    facts = read_facts(path)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = 0
    taken = facts.taken if facts.taken_source != "mtime" else None
    return (size[0] if size else None, size[1] if size else None, taken, mtime)


def _merged(chunks: Sequence[Photos]) -> Photos:
    if not chunks:
        none = np.empty(0, np.int64)
        return Photos([], np.empty((0, 0), np.float16), none, none.astype(bool), [], none, lambda key: Path())
    return Photos(
        keys=[k for c in chunks for k in c.keys],
        vectors=np.concatenate([c.vectors for c in chunks]),
        phashes=np.concatenate([c.phashes for c in chunks]),
        known=np.concatenate([c.known for c in chunks]),
        fingerprints=[f for c in chunks for f in c.fingerprints],
        sizes=np.concatenate([c.sizes for c in chunks]),
        name=chunks[0].name,
    )


def run_dupes(
    roots: Sequence[Path],
    embedder: Embedder,
    options: DupesOptions = DupesOptions(),
    events: Events | None = None,
    on_picture: Callable[[Path, Image.Image], None] | None = None,
) -> tuple[Report, list[Group]]:
    """Index what the cache lacks under ``roots`` (unless ``options.index`` is off), then group."""
    events = events or SilentEvents()
    report = Report("dupes")
    cache, model_id = open_library(roots, embedder, "dupes")
    wanted = index_missing(roots, embedder, options.run, report, events) if options.index else None
    photos = _merged(list(cached_photos(cache, model_id, roots, wanted)))  # the chunks are let go
    if not len(photos):
        where = ", ".join(map(str, roots))
        raise ClipsortError(f"no photos under {where}" + ("" if options.index else " in the cache (drop --no-index)"))
    report.found = len(photos)

    def failed(failure: FileFailure) -> None:
        report.fail(failure)
        events.failed(failure)

    groups, new_hashes = find_groups(photos, options.similar, failed, on_picture)
    if new_hashes:
        cache.set_phashes(model_id, new_hashes.items())
    report.actions["groups"] = len(groups)
    report.actions["duplicates"] = sum(len(g.members) - 1 for g in groups)
    report.finish()
    return report, groups
