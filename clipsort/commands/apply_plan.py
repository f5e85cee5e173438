"""``sort --plan PLAN.json``: carry out a sort plan (made by ``sort --review``, maybe corrected on its
page) exactly, journaled and undoable like any sort.

The plan is checked whole before anything moves: every photo and RAW partner must still be the
file the plan was made from (same place, size, modification time and content fingerprint), a
regular file, not a link, below one of the plan's folders (links resolved), of a photo format,
not hidden, not inside another application's library. One that is not is named, with every other
problem, and nothing moves.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from clipsort.errors import DestinationFullError, FileFailure, UsageError
from clipsort.photos.discover import hidden_name, is_image_name
from clipsort.photos.location import file_fingerprint
from clipsort.photos.managed import left_out_reason, managed_ancestor
from clipsort.run.events import Events, SilentEvents, fail
from clipsort.run.report import LEFT_BY_PLAN, PhotoResult, Report
from clipsort.safe_files import inside
from clipsort.store.journal import Journal
from clipsort.writes.mover import Mover
from clipsort.writes.pattern import parse_pattern
from clipsort.writes.recovery import recover
from clipsort.writes.sort_plan import LEAVE, UNSORTED, PlanError, PlanFile, PlanPhoto, SortPlan

#: Problems named in the error when a plan is refused (all of them are counted).
PROBLEMS_SHOWN = 20


def plan_problems(plan: SortPlan) -> list[tuple[Path, str]]:
    """Every reason the plan cannot be carried out as it stands, per file; empty when it can."""
    problems: list[tuple[Path, str]] = []
    if plan.applied:
        return [(plan.dest, "this plan was carried out already (a record of a sort that moved its photos)")]
    real_roots = []
    for root in plan.roots:
        if not os.path.exists(root):
            problems.append((root, "a folder of the plan is gone"))
        real_roots.append(os.path.realpath(root))
    if os.path.exists(plan.dest) and not os.path.isdir(plan.dest):
        problems.append((plan.dest, "the plan's destination is a file, not a folder"))
    managed: dict[str, tuple[Path, str] | None] = {}
    for photo in plan.photos:
        for file in (photo.file, *photo.partners):
            why = _file_problem(file, plan.roots, real_roots, managed)
            if why:
                problems.append((file.path, why))
    return problems


def _file_problem(
    file: PlanFile, roots: tuple[Path, ...], real_roots: list[str], managed: dict[str, tuple[Path, str] | None]
) -> str | None:
    path = file.path
    root = next((r for r in roots if inside(path, r)), None)
    if root is None:
        return "not below any folder of the plan"
    if not is_image_name(path.name):
        return "not a photo's name"
    if any(hidden_name(part) for part in path.relative_to(root).parts):
        return "hidden (sort never takes hidden files or folders)"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "moved or deleted since the plan was made"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        return "not a regular file any more (a link or a special file): not the photo the plan was made from"
    real = os.path.join(os.path.realpath(path.parent), path.name)
    if not any(inside(real, r) for r in real_roots):
        return f"it really is in {os.path.dirname(real)}, outside the plan's folders (a link on the way)"
    folder = os.path.dirname(real)
    if folder not in managed:
        managed[folder] = managed_ancestor(folder)
    owner = managed[folder]
    if owner is not None:
        return f"inside {owner[0]}: {left_out_reason(owner[1])}"
    if st.st_size != file.size or st.st_mtime_ns != file.mtime_ns:
        return "changed since the plan was made (size or modification time)"
    try:
        fingerprint = file_fingerprint(path, st.st_size).hex()
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if fingerprint != file.fingerprint:
        return "changed since the plan was made (its content)"
    return None


def refuse(problems: list[tuple[Path, str]], source: str) -> PlanError:
    lines = [f"  {path}: {why}" for path, why in problems[:PROBLEMS_SHOWN]]
    if len(problems) > PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(problems) - PROBLEMS_SHOWN} more")
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return PlanError(f"the plan {source} cannot be carried out ({count}); nothing was moved:\n" + "\n".join(lines))


def apply_plan(plan: SortPlan, source: str, dry_run: bool = False, events: Events | None = None) -> Report:
    """Carry out ``plan`` (from the file ``source``): every photo to the folder of its decision."""
    from clipsort.commands.sorting import end_run, place_unit, record_pair, target_folder

    events = events or SilentEvents()
    problems = plan_problems(plan)
    if problems:
        raise refuse(problems, source)
    pattern = parse_pattern(plan.pattern, plan.undated) if plan.pattern else None
    report = Report("sort", dry_run=dry_run)
    report.found = len(plan.photos)
    report.written_to = f"{'would go ' if dry_run else ''}into {plan.dest}" + (
        f" by {plan.pattern}" if plan.pattern else ""
    )
    journal = None
    if not dry_run:
        recover(events.warned)
        journal = Journal.create("sort", plan.roots, plan.dest, {"mode": plan.mode, "plan": source})
        report.journal = journal.path
    mover = Mover(plan.mode, journal, dedupe=plan.dedupe, roots=plan.roots, dest=plan.dest)
    events.started(len(plan.photos) + sum(len(p.partners) for p in plan.photos))
    try:
        for photo, label_path, names in _decided(plan):
            path, raws = photo.file.path, [p.path for p in photo.partners]
            if label_path is None:
                note = LEFT_BY_PLAN if photo.decision == LEAVE else None
                result = PhotoResult(path, {}, names, "left", dry_run=dry_run, note=note)
                record_pair(report, events, result, raws, {})
                continue
            folder, undated = target_folder(plan.dest, pattern, label_path, path)
            try:
                placed = place_unit(mover, path, folder, raws, bool(names), dry_run, report, events)
            except DestinationFullError as exc:
                report.fatal = str(exc)
                break
            if placed is None:  # failed (named); its RAW partners stay with it
                for raw in raws:
                    fail(report, events, FileFailure(raw, f"not moved: it goes with {path.name}, which failed"))
                continue
            action, unit = placed
            result = PhotoResult(
                path, {}, names, action, destination=unit.target, dry_run=dry_run, note=unit.note, undated=undated
            )
            record_pair(report, events, result, raws, dict(unit.companions))
    finally:
        end_run(report, journal)
    return report


def _decided(plan: SortPlan) -> Iterator[tuple[PlanPhoto, tuple[str, ...] | None, tuple[str, ...]]]:
    """Each photo with the label folder its decision sends it to (None: it stays) and its label names."""
    for photo in plan.photos:
        if photo.decision == LEAVE:
            yield photo, None, ()
        elif photo.decision == UNSORTED:
            yield photo, None if plan.leave_unsorted else (plan.unsorted,), ()
        else:
            label = plan.label(photo.decision)
            if label is None:  # read_plan checks every decision: only a plan made in code gets here
                raise UsageError(f"the plan's decision {photo.decision!r} is not one of its labels")
            yield photo, label.folder, (label.name,)
