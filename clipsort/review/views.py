"""The pages of tag, search, dupes and eval: read-only views of what a run found (sort's page, the
one a person corrects, is :mod:`.sort_view`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsort.review.charts import histogram
from clipsort.review.page import Card, Section, text
from clipsort.run.report import PhotoResult
from clipsort.safe_files import human_size

TOP = 3
UNTAGGED = "_untagged"


def _ranked(result: PhotoResult) -> list[tuple[str, float, bool]]:
    if result.explained:
        rows = sorted(result.explained.items(), key=lambda item: -item[1].score)
        return [(name, j.score, j.kept) for name, j in rows]
    kept = set(result.labels)
    return [(n, s, n in kept) for n, s in sorted(result.scores.items(), key=lambda item: -item[1])]


def label_charts(results: Sequence[PhotoResult], names: Sequence[str]) -> dict[str, str]:
    """Per label: the histogram of every photo's score with the label's threshold."""
    scores: dict[str, list[float]] = {name: [] for name in names}
    thresholds: dict[str, float] = {}
    for result in results:
        if result.pair_of is not None:
            continue
        for name, score in result.scores.items():
            if name in scores:
                scores[name].append(score)
        for name, judgement in result.explained.items():
            thresholds.setdefault(name, judgement.threshold)
    return {
        name: histogram(values, thresholds.get(name), f"scores of {name}; the line: its threshold")
        for name, values in scores.items()
    }


def tag_sections(results: Sequence[PhotoResult], names: Sequence[str]) -> list[Section]:
    """Per label, the photos that get it (best score first); then the photos that get none."""
    charts = label_charts(results, names)
    sections = {name: Section(name, name, chart=charts.get(name, ""), target=False) for name in names}
    untagged = Section(UNTAGGED, "no label kept", target=False)
    for result in results:
        if result.pair_of is not None or result.action not in ("tagged", "untagged"):
            continue
        ranked = _ranked(result)
        kept = [name for name, _, k in ranked if k]
        not_kept = [f"{name} {score:.3f}" for name, score, k in ranked if not k][:TOP]
        lines = [f"kept: {', '.join(kept) or '-'}", f"best not kept: {', '.join(not_kept) or '-'}"]
        where = result.sidecar or (result.path if result.action == "tagged" else None)
        if where is not None and result.action == "tagged":
            lines.append(f"written to {where.name}")
        for name in result.labels or (UNTAGGED,):
            section = sections.get(name, untagged)
            section.cards.append(Card(result.path, name, lines=lines, top=ranked[:TOP]))
    for section in (*sections.values(), untagged):
        section.cards.sort(key=lambda card: -max((s for n, s, _ in card.top if n == card.decision), default=0.0))
    return [*sections.values(), untagged]


def search_sections(hits: Sequence[Any], query: str) -> list[Section]:
    """The ranked hits, best first, with their scores."""
    cards = [
        Card(hit.path, "hit", lines=[f"#{rank}  score {hit.score:.4f}"], top=()) for rank, hit in enumerate(hits, 1)
    ]
    return [Section("hit", f"best matches for {query}", cards=cards, target=False)]


def dupes_sections(groups: Sequence[Any]) -> list[Section]:
    """Each group side by side, the keeper first and marked, with sizes and dates."""
    sections = []
    for number, group in enumerate(groups, 1):
        what = "copies of one picture" if group.kind == "copies" else "photos of one scene"
        cards = []
        for member in group.members:
            size = f"{member.width}x{member.height}" if member.width else "size unknown"
            taken = member.taken.strftime("%Y-%m-%d %H:%M") if member.taken else "no date taken"
            lines = [f"{member.relation}: {size}, {human_size(member.bytes)}", taken]
            if member.relation not in ("keep", "exact"):
                lines.append(f"similarity {min(member.similarity, 1.0):.3f}")
            lines.append(os.path.dirname(os.fsdecode(member.path)))
            cards.append(Card(member.path, f"group-{number}", lines=lines, keeper=member.relation == "keep"))
        sections.append(Section(f"group-{number}", f"group {number}: {what}", cards=cards, target=False))
    return sections


@dataclass
class EvalPhoto:
    path: Path
    truth: str
    decided: str
    scores: dict[str, float] = field(default_factory=dict)


def eval_sections(photos: Sequence[EvalPhoto], names: Sequence[str], none: str) -> list[Section]:
    """One (hidden) section per cell of the confusion matrix, opened from the matrix."""
    cells: dict[tuple[str, str], Section] = {}
    for photo in photos:
        key = (photo.truth, photo.decided)
        if key not in cells:
            cells[key] = Section(cell_id(*key), f"in {photo.truth}, decided {photo.decided}", cell=True, target=False)
        ranked = sorted(photo.scores.items(), key=lambda item: -item[1])[:TOP]
        mark = "right" if photo.truth == photo.decided else "wrong"
        cells[key].cards.append(
            Card(photo.path, cell_id(*key), lines=[f"{mark}: {photo.decided}"], top=[(n, s, False) for n, s in ranked])
        )
    order = [*names, none]
    return [cells[key] for key in sorted(cells, key=lambda k: (order.index(k[0]) if k[0] in order else 0, k[1]))]


def cell_id(truth: str, decided: str) -> str:
    digest = hashlib.blake2b(f"{truth}\x00{decided}".encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"cell-{digest}"


def eval_tables(evaluation: Any, photos: Sequence[EvalPhoto], charts: dict[str, str]) -> str:
    """The confusion matrix (each cell links to its photos) and the per-label figures."""
    names = [figures.name for figures in evaluation.labels]
    columns = [*names, *(n for n in evaluation.confusion if n not in names)]
    head = "".join(f"<th>{text(name)}</th>" for name in columns)
    rows = []
    for truth in columns:
        cells = []
        for decided in columns:
            count = evaluation.confusion.get(truth, {}).get(decided, 0)
            diag = ' class="diag"' if truth == decided else ""
            value = f'<a href="#s-{cell_id(truth, decided)}">{count}</a>' if count else "0"
            cells.append(f"<td{diag}>{value}</td>")
        rows.append(f"<tr><th>{text(truth)}</th>{''.join(cells)}</tr>")
    matrix = (
        '<section class="other" id="s-matrix"><h2>Confusion matrix: rows are the folders, columns the decisions;'
        f' click a number to see its photos</h2><table class="matrix"><tr><th></th>{head}</tr>{"".join(rows)}'
        "</table></section>"
    )
    figures = []
    for f in evaluation.labels:
        figures.append(
            f"<tr><th>{text(f.name)}</th><td>{f.photos}</td><td>{_share(f.precision)}</td><td>{_share(f.recall)}</td>"
            f"<td>{f.threshold:.3f}</td><td>{'-' if f.suggested is None else f'{f.suggested:.3f}'}</td>"
            f"<td>{charts.get(f.name, '')}</td></tr>"
        )
    stats = (
        f'<section class="other" id="s-figures"><h2>Per label (accuracy {evaluation.accuracy:.1%} of '
        f"{evaluation.photos} photos)</h2><table class=stats><tr><th>label</th><th>photos</th><th>precision</th>"
        f"<th>recall</th><th>threshold</th><th>suggested</th><th>scores</th></tr>{''.join(figures)}</table></section>"
    )
    return matrix + stats


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
