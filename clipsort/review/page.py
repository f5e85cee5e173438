"""One review page: cards (a thumbnail, a name, what was decided and why) in sections, a plan as
JSON, written as a single HTML file that opens from disk and asks no server for anything (its
Content-Security-Policy forbids it).

Contract for scripts and tests (docs/review.md): every card is an element with class ``card`` and
the attributes ``data-photo`` (the photo's absolute path) and ``data-decision`` (its section's
decision); each section of decisions is ``<section class="decision" data-decision=...>``; an
editable page holds its plan in ``<script type="application/json" id="plan">``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from clipsort.errors import FileFailure, UsageError
from clipsort.review.thumbs import Thumbnails
from clipsort.safe_files import write_atomically

GENERATOR = "clipsort review"
#: Cards whose thumbnail is in the first screenful load at once; the rest as they scroll into view.
EAGER = 24
_CSP = (
    "default-src 'none'; img-src 'self' file: data: blob:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'none'; form-action 'none'; base-uri 'none'"
)


@dataclass
class Card:
    photo: Path
    decision: str
    #: Lines under the name (the decision and why), then the top labels with their scores.
    lines: Sequence[str] = ()
    top: Sequence[tuple[str, float, bool]] = ()  #: (label, score, kept)
    close: bool = False
    #: Index of the photo in the page's plan (editable pages).
    index: int | None = None
    extra: str = ""
    keeper: bool = False


@dataclass
class Section:
    decision: str
    title: str
    cards: list[Card] = field(default_factory=list)
    where: str = ""
    key: str = ""
    chart: str = ""
    #: A section shown only when linked to (a cell of eval's confusion matrix).
    cell: bool = False
    #: A section of decisions cards may be sent to (sort's page).
    target: bool = True


def text(value: object) -> str:
    """``value`` as HTML text: escaped, a file name's undecodable bytes shown as U+FFFD."""
    return html.escape(str(value).encode("utf-8", "replace").decode("utf-8"), quote=True)


def check_page_path(page: Path) -> None:
    """Refuse a page name that is not an HTML file, or a file there that clipsort did not write."""
    if page.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--review {page}: the page's name must end in .html")
    if os.path.lexists(page):
        if os.path.islink(page) or not page.is_file():
            raise UsageError(f"--review {page}: something that is not a review page is there")
        with open(page, "rb") as handle:
            head = handle.read(4096)
        if GENERATOR.encode() not in head:
            raise UsageError(
                f"--review {page}: a file that is not a clipsort review page is there: choose another name"
            )
    if not page.parent.is_dir():
        raise UsageError(f"--review {page}: no such folder {page.parent}")


def card_html(card: Card, thumbs: Thumbnails, eager: bool) -> str:
    src = thumbs.src(card.photo)
    if src is not None:
        width, height = thumbs.size(card.photo)
        loading = "eager" if eager else "lazy"
        picture = f'<img src="{src}" width="{width}" height="{height}" loading="{loading}" decoding="async" alt="">'
    else:
        picture = f'<span class="why">{text(thumbs.why_not(card.photo))}</span>'
    attributes = f' data-photo="{text(card.photo)}" data-decision="{text(card.decision)}"'
    if card.index is not None:
        attributes += f' data-index="{card.index}"'
    if card.close:
        attributes += " data-close"
    lines = "".join(f'<div class="why">{text(line)}</div>' for line in card.lines)
    top = "".join(f"<li{' class=kept' if kept else ''}>{text(name)} {score:.3f}</li>" for name, score, kept in card.top)
    badge = '<div class="badge">close call</div>' if card.close else ""
    extra = f'<div class="extra">{text(card.extra)}</div>' if card.extra else ""
    css = "card keeper" if card.keeper else "card"
    return (
        f'<figure class="{css}" tabindex="0"{attributes}><div class="pic">{picture}</div>'
        f'<figcaption><div class="name">{text(card.photo.name)}</div>{badge}{lines}'
        f'{"<ol>" + top + "</ol>" if top else ""}{extra}<div class="moved"></div></figcaption></figure>'
    )


def section_html(section: Section, thumbs: Thumbnails, eager: list[int]) -> str:
    cards = []
    for card in section.cards:
        cards.append(card_html(card, thumbs, eager[0] > 0))
        eager[0] -= 1
    css = "decision cell" if section.cell else ("decision" if section.target else "other")
    attributes = f' class="{css}" id="s-{text(section.decision)}" data-decision="{text(section.decision)}"'
    attributes += f' data-title="{text(section.title)}"'
    if section.key:
        attributes += f' data-key="{text(section.key)}"'
    key = f" <kbd>{text(section.key)}</kbd>" if section.key else ""
    where = f'<span class="where">{text(section.where)}</span>' if section.where else ""
    return (
        f"<section{attributes}><h2>{text(section.title)}{key} <span class=count>({len(section.cards)})</span>"
        f'{where}{section.chart}</h2><div class="grid">{"".join(cards)}</div></section>'
    )


def render(
    title: str,
    summary: Sequence[str],
    sections: Sequence[Section],
    thumbs: Thumbnails,
    plan_json: str | None = None,
    plan_name: str = "plan.json",
    before: str = "",
    after: str = "",
    editable: bool = False,
) -> str:
    """The whole page. ``plan_json``: the plan it holds; ``editable``: its cards can be sent elsewhere."""
    editable = editable and plan_json is not None
    nav = " ".join(
        f'<a href="#s-{text(s.decision)}">{text(s.title)} ({len(s.cards)})</a>' for s in sections if not s.cell
    )
    toolbar = ""
    if editable:
        buttons = "".join(
            f'<button type="button" data-send="{text(s.decision)}">{text(s.title)} <kbd>{text(s.key)}</kbd></button>'
            for s in sections
            if s.target and not s.cell
        )
        toolbar = (
            f'<div class="toolbar"><span>Send the selected card to:</span>{buttons}'
            '<button type="button" class="save" id="save" disabled>Save plan</button>'
            '<label><input type="checkbox" id="only-close"> close calls only</label></div>'
        )
    eager = [EAGER]
    body = "".join(section_html(s, thumbs, eager) for s in sections)
    plan = ""
    if plan_json is not None:
        safe = plan_json.replace("<", "\\u003c")  # no "</script>" can end it early
        plan = f'<script type="application/json" id="plan">{safe}</script>'
    script = resources.files("clipsort.review").joinpath("page.js").read_text("utf-8")
    style = resources.files("clipsort.review").joinpath("page.css").read_text("utf-8")
    lines = "".join(f'<p class="summary">{text(line)}</p>' for line in summary)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{text(title)}</title>'
        f"<style>{style}</style></head>"
        f'<body data-editable="{1 if editable else 0}" data-plan-name="{text(plan_name)}">'
        f'<header class="top"><h1>{text(title)}</h1>{lines}<nav class="sections">{nav}</nav>{toolbar}</header>'
        f"<main>{before}{body}{after}</main>{plan}<script>{script}</script></body></html>\n"
    )


def failures_html(failures: Sequence[FileFailure]) -> str:
    """The photos a run could not read, named with why, at the end of its page."""
    if not failures:
        return ""
    items = "".join(f"<li>{text(failure.path)}: {text(failure.reason)}</li>" for failure in failures)
    heading = f"<h2>Not read ({len(failures)})</h2>"
    return f'<section class="other" id="s-failed">{heading}<ul class="failed">{items}</ul></section>'


def write(page: Path, document: str) -> None:
    """Write the page whole (a temp file and a rename)."""
    write_atomically(page, document.encode("utf-8"))
