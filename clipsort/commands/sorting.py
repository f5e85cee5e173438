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
from clipsort.run.classifier import decisions_when_needed
from clipsort.run.events import Events, RunOptions, SilentEvents, fail, wants_details, warn
from clipsort.run.pipeline import explained_of, fail_unhandled_partners, photos_to_score, record, score_all, scores_of
from clipsort.run.report import PhotoResult, Report
from clipsort.store.journal import Journal
from clipsort.writes.mover import Mover, Plan
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


def check_sort_options(
    roots: Sequence[Path], labels: LabelSet, options: SortOptions, review: Path | None = None
) -> Path:
    """Validate what can be validated before any work; returns the destination folder."""
    if review is not None:
        from clipsort.review.page import check_page_path

        check_page_path(review)
        check_plan_names(labels, options.unsorted)
    require_local(roots, "sort cannot move photos in object storage yet (index and tag can, with --engine ray)")
    dest = sort_destination(roots, options.dest)
    check_unsorted_name(labels, options.unsorted)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"--dest {dest} is a file, not a folder")
    return dest


def check_plan_names(labels: LabelSet, unsorted: str) -> None:
    """A plan's decisions that are not labels must not be a label's name (docs/review.md)."""
    from clipsort.writes.sort_plan import SPECIAL

    for label in labels.labels:
        if label.name in SPECIAL:
            raise UsageError(
                f"label {label.name!r} (line {label.line}) has the name of a review page's own decision; rename it"
            )


def sort_reviewed(
    roots: Sequence[Path],
    labels: LabelSet,
    embedder: Embedder,
    options: SortOptions,
    run: RunOptions,
    events: Events,
    page: Path,
) -> Report:
    """:func:`run_sort`, then its review page with its plan (``--review PAGE.html``)."""
    from clipsort.commands.review_run import ReviewRequest, reviewed_run, sort_with_review
    from clipsort.review.sort_view import SortSettings

    dest = check_sort_options(roots, labels, options, page)
    settings = SortSettings(
        roots=tuple(roots),
        dest=dest,
        mode=options.mode,
        pattern=options.pattern.text if options.pattern else None,
        undated=options.pattern.undated if options.pattern else "unknown",
        unsorted=options.unsorted,
        leave_unsorted=options.leave_unsorted,
        dedupe=options.dedupe,
        margin=options.margin,
    )
    run = reviewed_run(run)
    return sort_with_review(
        ReviewRequest(page),
        labels,
        embedder,
        events,
        settings,
        options.dry_run,
        lambda collecting: run_sort(roots, labels, embedder, options, run, collecting),
        workers=run.workers or 2,
    )


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
    report.written_to = f"{'would go ' if options.dry_run else ''}into {dest}" + (
        f" by {options.pattern.text}" if options.pattern else ""
    )
    journal = None
    if not options.dry_run:
        recover(events.warned)
        journal = Journal.create("sort", roots, dest, {"mode": options.mode})
        report.journal = journal.path
    mover = Mover(options.mode, journal, dedupe=options.dedupe, roots=roots, dest=dest)
    details = wants_details(events)  # scores and verdicts: only for --json, --explain
    try:
        decisions = decisions_when_needed(embedder, labels, options.threshold, options.margin)
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
                record_pair(report, events, result, raws, {})
                continue
            label_path = label.folder_path if label else (options.unsorted,)
            folder, undated = target_folder(dest, options.pattern, label_path, ref.path)
            try:
                placed = place_unit(mover, ref.path, folder, raws, label is not None, options.dry_run, report, events)
            except DestinationFullError as exc:
                report.fatal = str(exc)
                break
            if placed is None:
                continue
            action, plan = placed
            result = PhotoResult(
                ref.path,
                scores,
                names,
                action,
                destination=plan.target,
                dry_run=options.dry_run,
                explained=explained,
                note=plan.note,
                undated=undated,
            )
            handled.add(ref.path)
            record_pair(report, events, result, raws, dict(plan.companions))
        else:  # not after a full disk: the photos not moved then are named as a whole
            fail_unhandled_partners(partners, handled, report, events)
    finally:
        end_run(report, journal)
    return report


def end_run(report: Report, journal: Journal | None) -> None:
    """Finish a sort's report and close its journal with what the run did."""
    report.finish()
    if journal is not None:
        journal.end({"actions": dict(report.actions), "failed": len(report.failures), "fatal": report.fatal})
        journal.close()


def target_folder(dest: Path, pattern: Pattern | None, label_path: tuple[str, ...], photo: Path) -> tuple[Path, str]:
    """The folder ``photo`` goes to for the label folder ``label_path``: by ``--pattern``, else the label's;
    and, for a photo with no date taken in a dated pattern, how it was dated (``unknown``, ``mtime``; else "")."""
    if pattern is None:
        return dest.joinpath(*label_path), ""
    folder, undated = pattern.place(label_path, photo)
    return dest / folder, undated


_PAST = {"move": "moved", "copy": "copied", "link": "linked", "dedupe": "deduplicated"}


def place_unit(
    mover: Mover,
    photo: Path,
    folder: Path,
    raws: Sequence[Path],
    labelled: bool,
    dry_run: bool,
    report: Report,
    events: Events,
) -> tuple[str, Plan] | None:
    """Plan one photo's unit (its companions and RAW partners with it) into ``folder`` and, unless
    ``dry_run``, carry it out: (the action as reported, the plan), or None when it failed (reported).
    Raises :class:`DestinationFullError`: the run should stop."""
    try:
        plan = mover.plan(photo, folder, raws)
        if plan.action in ("in-place", "duplicate", "left"):
            if plan.note:
                report.left_out.append((photo, plan.note))
            return plan.action, plan
        action = _PAST[plan.action] if labelled or plan.action == "dedupe" else "unsorted"
        if not dry_run:
            for warning in mover.execute(plan):
                warn(report, events, warning)
    except FileFailure as failure:
        fail(report, events, failure)
        return None
    return action, plan


def record_pair(
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
            record(report, events, replace(result, path=raw, destination=destination, note=note, pair_of=result.path))
        events.advanced(1)
