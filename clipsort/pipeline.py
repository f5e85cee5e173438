"""Runs the stages: discover -> decode (thread pool, ahead of the model) -> embed -> score -> act.

The pipeline never prints: it reports through an :class:`Events` object (the CLI
renders those as progress, warnings and JSON lines) and fills a :class:`Report`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from clipsort import decide, settings
from clipsort.classifier import Decisions, prepare_decisions
from clipsort.decode import default_max_megapixels, set_max_megapixels
from clipsort.discover import ImageRef, discover
from clipsort.embed import Embedder, Resolved
from clipsort.errors import ClipsortError, DestinationFullError, FileFailure, SidecarError, UsageError
from clipsort.journal import Journal, recover
from clipsort.labels import Label, LabelSet
from clipsort.mover import Mover
from clipsort.report import PhotoResult, Report
from clipsort.sidecar import json_path, keywords_for, write_json, write_xmp, xmp_path


class Events(Protocol):
    """What the pipeline tells its caller while it runs."""

    def discovering(self, count: int) -> None: ...
    def started(self, total: int) -> None: ...
    def advanced(self, count: int) -> None: ...
    def photo(self, result: PhotoResult) -> None: ...
    def failed(self, failure: FileFailure) -> None: ...
    def warned(self, message: str) -> None: ...


class SilentEvents:
    """Events that go nowhere (library use, tests)."""

    def discovering(self, count: int) -> None:
        pass

    def started(self, total: int) -> None:
        pass

    def advanced(self, count: int) -> None:
        pass

    def photo(self, result: PhotoResult) -> None:
        pass

    def failed(self, failure: FileFailure) -> None:
        pass

    def warned(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class TagOptions:
    #: None: each label's own, else the label file's, else the built-in default (docs/scoring.md).
    threshold: float | None = None
    #: Keep at most this many labels per photo; None: no limit.
    top_k: int | None = None
    sidecar: str = "xmp"  #: xmp or json
    xmp_name: str = "full"  #: full (photo.jpg.xmp) or stem (photo.xmp)
    #: None: the label file's tag_root, else "clipsort".
    tag_root: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class SortOptions:
    dest: Path | None = None
    threshold: float | None = None
    #: How far (in logits) the best label must lead the runner-up; None: the label file's, else the default.
    margin: float | None = None
    mode: str = "move"
    unsorted: str = "_unsorted"
    leave_unsorted: bool = False
    dedupe: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class RunOptions:
    #: Images per model call; None: the loaded model's default for its device (32 on CPUs).
    batch_size: int | None = None
    #: Decode threads; None chooses from the CPUs this process may use.
    workers: int | None = None
    #: Images with more pixels are refused; None derives a cap from the available memory.
    max_megapixels: float | None = None


def default_workers() -> int:
    return max(1, min(4, settings.usable_cpus()))


# ----------------------------------------------------------------------------- stages


def check_roots(roots: Sequence[Path]) -> None:
    """Every path given must exist (a typo should not look like an empty library)."""
    missing = [str(r) for r in roots if not os.path.lexists(r)]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")


def find_photos(roots: Sequence[Path], report: Report, events: Events) -> list[ImageRef]:
    """Discover every photo first: sorting must not meet the files it has just moved."""
    check_roots(roots)
    refs: list[ImageRef] = []

    def on_error(path: Path, reason: str) -> None:
        failure = FileFailure(path, reason)
        report.fail(failure)
        events.failed(failure)

    for ref in discover(roots, on_error=on_error):
        refs.append(ref)
        if len(refs) % 1000 == 0:
            events.discovering(len(refs))
    report.found = len(refs)
    return refs


def embedded_photos(
    refs: Sequence[ImageRef],
    embedder: Embedder,
    run: RunOptions,
    report: Report,
    events: Events,
) -> Iterator[list[tuple[ImageRef, np.ndarray]]]:
    """Yield chunks of (photo, vector), in discovery order.

    A pool of threads looks each photo up in the cache, or decodes and preprocesses
    it, ahead of the model (Pillow releases the GIL); at most two batches are in
    flight (four while the model loads), so memory stays bounded. Vectors are
    committed to the cache batch by batch. Files that fail are reported and skipped.
    """

    def batch_size() -> int:
        # Known once the model has loaded (started by the first photo that needs it).
        if run.batch_size:
            return run.batch_size
        model = embedder.loaded
        return model.batch_size if model is not None else settings.DEFAULT_BATCH_SIZE

    workers = run.workers or default_workers()
    set_max_megapixels(run.max_megapixels or default_max_megapixels(workers))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipsort-decode") as pool:
        pending: deque[tuple[ImageRef, Future[Resolved]]] = deque()
        refs_iter = iter(refs)
        chunk: list[Resolved] = []
        to_embed = 0
        try:
            while True:
                size = batch_size()
                # While the model loads (seconds), the decode threads run further ahead.
                ahead = size * (4 if embedder.loading else 2)
                while len(pending) < ahead:
                    ref = next(refs_iter, None)
                    if ref is None:
                        break
                    pending.append((ref, pool.submit(embedder.resolve, ref)))
                if not pending and not chunk:
                    break
                if pending:
                    ref, future = pending.popleft()
                    try:
                        resolved = future.result()
                    except FileFailure as failure:
                        _fail(report, events, failure)
                    except (ClipsortError, KeyboardInterrupt):
                        raise
                    except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
                        _fail(report, events, FileFailure(ref.path, f"cannot decode: {exc}"))
                    else:
                        chunk.append(resolved)
                        to_embed += resolved.vector is None
                if to_embed >= size or len(chunk) >= ahead * 2 or (not pending and chunk):
                    vectors = embedder.finish(chunk)
                    yield [(r.ref, v) for r, v in zip(chunk, vectors, strict=True)]
                    chunk, to_embed = [], 0
        finally:
            for _, future in pending:
                future.cancel()
            report.embedded = embedder.embedded
            report.cached = embedder.from_cache


def _fail(report: Report, events: Events, failure: FileFailure) -> None:
    report.fail(failure)
    events.failed(failure)
    events.advanced(1)


# ----------------------------------------------------------------------------- commands


def _score_all(
    roots: Sequence[Path], decisions: Decisions, embedder: Embedder, run: RunOptions, report: Report, events: Events
) -> Iterator[tuple[ImageRef, np.ndarray, np.ndarray]]:
    """(photo, scores, logits) for every photo under ``roots``, in discovery order."""
    refs = find_photos(roots, report, events)
    events.started(len(refs))
    for chunk in embedded_photos(refs, embedder, run, report, events):
        logits = decisions.scorer.logits(np.stack([v for _, v in chunk]))
        yield from zip((ref for ref, _ in chunk), decide.sigmoid(logits), logits, strict=True)


def _scores(labels: LabelSet, row: np.ndarray) -> dict[str, float]:
    return {label.name: float(p) for label, p in zip(labels.labels, row, strict=True)}


def _explained(decisions: Decisions, judgements: Sequence[decide.Judgement]) -> dict[str, decide.Judgement]:
    return {label.name: j for label, j in zip(decisions.labels.labels, judgements, strict=True)}


def run_tag(
    roots: Sequence[Path],
    labels: LabelSet,
    embedder: Embedder,
    options: TagOptions,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> Report:
    """Score every photo under ``roots`` and write the labels it passes to its sidecar (multi-label)."""
    events = events or SilentEvents()
    report = Report("tag", dry_run=options.dry_run)
    decisions = prepare_decisions(embedder, labels, options.threshold)
    tag_root = options.tag_root if options.tag_root is not None else (labels.tag_root or "clipsort")
    #: With --xmp-name stem, photo.jpg and photo.png would share photo.xmp: the first one keeps it.
    sidecar_of: dict[Path, Path] = {}
    for ref, row, _ in _score_all(roots, decisions, embedder, run, report, events):
        kept_idx, judgements = decide.multi_label(row, decisions.thresholds, decisions.exclude, options.top_k)
        kept: list[Label] = [labels.labels[i] for i in kept_idx]
        names = tuple(label.name for label in kept)
        try:
            if options.sidecar == "xmp" and options.xmp_name == "stem":
                owner = sidecar_of.setdefault(xmp_path(ref.path, "stem"), ref.path)
                if owner != ref.path:
                    raise SidecarError(
                        ref.path,
                        f"its sidecar {owner.with_suffix('.xmp').name} belongs to {owner.name} (--xmp-name stem);"
                        " not tagged: use --xmp-name full to give each photo its own",
                    )
            sidecar = _write_tags(ref.path, kept, row, labels, embedder.name, options, tag_root)
        except FileFailure as failure:
            report.fail(failure)
            events.failed(failure)
        else:
            action = "tagged" if kept else "untagged"
            result = PhotoResult(
                ref.path,
                _scores(labels, row),
                names,
                action,
                sidecar=sidecar,
                dry_run=options.dry_run,
                explained=_explained(decisions, judgements),
            )
            _record(report, events, result)
        events.advanced(1)
    report.finish()
    return report


def _write_tags(
    photo: Path,
    kept: Sequence[Label],
    row: np.ndarray,
    labels: LabelSet,
    model_name: str,
    options: TagOptions,
    tag_root: str,
) -> Path | None:
    if options.sidecar == "json":
        if options.dry_run:
            return json_path(photo)
        return write_json(photo, model_name, _scores(labels, row), [label.name for label in kept])
    path = xmp_path(photo, options.xmp_name)
    if not kept and not path.exists():
        return None  # nothing to write, and no earlier clipsort keywords to remove
    if options.dry_run:
        return path
    return write_xmp(photo, keywords_for(kept, tag_root), tag_root, model_name, options.xmp_name)


def run_index(
    roots: Sequence[Path],
    embedder: Embedder,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> Report:
    """Fill the cache with the vectors of every photo under ``roots``; tag and move nothing."""
    events = events or SilentEvents()
    report = Report("index")
    refs = find_photos(roots, report, events)
    events.started(len(refs))
    for chunk in embedded_photos(refs, embedder, run, report, events):
        for ref, _ in chunk:
            _record(report, events, PhotoResult(ref.path, {}, (), "indexed"))
            events.advanced(1)
    report.finish()
    return report


def sort_destination(roots: Sequence[Path], dest: Path | None) -> Path:
    """``--dest``, or the folder being sorted when there is exactly one."""
    if dest is not None:
        return dest
    if len(roots) == 1 and Path(roots[0]).is_dir():
        return Path(roots[0])
    raise UsageError("--dest is needed when sorting several paths or a single file")


def check_unsorted_name(labels: LabelSet, name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"--unsorted-name {name!r} must be a plain folder name")
    for label in labels.labels:
        if label.path[0].casefold() == name.casefold():
            raise UsageError(f"--unsorted-name {name!r} is also a label (line {label.line}); choose another name")


def check_sort_options(roots: Sequence[Path], labels: LabelSet, options: SortOptions) -> Path:
    """Validate what can be validated before any work; returns the destination folder."""
    dest = sort_destination(roots, options.dest)
    check_unsorted_name(labels, options.unsorted)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"--dest {dest} is a file, not a folder")
    return dest


def run_sort(
    roots: Sequence[Path],
    labels: LabelSet,
    embedder: Embedder,
    options: SortOptions,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> Report:
    """Move (copy, link) every photo under ``roots`` into ``DEST/<label>/`` by its top label."""
    events = events or SilentEvents()
    dest = check_sort_options(roots, labels, options)
    report = Report("sort", dry_run=options.dry_run)
    journal = None
    if not options.dry_run:
        recover(events.warned)
        journal = Journal.create(
            "sort",
            {"dest": str(dest.absolute()), "mode": options.mode, "roots": [str(Path(r).absolute()) for r in roots]},
        )
        report.journal = journal.path
    mover = Mover(options.mode, journal, dedupe=options.dedupe)
    past = {"move": "moved", "copy": "copied", "link": "linked", "dedupe": "deduplicated"}
    try:
        decisions = prepare_decisions(embedder, labels, options.threshold, options.margin)
        for ref, row, logits in _score_all(roots, decisions, embedder, run, report, events):
            best, judgements = decide.single_label(
                row, logits, decisions.thresholds, decisions.margin, decisions.exclude
            )
            label = labels.labels[best] if best is not None else None
            names = (label.name,) if label else ()
            explained = _explained(decisions, judgements)
            if label is None and options.leave_unsorted:
                result = PhotoResult(
                    ref.path, _scores(labels, row), names, "left", dry_run=options.dry_run, explained=explained
                )
                _record(report, events, result)
                events.advanced(1)
                continue
            folder = dest.joinpath(*label.folder_path) if label else dest / options.unsorted
            try:
                plan = mover.plan(ref.path, folder)
                if plan.action in ("in-place", "duplicate"):
                    action = plan.action
                else:
                    action = past[plan.action] if label or plan.action == "dedupe" else "unsorted"
                    if not options.dry_run:
                        for warning in mover.execute(plan):
                            report.warnings.append(warning)
                            events.warned(warning)
            except DestinationFullError as exc:
                report.fatal = str(exc)
                break
            except FileFailure as failure:
                _fail(report, events, failure)
                continue
            result = PhotoResult(
                ref.path,
                _scores(labels, row),
                names,
                action,
                destination=plan.target,
                dry_run=options.dry_run,
                explained=explained,
            )
            _record(report, events, result)
            events.advanced(1)
    finally:
        report.finish()
        if journal is not None:
            journal.end({"actions": dict(report.actions), "failed": len(report.failures), "fatal": report.fatal})
            journal.close()
    return report


def _record(report: Report, events: Events, result: PhotoResult) -> None:
    report.record(result)
    events.photo(result)
