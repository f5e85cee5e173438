"""``show``: what clipsort knows of a photo: sidecar keywords, date taken, camera, cached models, decisions
(and for a clip, per label, the frame that shows it best)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from clipsort.errors import FileFailure, SidecarError, UsageError
from clipsort.labels import decide
from clipsort.labels.label_set import LabelSet
from clipsort.model.embed import Embedder
from clipsort.photos.discover import ImageRef
from clipsort.photos.exif import embedded_keywords, read_facts
from clipsort.photos.formats import available, format_of, is_video
from clipsort.run.classifier import Decisions, prepare_decisions
from clipsort.run.events import Events, RunOptions, SilentEvents, fail
from clipsort.run.pipeline import score_all, scores_of
from clipsort.run.report import Report
from clipsort.writes.sidecar import json_path, keywords_in, read_keywords, xmp_path


def describe(photo: Path, embedder: Embedder) -> dict[str, object]:
    """Everything clipsort knows of ``photo`` without a model: format, metadata, sidecars, cache entries."""
    fmt = format_of(photo.name)
    facts = read_facts(photo)
    record: dict[str, object] = {
        "path": str(photo),
        "format": fmt.name if fmt else None,
        "readable": bool(fmt and available(fmt)),
        **facts.to_json(),
        "in_file": _in_file(photo),
        "sidecars": _sidecars(photo),
        "cached_models": _cached_models(photo, embedder),
    }
    return record


def _in_file(photo: Path) -> dict[str, object]:
    """The keywords inside the photo: its XMP fields by who wrote them, and its IPTC Keywords."""
    embedded = embedded_keywords(photo)
    found: dict[str, object] = {"clipsort": {}, "others": {}, "iptc": list(embedded.iptc)}
    if embedded.xmp is not None:
        try:
            found.update(keywords_in(embedded.xmp))
        except ValueError as exc:
            found["error"] = f"its XMP is {exc}"
    return found


def _sidecars(photo: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for path in dict.fromkeys([xmp_path(photo, "full"), xmp_path(photo, "stem")]):
        if path == photo or not os.path.lexists(path):
            continue
        try:
            found.append({"path": str(path), **read_keywords(path)})
        except SidecarError as exc:
            found.append({"path": str(path), "error": exc.reason})
    if json_path(photo).is_file():
        found.append({"path": str(json_path(photo))})
    return found


def _cached_models(photo: Path, embedder: Embedder) -> list[dict[str, object]]:
    cache = embedder.cache
    if cache is None:
        return []
    try:
        st = os.stat(photo)
    except OSError:
        return []
    rows = cache.db.execute(  # paths are kept as the runs gave them: relative or absolute
        "SELECT m.name, i.size, i.mtime_ns FROM images i JOIN models m ON m.id=i.model_id WHERE i.path IN (?, ?)"
        " ORDER BY m.used_ns DESC",
        (os.fsencode(photo), os.fsencode(photo.absolute())),
    ).fetchall()
    return [{"model": name, "current": size == st.st_size and mtime == st.st_mtime_ns} for name, size, mtime in rows]


def _best_frames(clip: Path, decisions: Decisions, embedder: Embedder) -> dict[str, dict[str, float]]:
    """For a clip whose frames the cache keeps: per label, the time of the frame that shows it
    best, and that frame's score (the clip itself is judged by its frames' mean)."""
    cache = embedder.cache
    if cache is None:
        return {}
    model_id = embedder.cache_model_id()
    fingerprints = [row[0] for rows in cache.scan(model_id, [clip], columns="fingerprint") for row in rows]
    frames = cache.frames(model_id, fingerprints).get(fingerprints[0]) if fingerprints else None
    if frames is None:
        return {}
    times, vectors = frames
    scores = decide.sigmoid(decisions.scorer.logits(vectors))
    best = scores.argmax(axis=0)
    return {
        label.name: {"time": round(float(times[b]), 3), "score": round(float(scores[b, i]), 6)}
        for i, (label, b) in enumerate(zip(decisions.labels.labels, best.tolist(), strict=True))
    }


def run_show(
    photos: Sequence[Path],
    labels: LabelSet | None,
    embedder: Embedder,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> tuple[Report, list[dict[str, object]]]:
    """One description per photo; with ``labels``, each label's score and what tag and sort would decide."""
    events = events or SilentEvents()
    report = Report("show")
    refs: list[ImageRef] = []
    for photo in photos:
        if not Path(photo).is_file():
            raise UsageError(f"{photo}: not a file (show takes photos, not folders)")
        st = os.stat(photo)
        refs.append(ImageRef(Path(photo), st.st_size, st.st_mtime_ns))
    report.found = len(refs)
    descriptions: dict[Path, dict[str, object]] = {}
    if labels is not None:
        decisions = prepare_decisions(embedder, labels)
        for ref, row, logits in score_all(refs, decisions, embedder, run, report, events):
            kept, _ = decide.multi_label(row, decisions.thresholds, decisions.exclude, None)
            best, _ = decide.single_label(row, logits, decisions.thresholds, decisions.margin, decisions.exclude)
            descriptions[ref.path] = {
                "scores": {k: round(v, 6) for k, v in scores_of(labels, row).items()},
                "tag": [labels.labels[i].name for i in kept],
                "sort": labels.labels[best].name if best is not None else None,
            }
            if is_video(ref.path.name):
                descriptions[ref.path]["best_frames"] = _best_frames(ref.path, decisions, embedder)
    described = []
    for ref in refs:
        if labels is not None and ref.path not in descriptions:
            continue  # failed to decode: reported already
        try:
            described.append({**describe(ref.path, embedder), **descriptions.get(ref.path, {})})
            report.actions["shown"] += 1
        except OSError as exc:
            fail(report, events, FileFailure(ref.path, exc.strerror or str(exc)))
    report.finish()
    return report, described
