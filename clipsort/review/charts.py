"""Small inline SVG charts of a review page: a label's score histogram with its threshold."""

from __future__ import annotations

import html
from collections.abc import Sequence

BINS = 40
WIDTH, HEIGHT = 200, 36


def histogram(scores: Sequence[float], threshold: float | None, title: str = "") -> str:
    """An SVG histogram of ``scores`` (0 to 1) with ``threshold`` drawn as a vertical line."""
    counts = [0] * BINS
    for score in scores:
        counts[min(BINS - 1, max(0, int(score * BINS)))] += 1
    tallest = max(counts) or 1
    step = WIDTH / BINS
    bars = []
    for i, count in enumerate(counts):
        if count:
            h = max(1.0, HEIGHT * count / tallest)
            bars.append(f'<rect x="{i * step:.1f}" y="{HEIGHT - h:.1f}" width="{step - 0.5:.1f}" height="{h:.1f}"/>')
    line = ""
    if threshold is not None:
        x = WIDTH * min(1.0, max(0.0, threshold))
        line = f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{HEIGHT}"/>'
    label = f"<title>{html.escape(title)}</title>" if title else ""
    return (
        f'<svg class="hist" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
        f"{label}{''.join(bars)}{line}</svg>"
    )
