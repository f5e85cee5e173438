"""Runs the stages: discover -> decode (thread pool, ahead of the model) -> embed -> score -> act.

The pipeline never prints: it reports through an :class:`Events` object (the CLI
renders those as progress, warnings and JSON lines) and fills a :class:`Report`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from clipsort.errors import FileFailure, LabelFileError, UsageError
from clipsort.labels import decide
from clipsort.labels.label_set import LabelSet
from clipsort.model.embed import Embedder
from clipsort.photos.discover import (
    ImageRef,
    Others,
    SideFiles,
    WalkOptions,
    capture_mismatch,
    discover,
    extension_of,
    live_photo_videos,
    pair_raw_with_jpeg,
)
from clipsort.photos.formats import Format, available, format_of, is_video
from clipsort.photos.ignore import check_excludes
from clipsort.photos.location import missing, require_local
from clipsort.run.classifier import Decisions
from clipsort.run.engine_local import local_embedded_photos
from clipsort.run.events import Events, RunOptions, SilentEvents, fail
from clipsort.run.report import LEFT_OUT, PhotoResult, Report

#: RAW and JPEG files of one name judged apart that the summary names one by one.
_APART_SHOWN = 20


def check_run_options(run: RunOptions, device: str) -> None:
    """Refuse options that cannot apply to ``device`` (resolved)."""
    if run.engine not in ("local", "ray"):
        raise UsageError(f"unknown engine {run.engine!r}: use local or ray")
    if run.address and run.engine != "ray":
        raise UsageError("--address is for --engine ray")
    if run.gpu_decode and run.engine == "local" and not device.startswith("cuda"):
        raise UsageError(f"--gpu-decode needs a CUDA device; the model runs on {device} here")


# ----------------------------------------------------------------------------- stages


def check_roots(roots: Sequence[Path]) -> None:
    """Every path given must exist (a typo should not look like an empty library)."""
    absent = missing(roots)
    if absent:
        raise UsageError(f"no such file or folder: {', '.join(absent)}")


def find_photos(
    roots: Sequence[Path],
    report: Report,
    events: Events,
    side_files: SideFiles | None = None,
    run: RunOptions = RunOptions(),
) -> list[ImageRef]:
    """Discover every photo first: sorting must not meet the files it has just moved."""
    check_roots(roots)
    refs: list[ImageRef] = []

    def on_error(path: Path, reason: str) -> None:
        failure = FileFailure(path, reason)
        report.fail(failure)
        events.failed(failure)

    def on_left_out(path: Path, reason: str) -> None:
        report.left_out.append((path, reason))

    unreadable: dict[Format, list[ImageRef]] = {}
    check_excludes(run.exclude)
    walk = WalkOptions(follow_links=run.follow_links, include_managed=run.include_managed, exclude=run.exclude)
    others = Others()
    found = discover(
        roots, on_error=on_error, side_files=side_files, options=walk, on_left_out=on_left_out, others=others
    )
    for ref in found:
        fmt = format_of(ref.path.name)
        if fmt is not None and not available(fmt):
            unreadable.setdefault(fmt, []).append(ref)
        else:
            refs.append(ref)
        if len(refs) % 1000 == 0:
            events.discovering(len(refs))
    refs, live = live_photo_videos(refs, [ref for skipped in unreadable.values() for ref in skipped])
    if live:
        report.notes.append(
            f"{len(live)} Live Photo video(s) (a .mov beside a photo of the same name) go with their photos,"
            " not judged on their own"
        )
    report.found = len(refs)
    report.videos = sum(is_video(ref.path.name) for ref in refs)
    report.not_photos, report.not_photo_paths = others.by_extension, others.paths
    for path in others.paths:
        note = f"not a photo or video ({extension_of(path.name)})"
        record(report, events, PhotoResult(path, {}, (), LEFT_OUT, note=note))
    for fmt, skipped in unreadable.items():
        note = f"{fmt.name} needs {fmt.reader}: {fmt.install}"
        report.unreadable[fmt.name] = (len(skipped), fmt.install)
        events.warned(f"{len(skipped)} {fmt.name} file(s) skipped: this installation cannot read them ({note})")
        for ref in skipped:
            record(report, events, PhotoResult(ref.path, {}, (), "unreadable", note=note))
    return refs


def embedded_photos(
    refs: Sequence[ImageRef],
    embedder: Embedder,
    run: RunOptions,
    report: Report,
    events: Events,
) -> Iterator[list[tuple[ImageRef, np.ndarray]]]:
    """Yield chunks of (photo, vector), in discovery order.

    Photos the cache holds at their path are found here, a block at a time; decode threads
    (:class:`clipsort.run.decode_pool.DecodePool`) look the others up further (same content elsewhere),
    or decode and prepare them, ahead of the model; beside a GPU, its JPEG decoder joins them once
    the model has loaded. A bounded number of photos is in flight (:func:`look_ahead`), so
    memory stays bounded. Vectors are committed to the cache batch by batch. Files that fail
    are reported and skipped.
    """

    if run.engine == "ray":
        from clipsort.run.engine_ray import ray_embedded_photos

        yield from ray_embedded_photos(refs, embedder, run, report, events)
        return
    yield from local_embedded_photos(refs, embedder, run, report, events)


# ----------------------------------------------------------------------------- commands


def photos_to_score(
    roots: Sequence[Path], run: RunOptions, report: Report, events: Events, side_files: SideFiles | None = None
) -> tuple[list[ImageRef], dict[Path, list[ImageRef]]]:
    """The photos to embed and judge, and each JPEG's RAW partners (RAW+JPEG pairs are judged once)."""
    if run.engine != "ray":
        require_local(roots, "URLs are read by the Ray engine: add --engine ray (docs/scale-out.md)")
    refs = find_photos(roots, report, events, side_files, run)
    partners: dict[Path, list[ImageRef]] = {}
    apart: list[str] = []
    if run.pairs:
        refs, partners = pair_raw_with_jpeg(refs, capture_mismatch, apart)
    report.notes += apart[:_APART_SHOWN]
    if len(apart) > _APART_SHOWN:
        report.notes.append(f"{len(apart) - _APART_SHOWN} more RAW and JPEG files of one name judged apart")
    if partners:
        report.notes.append(
            f"{len(partners)} RAW+JPEG pair(s) judged once, through the JPEG; the RAW files share its labels"
            " (--no-pairs treats every file on its own)"
        )
    events.started(len(refs) + sum(len(p) for p in partners.values()))
    return refs, partners


def fail_unhandled_partners(
    partners: dict[Path, list[ImageRef]], handled: set[Path], report: Report, events: Events
) -> None:
    """Name the RAW partners of the photos that failed: they are judged and moved through them."""
    for primary, raws in partners.items():
        if primary in handled:
            continue
        for raw in raws:
            reason = (
                f"not handled: it goes with its RAW+JPEG partner {primary.name}, which failed (--no-pairs: on its own)"
            )
            fail(report, events, FileFailure(raw.path, reason))


def score_all(
    refs: Sequence[ImageRef], decisions: Decisions, embedder: Embedder, run: RunOptions, report: Report, events: Events
) -> Iterator[tuple[ImageRef, np.ndarray, np.ndarray]]:
    """(photo, scores, logits) for every photo of ``refs``, in order. A photo whose scores are not
    finite numbers (a damaged vector) fails on its own, named."""
    expected: int | None = None  # the labels are embedded when the first photos are (decisions_when_needed)
    for chunk in embedded_photos(refs, embedder, run, report, events):
        vectors = np.stack([v for _, v in chunk])
        expected = expected or decisions.scorer.directions.shape[1]
        if vectors.shape[1] != expected:
            raise LabelFileError(
                decisions.labels.source,
                f"its labels are vectors of {expected} numbers, but {embedder.name} gives {vectors.shape[1]}: "
                "learn again with this model",
            )
        logits = decisions.scorer.logits(vectors)
        scores = decide.sigmoid(logits)
        finite = np.isfinite(logits).all(axis=1)
        for (ref, _), row, row_logits, ok in zip(chunk, scores, logits, finite, strict=True):
            if ok:
                yield ref, row, row_logits
            else:
                fail(report, events, FileFailure(ref.path, "its scores are not finite numbers (a damaged vector?)"))
    if expected is None:
        # no photo to judge: the labels are embedded all the same, so that a model that cannot load,
        # or labels that do not fit it, are said as on any other run
        decisions.scorer  # noqa: B018


def scores_of(labels: LabelSet, row: np.ndarray) -> dict[str, float]:
    return dict(zip(labels.names, row.tolist(), strict=True))


def explained_of(decisions: Decisions, judgements: Sequence[decide.Judgement]) -> dict[str, decide.Judgement]:
    return {label.name: j for label, j in zip(decisions.labels.labels, judgements, strict=True)}


def run_index(
    roots: Sequence[Path],
    embedder: Embedder,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> Report:
    """Fill the cache with the vectors of every photo under ``roots``; tag and move nothing."""
    events = events or SilentEvents()
    report = Report("index")
    refs, partners = photos_to_score(roots, run, report, events)
    handled: set[Path] = set()
    for chunk in embedded_photos(refs, embedder, run, report, events):
        for ref, _ in chunk:
            handled.add(ref.path)
            record(report, events, PhotoResult(ref.path, {}, (), "indexed"))
            events.advanced(1)
            for partner in partners.get(ref.path, []):
                note = f"RAW+JPEG pair: embedded once, through {ref.path.name}"
                record(report, events, PhotoResult(partner.path, {}, (), "paired", note=note))
                events.advanced(1)
    fail_unhandled_partners(partners, handled, report, events)
    report.finish()
    return report


def record(report: Report, events: Events, result: PhotoResult) -> None:
    report.record(result)
    events.photo(result)
