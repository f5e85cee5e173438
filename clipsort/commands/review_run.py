"""``--review PAGE.html``: a command's run, then its page (clipsort.review) written from the results.

The run's events pass through a collector on their way to the terminal; the photos the run decodes
give their thumbnails as they are decoded (the device's JPEG decoder is left out unless asked for,
so that every picture passes the CPU once); the others are decoded once, small, after the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clipsort.labels.label_set import LabelSet
from clipsort.model.embed import Embedder
from clipsort.review import page as pages
from clipsort.review.collect import Collecting
from clipsort.review.sort_view import SortSettings, sort_plan, sort_sections
from clipsort.review.thumbs import Thumbnails
from clipsort.run.events import Events, RunOptions
from clipsort.run.report import Report
from clipsort.writes.sort_plan import SortPlan


@dataclass(frozen=True)
class ReviewRequest:
    page: Path

    def check(self) -> None:
        pages.check_page_path(self.page)


class Review:
    """One page in the making: the collector of results and the thumbnails."""

    def __init__(self, request: ReviewRequest, events: Events, embedder: Embedder | None = None) -> None:
        request.check()
        self.page = request.page
        self.thumbs = Thumbnails(request.page)
        self.thumbs.prepare()
        self.events = Collecting(events)
        if embedder is not None:
            embedder.on_picture = self.thumbs.offer

    def write(self, report: Report, document: str) -> Path:
        pages.write(self.page, document)
        report.review = self.page
        made, decoded = len(self.thumbs.made), self.thumbs.decoded
        if made:
            report.notes.append(
                f"review page: {made} thumbnails, {made - decoded} from the run's own decoding, "
                f"{decoded} decoded for the page"
            )
        return self.page


def reviewed_run(run: RunOptions) -> RunOptions:
    """``run`` for a command that makes a page: the device's JPEG decoder off unless asked for."""
    return replace(run, gpu_decode=False) if run.gpu_decode is None else run


def label_digest(labels: LabelSet) -> str:
    try:
        return hashlib.sha256(labels.source.read_bytes()).hexdigest()
    except OSError:
        return ""


def sort_with_review(
    request: ReviewRequest,
    labels: LabelSet,
    embedder: Embedder,
    events: Events,
    settings: SortSettings,
    dry_run: bool,
    work: Callable[[Events], Report],
    workers: int = 2,
) -> Report:
    """Run ``work`` (a sort) with its results collected, then write its page with its plan."""
    review = Review(request, events, embedder)
    report = work(review.events)
    results = review.events.results
    settings = replace(settings, model=embedder.name, label_digest=label_digest(labels))
    plan = sort_plan(results, labels, settings, dry_run)
    sections = sort_sections(results, plan, labels, settings)
    moved = {r.path: r.destination for r in results if r.destination is not None and not dry_run}
    review.thumbs.ensure([photo.file.path for photo in plan.photos], workers, now_at=moved)
    summary = _sort_summary(plan, report, dry_run, request.page.with_name(request.page.stem + ".plan.json"))
    title = f"clipsort sort{' --dry-run' if dry_run else ''}: {len(plan.photos)} photos"
    plan_name = request.page.stem + ".plan.json"
    document = pages.render(
        title,
        summary,
        sections,
        review.thumbs,
        plan_json=plan.dumps(),
        plan_name=plan_name,
        after=pages.failures_html(review.events.failures),
        editable=not plan.applied,  # a real run's page is a record: its plan is there for scripts
    )
    review.write(report, document)
    return report


def _sort_summary(plan: SortPlan, report: Report, dry_run: bool, plan_file: Path) -> list[str]:
    lines = [
        f"from {', '.join(map(str, plan.roots))} to {plan.dest} ({plan.mode}"
        f"{', pattern ' + plan.pattern if plan.pattern else ''}); labels {plan.label_file}; model {plan.model}",
    ]
    if dry_run:
        lines.append(
            "Nothing has moved. Send cards where they belong (click a card, then a button or its key; arrows move"
            " between cards), save the plan, then run: clipsort sort --plan " + plan_file.name
        )
    else:
        lines.append(
            "These moves were made (clipsort undo puts them back). To correct: undo, then sort --dry-run --review."
        )
    if report.failures:
        lines.append(f"{len(report.failures)} photo(s) failed: listed at the end")
    return lines


def tag_with_review(
    request: ReviewRequest,
    labels: LabelSet,
    embedder: Embedder,
    events: Events,
    work: Callable[[Events], Report],
    dry_run: bool,
    workers: int = 2,
) -> Report:
    """Run ``work`` (a tag run) with its results collected, then write its page: per label, its photos."""
    from clipsort.review.views import tag_sections

    review = Review(request, events, embedder)
    report = work(review.events)
    results = review.events.results
    sections = tag_sections(results, labels.names)
    review.thumbs.ensure([r.path for r in results if r.pair_of is None and r.action in ("tagged", "untagged")], workers)
    judged = sum(1 for r in results if r.pair_of is None and r.action in ("tagged", "untagged"))
    summary = [
        f"labels {labels.source}; model {embedder.name}; {report.written_to or ''}",
        "Per label, the photos that get it, best score first; each card also names the best labels not kept.",
    ]
    title = f"clipsort tag{' --dry-run' if dry_run else ''}: {judged} photos"
    failures = pages.failures_html(review.events.failures)
    review.write(report, pages.render(title, summary, sections, review.thumbs, after=failures))
    return report


def search_with_review(
    request: ReviewRequest,
    embedder: Embedder,
    events: Events,
    query: str,
    work: Callable[[Events], tuple[Report, list[Any]]],
    workers: int = 2,
) -> tuple[Report, list[Any]]:
    """Run ``work`` (a search), then write its page: the ranked hits with their scores."""
    from clipsort.review.views import search_sections

    review = Review(request, events, embedder)
    report, hits = work(review.events)
    shown = [hit.path for hit in hits]
    review.thumbs.ensure(shown, workers)
    review.thumbs.keep_only(shown)
    summary = [f"model {embedder.name}; {len(hits)} photos, best first; the score is a cosine (docs/search.md)"]
    document = pages.render(f"clipsort search: {query}", summary, search_sections(hits, query), review.thumbs)
    review.write(report, document)
    return report, hits


def dupes_with_review(
    request: ReviewRequest,
    embedder: Embedder,
    events: Events,
    work: Callable[[Events, Callable[[Path, Any], None]], tuple[Report, list[Any]]],
    workers: int = 2,
) -> tuple[Report, list[Any]]:
    """Run ``work`` (dupes, given where to hand its pictures), then write its page: each group side
    by side, the keeper first."""
    from clipsort.review.views import dupes_sections

    review = Review(request, events, embedder)
    report, groups = work(review.events, review.thumbs.offer)
    shown = [member.path for group in groups for member in group.members]
    review.thumbs.ensure(shown, workers)
    review.thumbs.keep_only(shown)
    extra = sum(len(group.members) - 1 for group in groups)
    summary = [
        f"{len(groups)} groups, {extra} photos beside their keepers; the keeper (outlined) is the largest picture,"
        " then the oldest. Nothing was deleted."
    ]
    review.write(report, pages.render("clipsort dupes", summary, dupes_sections(groups), review.thumbs))
    return report, groups


def eval_with_review(
    request: ReviewRequest,
    labels: LabelSet,
    embedder: Embedder,
    events: Events,
    work: Callable[[Events, list[Any]], tuple[Report, Any]],
    workers: int = 2,
) -> tuple[Report, Any]:
    """Run ``work`` (eval, given a list to fill with each photo's decision), then write its page: the
    confusion matrix, each cell opening its photos, and per label its figures and score histogram."""
    from clipsort.labels.evaluate import NONE
    from clipsort.review.charts import histogram
    from clipsort.review.views import EvalPhoto, eval_sections, eval_tables

    review = Review(request, events, embedder)
    rows: list[Any] = []
    report, evaluation = work(review.events, rows)
    photos = [EvalPhoto(path, truth, decided, scores) for path, truth, decided, scores in rows]
    review.thumbs.ensure([p.path for p in photos], workers)
    charts = {
        f.name: histogram([p.scores.get(f.name, 0.0) for p in photos], f.threshold, f"scores of {f.name}")
        for f in evaluation.labels
    }
    sections = eval_sections(photos, labels.names, NONE)
    summary = [f"labels {labels.source}; model {embedder.name}; decisions as sort makes them"]
    document = pages.render(
        f"clipsort eval: {len(photos)} photos",
        summary,
        sections,
        review.thumbs,
        before=eval_tables(evaluation, photos, charts),
    )
    review.write(report, document)
    return report, evaluation
