"""How clipsort's results read as text: JSON lines that are always valid, names on one line,
dry-run plan lines, ``--explain``'s lines and the summary line. Pure functions, no output of their
own (:mod:`clipsort.console` writes them)."""

from __future__ import annotations

import json
import math

from clipsort.run.report import LEFT_OUT, PhotoResult, Report

_SUMMARY_ORDER = (
    "indexed", "paired", "learned", "evaluated", "tagged", "untagged", "moved", "copied", "linked", "unsorted",
    "left", "in-place", "duplicate", "already-tagged",
)  # fmt: skip
_DRY_VERBS = {
    "tagged": "would tag",
    "untagged": "no label",
    "moved": "would move",
    "copied": "would copy",
    "linked": "would link",
    "unsorted": "would unsort",
    "left": "would leave",
    "in-place": "in place",
    "duplicate": "duplicate",
}


def json_text(record: object, ascii_only: bool = False) -> str:
    """``record`` as one line of JSON, always valid: a number that is not finite (NaN, infinity),
    which JSON cannot hold, is written as null."""
    try:
        return json.dumps(record, ensure_ascii=ascii_only, allow_nan=False)
    except ValueError:
        return json.dumps(_finite_only(record), ensure_ascii=ascii_only, allow_nan=False)


def _finite_only(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_only(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(item) for item in value]
    return value


def printable(text: str) -> str:
    """``text`` on one line: control characters escaped (a file name may hold a newline), and
    bytes that are not UTF-8 (kept by Python as surrogates) shown as \\xNN."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def explanation(result: PhotoResult) -> str:
    """``--explain``'s lines for one photo: every label, best first, with score, threshold and why."""
    if not result.explained:
        return ""
    width = max(len(name) for name in result.explained)
    rows = sorted(result.explained.items(), key=lambda item: -item[1].score)
    lines = []
    for name, judgement in rows:
        sign = ">=" if judgement.score >= judgement.threshold else "< "
        mark = "+" if judgement.kept else " "
        lines.append(
            printable(
                f"  {mark} {name.ljust(width)}  {judgement.score:.3f} {sign} {judgement.threshold:.3f}  {judgement.why}"
            )
        )
    return "\n".join(lines) + "\n"


def plan_line(result: PhotoResult) -> str:
    return printable(_plan_text(result))


def _plan_text(result: PhotoResult) -> str:
    verb = _DRY_VERBS.get(result.action, result.action) if result.dry_run else result.action
    labels = ", ".join(result.labels) if result.labels else "-"
    if result.destination is not None and result.destination != result.path:
        return f"{verb}: {result.path} -> {result.destination}"
    if result.sidecar is not None:
        return f"{verb}: {result.path} [{labels}] -> {result.sidecar}"
    if result.action == "left" and result.note:
        return f"{verb}: {result.path} [{labels}] ({result.note})"
    return f"{verb}: {result.path} [{labels}]"


def not_photos_line(report: Report, shown: int = 6) -> str:
    """``left out: 3 files that are not photos or videos (.txt 2, .pdf 1)``; "" when there are none."""
    count = sum(report.not_photos.values())
    if not count:
        return ""
    ranked = sorted(report.not_photos.items(), key=lambda kv: (-kv[1], kv[0]))
    kinds = [f"{ext} {n}" for ext, n in ranked[:shown]]
    more = len(report.not_photos) - shown
    if more > 0:
        kinds.append(f"{more} other kind{'s' if more != 1 else ''}")
    files = "file that is not a photo or video" if count == 1 else "files that are not photos or videos"
    return f"left out: {count} {files} ({', '.join(kinds)})"


def summary_line(report: Report) -> str:
    """e.g. ``tagged 98, untagged 1, failed 2 | 101 photos in 12.3 s, 8.2 images/s``."""
    names = _DRY_VERBS if report.dry_run else {}
    parts = [f"{names.get(a, a)} {report.actions[a]}" for a in _SUMMARY_ORDER if report.actions.get(a)]
    parts += [f"{a} {n}" for a, n in sorted(report.actions.items()) if a not in (*_SUMMARY_ORDER, LEFT_OUT) and n]
    if report.failures:
        parts.append(f"failed {len(report.failures)}")
    if report.unchanged:
        parts.append(f"sidecars unchanged {report.unchanged}")
    if report.unchanged_in_photos:
        parts.append(f"photos unchanged {report.unchanged_in_photos}")
    if report.actions.get(LEFT_OUT):
        parts.append(f"not photos {report.actions[LEFT_OUT]}")
    counts = ", ".join(parts) if parts else "nothing to do"
    if not report.found and not report.failures and not report.unreadable:
        counts = "no photo or video found" + (f" ({counts})" if parts else "")
    found = f"{report.found} photos"
    if report.videos:  # clips counted apart: "2 photos and 6 videos", "4 videos"
        clips = f"{report.videos} video{'s' if report.videos != 1 else ''}"
        found = f"{report.found - report.videos} photos and {clips}" if report.found > report.videos else clips
    return (
        f"{counts} | {found} in {report.elapsed:.1f} s, {report.rate:.1f} images/s"
        f" | embedded {report.embedded}, from cache {report.cached}"
    )


def clock(seconds: float) -> str:
    """A time within a clip as people read it: ``0:03.5``, ``1:02:07.0``."""
    tenths = round(max(seconds, 0.0) * 10)
    minutes, rest = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    text = f"{minutes}:{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{minutes:02d}:{rest // 10:02d}.{rest % 10}" if hours else text


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal; ``-`` when there is none."""
    return "-" if value is None else f"{value:.1%}"
