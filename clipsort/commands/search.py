"""``search``: the photos under some folders, ranked by how well they match a query.

A query is made of terms: descriptions (texts) and example photos, each with a weight, those
given with ``--minus`` or ``--minus-like`` pushing away. It becomes one vector (docs/search.md):

    q = normalise( sum of w * t  +  sum of w * p  -  sum of w * t'  -  sum of w * p' )

where each ``t`` is a description's vector (the normalised mean of its prompts' vectors, the
label templates by default, as a label's), each ``p`` an example photo's vector, all
normalised before they are weighted. A photo's score is the cosine of its vector with ``q``.

A clip is scored by its best frame (its frames' vectors are kept in the cache), and the hit
says when that frame comes. Photos are scored from the cache a chunk at a time (numpy, float16 as stored), keeping the
best ``top`` as it goes: memory does not grow with the library.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipsort.commands.library import Photos, cached_photos, holders, index_missing, open_library
from clipsort.errors import ClipsortError, UsageError
from clipsort.labels.label_set import query_prompts
from clipsort.labels.score import label_embedding, normalise
from clipsort.model.embed import Embedder
from clipsort.photos.discover import ImageRef
from clipsort.photos.formats import is_video
from clipsort.run.events import Events, RunOptions, SilentEvents
from clipsort.run.pipeline import embedded_photos
from clipsort.run.report import Report
from clipsort.store.cache import EmbeddingCache

_WEIGHT = re.compile(r"(?s)(.*\S)\s*:\s*(\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class Term:
    """One part of a query: a description or an example photo, and its weight (negative: away from it)."""

    weight: float
    text: str | None = None
    photo: Path | None = None

    def describe(self) -> str:
        what = repr(self.text) if self.text is not None else str(self.photo)
        return f"{what} x {self.weight:g}"


@dataclass(frozen=True)
class SearchOptions:
    top: int = 10  #: 0: every photo
    min_score: float | None = None
    raw: bool = False  #: descriptions as given, not in the label templates
    index: bool = True  #: embed the photos the cache lacks first
    run: RunOptions = field(default_factory=RunOptions)


@dataclass(frozen=True)
class Hit:
    score: float
    path: Path
    #: For a clip, the time in seconds of the frame that matched best (None: a photo, or a clip
    #: whose frames the cache does not hold, which is ranked by its own vector).
    at: float | None = None


#: A clip's kept frames by content fingerprint: (times, vectors) (:meth:`EmbeddingCache.frames`).
FramesOf = Callable[[list[bytes]], dict[bytes, tuple[np.ndarray, np.ndarray]]]


def weighted(raw: str, option: str) -> tuple[str, float]:
    """``"beach:2"`` -> ``("beach", 2.0)``; text without a numeric suffix weighs 1."""
    match = _WEIGHT.fullmatch(raw)
    if match is None:
        return raw, 1.0
    weight = float(match.group(2))
    if not weight > 0 or not math.isfinite(weight):
        raise UsageError(f"{option} {raw!r}: a weight must be a number above 0")
    return match.group(1), weight


def parse_query(
    text: str | None, like: Sequence[str] = (), minus: Sequence[str] = (), minus_like: Sequence[str] = ()
) -> list[Term]:
    """The terms of a query from the command line's pieces (weights as ``:W`` suffixes).

    A photo whose name itself ends in ``:N`` is taken whole when that file exists.
    """
    terms: list[Term] = []
    if text is not None:
        if not text.strip():
            raise UsageError("the query is empty: describe the photos to find, or give --like PHOTO")
        words, weight = weighted(text, "the query")
        terms.append(Term(weight, text=words))
    for raw in minus:
        words, weight = weighted(raw, "--minus")
        if not words.strip():
            raise UsageError("--minus: the text is empty")
        terms.append(Term(-weight, text=words))
    for option, items, sign in (("--like", like, 1.0), ("--minus-like", minus_like, -1.0)):
        for raw in items:
            name, weight = (raw, 1.0) if os.path.lexists(raw) else weighted(raw, option)
            path = Path(name)
            if not path.is_file():
                raise UsageError(f"{option} {name}: no such photo")
            terms.append(Term(sign * weight, photo=path))
    if not any(t.weight > 0 for t in terms):
        raise UsageError("nothing to search for: give a description or --like PHOTO (--minus only pushes away)")
    return terms


def query_vector(
    terms: Sequence[Term], embedder: Embedder, raw: bool = False, run: RunOptions = RunOptions()
) -> np.ndarray:
    """The query's unit vector (the module's formula)."""
    parts: list[np.ndarray] = []
    for term in terms:
        if term.text is not None:
            prompts = [term.text] if raw else list(query_prompts(term.text))
            parts.append(term.weight * label_embedding(embedder.text_vectors(prompts)))
        else:
            assert term.photo is not None
            parts.append(term.weight * normalise(_photo_vector(term.photo, embedder, run))[0])
    total = np.sum(parts, axis=0)
    if float(np.linalg.norm(total)) < 1e-6:
        raise UsageError("the query's terms cancel each other out: change their weights")
    return normalise(total[None, :])[0]


def _photo_vector(photo: Path, embedder: Embedder, run: RunOptions) -> np.ndarray:
    """An example photo's vector: from the cache when it has it, else decoded and embedded (and cached)."""
    st = os.stat(photo)
    report = Report("search")
    chunks = list(embedded_photos([ImageRef(photo, st.st_size, st.st_mtime_ns)], embedder, run, report, SilentEvents()))
    if report.failures:
        raise UsageError(f"--like {photo}: {report.failures[0].reason}")
    return chunks[0][0][1][None, :]


def rank(
    chunks: Iterable[Photos],
    query: np.ndarray,
    top: int = 10,
    min_score: float | None = None,
    frames_of: FramesOf | None = None,
) -> list[Hit]:
    """The best ``top`` photos of ``chunks`` (0: all), best first; ties in path order.

    A clip whose frames ``frames_of`` gives is scored by its best frame (a red circle seen in
    its last second is found), and its hit says that frame's time.

    Each chunk keeps its own best ``top`` before they join the best so far, so what is held
    beside one chunk is ``top`` scores and names.
    """
    query = query.astype(np.float32)
    scores = np.empty(0, dtype=np.float32)
    named: list[tuple[bytes, Callable[[bytes], Path], float | None]] = []
    for chunk in chunks:
        found = _cosines(chunk.vectors, query)
        times = _best_frames(chunk, found, query, frames_of) if frames_of is not None else {}
        keep = np.flatnonzero(found >= min_score) if min_score is not None else np.arange(len(found))
        if top and len(keep) > top:
            keep = keep[np.argpartition(-found[keep], top - 1)[:top]]
        scores = np.concatenate([scores, found[keep]])
        named += [(chunk.keys[i], chunk.name, times.get(i)) for i in keep.tolist()]
        if top and len(scores) > top:
            best = np.argpartition(-scores, top - 1)[:top]
            scores, named = scores[best], [named[i] for i in best.tolist()]
    hits = [
        Hit(round(float(score), 6), name(key), at)
        for score, (key, name, at) in zip(scores.tolist(), named, strict=True)
    ]
    hits.sort(key=lambda hit: (-hit.score, str(hit.path)))
    return hits[:top] if top else hits


def _cosines(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosines of float16 rows with the query: a vector rounded to float16 is a little off unit
    length, and a photo must score 1 against itself, above its own copies."""
    vectors = vectors.astype(np.float32)
    return (vectors @ query) / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)


def _best_frames(chunk: Photos, found: np.ndarray, query: np.ndarray, frames_of: FramesOf) -> dict[int, float]:
    """Raise each clip's score in ``found`` to its best frame's; the times of those frames, by row."""
    clips = [i for i, key in enumerate(chunk.keys) if is_video(os.fsdecode(key)) and chunk.fingerprints]
    kept = frames_of([chunk.fingerprints[i] for i in clips]) if clips else {}
    times: dict[int, float] = {}
    for i in clips:
        frames = kept.get(chunk.fingerprints[i])
        if frames is None:
            continue
        cosines = _cosines(frames[1], query)
        best = int(np.argmax(cosines))
        if cosines[best] > found[i]:
            found[i] = cosines[best]
        times[i] = float(frames[0][best])
    return times


def run_search(
    roots: Sequence[Path],
    terms: Sequence[Term],
    embedder: Embedder,
    options: SearchOptions = SearchOptions(),
    events: Events | None = None,
) -> tuple[Report, list[Hit]]:
    """Index what the cache lacks under ``roots`` (unless ``options.index`` is off), then rank."""
    events = events or SilentEvents()
    report = Report("search")
    cache, model_id = open_library(roots, embedder, "search")
    where = ", ".join(map(str, roots))
    if options.index:
        wanted: dict | None = index_missing(roots, embedder, options.run, report, events)
        if not wanted:
            raise ClipsortError(f"no photos under {where}" + (" that could be read" if report.failures else ""))
    else:
        wanted = None
        if not any(True for _ in cache.scan(model_id, roots, columns="path", chunk=1)):
            raise ClipsortError(_nothing_cached(cache, roots, model_id, where))
    query = query_vector(terms, embedder, options.raw, options.run)
    # fingerprints are read (hashes=True) for the clips' frames, which are kept by content
    photos = cached_photos(cache, model_id, roots, wanted, hashes=True)
    hits = rank(photos, query, options.top, options.min_score, lambda fps: cache.frames(model_id, fps))
    if wanted is None:
        hits = _still_there(hits, roots, cache, model_id, query, options)
    report.actions["found"] = len(hits)
    report.finish()
    return report, hits


def _nothing_cached(cache: EmbeddingCache, roots: Sequence[Path], model_id: int, where: str) -> str:
    message = f"the cache holds no vectors of this model for photos under {where}"
    others = holders(cache, roots, model_id)
    if others:
        name, count = others[0]
        return message + f"; it holds {count} of {name} (choose it with --model), or drop --no-index to index them"
    return message + "; drop --no-index to index them"


def _still_there(
    hits: list[Hit],
    roots: Sequence[Path],
    cache: EmbeddingCache,
    model_id: int,
    query: np.ndarray,
    options: SearchOptions,
) -> list[Hit]:
    """``--no-index``: the cache's word is taken, but photos deleted since are left out."""
    present = [hit for hit in hits if os.path.exists(hit.path)]
    if len(present) < len(hits) and options.top:  # some were deleted: look further down the list
        photos = cached_photos(cache, model_id, roots, None, hashes=True)
        wider = rank(photos, query, 0, options.min_score, lambda fps: cache.frames(model_id, fps))
        present = [hit for hit in wider if os.path.exists(hit.path)][: options.top]
    return present
