"""Sort's review page and its plan: one section per decision (each label's folder, "none of these",
"leave it where it is"), one card per photo with its RAW partners named on it, the close calls
marked; the plan that ``sort --plan`` carries out, embedded."""

from __future__ import annotations

import math
import os
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clipsort.labels.label_set import DEFAULT_MARGIN, LabelSet
from clipsort.photos.location import file_fingerprint
from clipsort.review.charts import histogram
from clipsort.review.page import Card, Section
from clipsort.run.report import LEFT_OUT, PhotoResult
from clipsort.writes.sort_plan import LEAVE, UNSORTED, PlanFile, PlanLabel, PlanPhoto, SortPlan

#: Keys that send a card: one per label in the label file's order; u and x for the two others.
KEYS = [str(n) for n in range(1, 10)] + [c for c in string.ascii_lowercase if c not in "ux"]
UNSORTED_KEY, LEAVE_KEY = "u", "x"
#: A photo is a close call when its best label leads the runner-up by less than this many margins.
CLOSE = 2.0
TOP = 3


@dataclass(frozen=True)
class SortSettings:
    """What ``sort`` was asked, as its plan records it."""

    roots: tuple[Path, ...]
    dest: Path
    mode: str = "move"
    pattern: str | None = None
    undated: str = "unknown"
    unsorted: str = "_unsorted"
    leave_unsorted: bool = False
    dedupe: bool = False
    margin: float | None = None
    model: str = ""
    label_digest: str = ""


#: A card's line for a photo with no date taken, filed by a dated pattern.
UNDATED_NOTES = {
    "unknown": "no date taken: filed under unknown",
    "mtime": "no date taken: filed by the file's time, a guess",
}


def decision_of(result: PhotoResult) -> str:
    return result.labels[0] if result.labels else UNSORTED


def plan_file(path: Path) -> PlanFile:
    st = os.stat(path)
    return PlanFile(Path(os.path.abspath(path)), st.st_size, st.st_mtime_ns, file_fingerprint(path, st.st_size).hex())


def sort_plan(results: Sequence[PhotoResult], labels: LabelSet, settings: SortSettings, dry_run: bool) -> SortPlan:
    """The plan of a sort run from its results. A dry run's plan can be carried out; a real run's is
    a record of what it did (its files are described where they are now)."""
    partners: dict[Path, list[Path]] = {}
    for result in results:
        if result.pair_of is not None:
            partners.setdefault(Path(os.path.abspath(result.pair_of)), []).append(result.path)
    photos: list[PlanPhoto] = []
    for result in results:
        if result.pair_of is not None or result.action in ("unreadable", "failed", LEFT_OUT):  # not photos judged
            continue
        path = Path(os.path.abspath(result.path))
        moved = result.destination if not dry_run and result.destination is not None else None
        try:  # a real run's plan describes each photo where it is now
            file = plan_file(moved if moved is not None and os.path.exists(moved) else path)
            raws = tuple(plan_file(raw) for raw in partners.get(path, []) if os.path.exists(raw))
        except OSError:
            continue  # gone since it was judged: not in the plan (the page names it with the failures)
        file = PlanFile(path, file.size, file.mtime_ns, file.fingerprint)
        photos.append(
            PlanPhoto(
                file,
                decision_of(result),
                raws,
                destination=result.destination,
                action=result.action,
                scores=dict(result.scores),
                undated=result.undated,
            )
        )
    return SortPlan(
        roots=tuple(Path(os.path.abspath(root)) for root in settings.roots),
        dest=Path(os.path.abspath(settings.dest)),
        labels=tuple(PlanLabel(label.name, label.folder_path) for label in labels.labels if not label.exclude),
        photos=tuple(photos),
        mode=settings.mode,
        pattern=settings.pattern,
        undated=settings.undated,
        unsorted=settings.unsorted,
        leave_unsorted=settings.leave_unsorted,
        dedupe=settings.dedupe,
        label_file=os.fsdecode(os.path.abspath(labels.source)),
        label_digest=settings.label_digest,
        model=settings.model,
        made=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        applied=not dry_run,
    )


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def close_call(result: PhotoResult, margin: float) -> bool:
    """Whether the best label's lead over the runner-up (in logits) is under :data:`CLOSE` margins."""
    ranked = sorted(result.scores.values(), reverse=True)
    if len(ranked) < 2:
        return False
    return _logit(ranked[0]) - _logit(ranked[1]) < CLOSE * margin


def sort_sections(
    results: Sequence[PhotoResult], plan: SortPlan, labels: LabelSet, settings: SortSettings
) -> list[Section]:
    """The page's sections, in the label file's order, then "none of these" and "leave it where it is"."""
    margin = settings.margin if settings.margin is not None else (labels.margin or DEFAULT_MARGIN)
    by_path = {Path(os.path.abspath(r.path)): r for r in results if r.pair_of is None}
    sections: dict[str, Section] = {}
    keys = iter(KEYS)
    for label in plan.labels:
        folder = os.path.join(os.fsdecode(plan.dest), *label.folder)
        where = f"-> {folder}" + (f" (by {plan.pattern})" if plan.pattern else "")
        sections[label.name] = Section(label.name, label.name, where=where, key=next(keys, ""))
    none_where = (
        "left where they are (--leave-unsorted)"
        if plan.leave_unsorted
        else f"-> {os.path.join(os.fsdecode(plan.dest), plan.unsorted)}"
    )
    sections[UNSORTED] = Section(UNSORTED, "none of these", where=none_where, key=UNSORTED_KEY)
    sections[LEAVE] = Section(LEAVE, "leave it where it is", where="not moved", key=LEAVE_KEY)
    thresholds: dict[str, float] = {}
    scores: dict[str, list[float]] = {label.name: [] for label in plan.labels}
    for result in results:
        for name, judgement in result.explained.items():
            thresholds.setdefault(name, judgement.threshold)
        for name, score in result.scores.items():
            if name in scores and result.pair_of is None:
                scores[name].append(score)
    for index, photo in enumerate(plan.photos):
        judged = by_path.get(photo.file.path)
        if judged is not None:
            section = sections.setdefault(photo.decision, Section(photo.decision, photo.decision))
            section.cards.append(_card(judged, photo, index, plan, margin))
    for name, section in sections.items():
        section.cards.sort(key=lambda card: -(card.top[0][1] if card.top else 0.0))
        if name in scores:
            section.chart = histogram(scores[name], thresholds.get(name), f"scores of {name}; the line: its threshold")
    return list(sections.values())


def _card(result: PhotoResult, photo: PlanPhoto, index: int, plan: SortPlan, margin: float) -> Card:
    ranked = sorted(result.explained.items(), key=lambda item: -item[1].score)
    top = [(name, j.score, j.kept) for name, j in ranked[:TOP]]
    if not top:
        top = [(name, score, False) for name, score in sorted(result.scores.items(), key=lambda i: -i[1])[:TOP]]
    lines = []
    decided = result.explained.get(photo.decision) or (ranked[0][1] if ranked else None)
    if decided is not None:
        lines.append(decided.why)
    if result.destination is not None and result.destination != result.path:
        done = "" if result.dry_run else f" ({result.action})"
        lines.append(f"-> {os.path.relpath(result.destination, plan.dest)}{done}")
        if result.undated:
            lines.append(UNDATED_NOTES[result.undated])
    elif result.action:
        lines.append(result.action + (f": {result.note}" if result.note else ""))
    extra = ""
    if photo.partners:
        extra = "with " + ", ".join(p.path.name for p in photo.partners)
    return Card(
        photo.file.path,
        photo.decision,
        lines=lines,
        top=top,
        close=close_call(result, margin),
        index=index if not plan.applied else None,
        extra=extra,
    )
