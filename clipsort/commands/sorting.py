"""``sort``: each photo into the folder of its best label, companions and RAW partners with it, journaled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from clipsort.errors import DestinationFullError, FileFailure, UsageError
from clipsort.labels import decide
from clipsort.labels.label_set import LabelSet
from clipsort.labels.names import UNSAFE_IN_NAMES, control_problem
from clipsort.model.embed import Embedder
from clipsort.photos.location import require_local
from clipsort.run.classifier import prepare_decisions
from clipsort.run.events import Events, RunOptions, SilentEvents, fail, wants_details, warn
from clipsort.run.pipeline import explained_of, fail_unhandled_partners, photos_to_score, record, score_all, scores_of
from clipsort.run.report import PhotoResult, Report
from clipsort.store.journal import Journal
from clipsort.writes.mover import Mover
from clipsort.writes.pattern import Pattern
from clipsort.writes.recovery import recover


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
    #: Where under ``dest`` each photo goes (``--pattern``); None: ``{label}``.
    pattern: Pattern | None = None


def sort_destination(roots: Sequence[Path], dest: Path | None) -> Path:
    """``--dest``, or the folder being sorted when there is exactly one."""
    if dest is not None:
        return dest
    if len(roots) == 1 and Path(roots[0]).is_dir():
        return Path(roots[0])
    raise UsageError("--dest is needed when sorting several paths or a single file")


def check_unsorted_name(labels: LabelSet, name: str) -> None:
    problem = control_problem(name, "--unsorted-name")
    if problem:
        raise UsageError(problem)
    if not name or name != name.strip() or name in (".", "..") or any(ch in UNSAFE_IN_NAMES for ch in name):
        raise UsageError(
            f"--unsorted-name {name!r} must be a plain folder name (no {' '.join(UNSAFE_IN_NAMES)}, "
            "no leading or trailing spaces)"
        )
    for label in labels.labels:
        if label.path[0].casefold() == name.casefold():
            raise UsageError(f"--unsorted-name {name!r} is also a label (line {label.line}); choose another name")


def check_sort_options(roots: Sequence[Path], labels: LabelSet, options: SortOptions) -> Path:
    """Validate what can be validated before any work; returns the destination folder."""
    require_local(roots, "sort cannot move photos in object storage yet (index and tag can, with --engine ray)")
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
    run = replace(run, include_managed=False)  # never writes or moves inside another application's library
    dest = check_sort_options(roots, labels, options)
    report = Report("sort", dry_run=options.dry_run)
    journal = None
    if not options.dry_run:
        recover(events.warned)
        journal = Journal.create("sort", roots, dest, {"mode": options.mode})
        report.journal = journal.path
    mover = Mover(options.mode, journal, dedupe=options.dedupe, roots=roots, dest=dest)
    past = {"move": "moved", "copy": "copied", "link": "linked", "dedupe": "deduplicated"}
    details = wants_details(events)  # scores and verdicts: only for --json, --explain
    try:
        decisions = prepare_decisions(embedder, labels, options.threshold, options.margin)
        refs, partners = photos_to_score(roots, run, report, events)
        handled: set[Path] = set()
        for ref, row, logits in score_all(refs, decisions, embedder, run, report, events):
            best, judgements = decide.single_label(
                row, logits, decisions.thresholds, decisions.margin, decisions.exclude
            )
            label = labels.labels[best] if best is not None else None
            names = (label.name,) if label else ()
            explained = explained_of(decisions, judgements) if details else {}
            scores = scores_of(labels, row) if details else {}
            raws = [p.path for p in partners.get(ref.path, [])]
            if label is None and options.leave_unsorted:
                result = PhotoResult(ref.path, scores, names, "left", dry_run=options.dry_run, explained=explained)
                handled.add(ref.path)
                _record_pair(report, events, result, raws, {})
                continue
            label_path = label.folder_path if label else (options.unsorted,)
            folder = (
                dest / options.pattern.folder(label_path, ref.path) if options.pattern else dest.joinpath(*label_path)
            )
            try:
                plan = mover.plan(ref.path, folder, raws)
                if plan.action in ("in-place", "duplicate", "left"):
                    action = plan.action
                    if plan.note:
                        report.left_out.append((ref.path, plan.note))
                else:
                    action = past[plan.action] if label or plan.action == "dedupe" else "unsorted"
                    if not options.dry_run:
                        for warning in mover.execute(plan):
                            warn(report, events, warning)
            except DestinationFullError as exc:
                report.fatal = str(exc)
                break
            except FileFailure as failure:
                fail(report, events, failure)
                continue
            result = PhotoResult(
                ref.path,
                scores,
                names,
                action,
                destination=plan.target,
                dry_run=options.dry_run,
                explained=explained,
                note=plan.note,
            )
            handled.add(ref.path)
            _record_pair(report, events, result, raws, dict(plan.companions))
        else:  # not after a full disk: the photos not moved then are named as a whole
            fail_unhandled_partners(partners, handled, report, events)
    finally:
        report.finish()
        if journal is not None:
            journal.end({"actions": dict(report.actions), "failed": len(report.failures), "fatal": report.fatal})
            journal.close()
    return report


def _record_pair(
    report: Report, events: Events, result: PhotoResult, raws: Sequence[Path], targets: dict[Path, Path]
) -> None:
    """Record a photo's result and its RAW partners' (same decision; ``targets``: where each RAW went)."""
    record(report, events, result)
    events.advanced(1)
    stays = result.destination is None or result.action in ("in-place", "duplicate", "left")
    for raw in raws:
        if stays or raw in targets:  # not in targets: gone from the folder since it was found
            note = f"RAW+JPEG pair: goes with {result.path.name}"
            destination = None if result.destination is None else targets.get(raw, raw)
            record(report, events, replace(result, path=raw, destination=destination, note=note))
        events.advanced(1)
