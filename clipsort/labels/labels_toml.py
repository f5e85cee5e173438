"""The rich label-file form, TOML::

    templates = ["a photo of a {}.", "a picture of a {}."]   # optional; {} or {label} is the label
    threshold = 0.5                                            # optional default for every label
    margin = 0.05                                              # optional, for sort
    tag_root = "auto"                                          # optional parent of hierarchical keywords

    [labels.dog]
    aliases = ["puppy"]
    threshold = 0.6

    [labels."animals/cat"]
    prompts = ["a photo of a cat", "a kitten"]
    folder = "Pets/Cats"

    [labels.screenshot]
    exclude = true

It loads into the same :class:`~clipsort.labels.label_set.LabelSet` as the text form. Errors
name the file and the line (TOML syntax errors too).
"""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path
from typing import Any

from clipsort.errors import LabelFileError
from clipsort.labels.label_set import (
    _SPACES,
    DEFAULT_TEMPLATES,
    Label,
    LabelSet,
    checked,
    parse_label_path,
    prompts_for,
    refuse_too_many,
)
from clipsort.labels.names import control_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_TOP_KEYS = {"templates", "threshold", "margin", "tag_root", "labels"}
_LABEL_KEYS = {"prompts", "threshold", "folder", "aliases", "exclude"}
_HEADER = re.compile(r"^\s*\[\s*labels\s*\.(.+?)\]\s*(?:#.*)?$")


class _Lines:
    """Finds the line of a label's table, or of a key, in the TOML text (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: dict[str, int] = {}
        for number, line in enumerate(self.lines, start=1):
            match = _HEADER.match(line)
            if match:
                try:
                    key = next(iter(tomllib.loads(f"{match.group(1)} = 0")))
                except (tomllib.TOMLDecodeError, StopIteration):
                    continue
                self.headers.setdefault(key, number)

    def label(self, name: str) -> int | None:
        return self.headers.get(name)

    def key(self, key: str, label: str | None = None) -> int | None:
        """The line of ``key =`` at the top (``label`` None) or in the label's table."""
        start = self.headers.get(label, 0) if label is not None else 0
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if label is None and line.lstrip().startswith("["):
                break
            if label is not None and number > start + 1 and line.lstrip().startswith("["):
                break
            if pattern.match(line):
                return number
        return self.headers.get(label) if label is not None else None


def _fraction(value: Any, what: str, source: Path, line: int | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise LabelFileError(source, f"{what} must be a number from 0 to 1, not {value!r}", line)
    return float(value)


def _strings(value: Any, what: str, source: Path, line: int | None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabelFileError(source, f"{what} must be a string or a list of strings", line)
    cleaned = tuple(_SPACES.sub(" ", v.strip()) for v in value)
    if not all(cleaned):
        raise LabelFileError(source, f"{what} has an empty entry", line)
    return cleaned


def _templates(value: Any, source: Path, line: int | None) -> tuple[str, ...]:
    templates = _strings(value, "templates", source, line)
    if not templates:
        raise LabelFileError(source, "templates is empty", line)
    for template in templates:
        try:
            fields = [
                (name, spec, conversion)
                for _, name, spec, conversion in string.Formatter().parse(template.replace("{label}", "{}"))
                if name is not None
            ]
        except ValueError:
            fields = []
        if fields != [("", "", None)]:
            raise LabelFileError(
                source,
                f"template {template!r} must hold {{}} (or {{label}}) exactly once, and no other braces "
                "(write a brace itself as {{ or }})",
                line,
            )
    return templates


def parse_toml_labels(text: str, source: Path | str = "<labels.toml>") -> LabelSet:
    """Parse the TOML form. Raises :class:`LabelFileError` naming the offending line."""
    source = Path(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise LabelFileError(source, f"not valid TOML: {message}", int(found.group(1)) if found else None) from None
    except RecursionError:
        raise LabelFileError(source, "not a label file: arrays or tables nested too deeply") from None
    lines = _Lines(text)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise LabelFileError(
            source,
            f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})",
            lines.key(unknown[0]) or lines.label(unknown[0]),
        )
    templates = DEFAULT_TEMPLATES
    if "templates" in data:
        templates = _templates(data["templates"], source, lines.key("templates"))
    threshold = (
        _fraction(data["threshold"], "threshold", source, lines.key("threshold")) if "threshold" in data else None
    )
    margin = None
    if "margin" in data:
        value = data["margin"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise LabelFileError(
                source, f"margin must be a number of logits, 0 or more, not {value!r}", lines.key("margin")
            )
        margin = float(value)
    tag_root = None
    if "tag_root" in data:
        if not isinstance(data["tag_root"], str):
            raise LabelFileError(source, "tag_root must be a string", lines.key("tag_root"))
        tag_root = data["tag_root"].strip().strip("|/")
        problem = control_problem(tag_root, "tag_root")
        if problem:
            raise LabelFileError(source, problem, lines.key("tag_root"))
    table = data.get("labels", {})
    if not isinstance(table, dict):
        raise LabelFileError(source, "labels must be a table: [labels.NAME]", lines.key("labels"))
    labels: list[Label] = []
    refuse_too_many(len(table), source)
    for raw_name, body in table.items():
        line = lines.label(raw_name)
        if body is None or not isinstance(body, dict):
            raise LabelFileError(source, f"label {raw_name!r} must be a table: [labels.{raw_name}]", line)
        path = parse_label_path(_SPACES.sub(" ", raw_name.strip()), source, line)
        extra = sorted(set(body) - _LABEL_KEYS)
        if extra:
            raise LabelFileError(
                source,
                f"label {raw_name!r}: unknown key {extra[0]!r} (known: {', '.join(sorted(_LABEL_KEYS))})",
                lines.key(extra[0], raw_name),
            )
        aliases = _strings(
            body.get("aliases", []), f"label {raw_name!r}: aliases", source, lines.key("aliases", raw_name)
        )
        custom = "prompts" in body
        if custom:
            prompts = _strings(body["prompts"], f"label {raw_name!r}: prompts", source, lines.key("prompts", raw_name))
            if not prompts:
                raise LabelFileError(source, f"label {raw_name!r}: prompts is empty", lines.key("prompts", raw_name))
        else:
            prompts = prompts_for(path[-1], templates)
        for alias in aliases:
            prompts += tuple(p for p in prompts_for(alias, templates) if p not in prompts)
        own_threshold, threshold_source = None, ""
        if "threshold" in body:
            key_line = lines.key("threshold", raw_name)
            own_threshold = _fraction(body["threshold"], f"label {raw_name!r}: threshold", source, key_line)
            threshold_source = f"{source.name}:{key_line}" if key_line else source.name
        folder = None
        if "folder" in body:
            if not isinstance(body["folder"], str):
                raise LabelFileError(
                    source, f"label {raw_name!r}: folder must be a string", lines.key("folder", raw_name)
                )
            folder = parse_label_path(_SPACES.sub(" ", body["folder"].strip()), source, lines.key("folder", raw_name))
        exclude = body.get("exclude", False)
        if not isinstance(exclude, bool):
            raise LabelFileError(
                source, f"label {raw_name!r}: exclude must be true or false", lines.key("exclude", raw_name)
            )
        label = Label(
            path=path,
            prompts=prompts,
            custom_prompts=custom,
            line=line,
            threshold=own_threshold,
            threshold_source=threshold_source,
            folder=folder,
            aliases=aliases,
            exclude=exclude,
        )
        labels.append(label)
    return LabelSet(
        labels=checked(labels, source, "no labels: add a [labels.NAME] table for each label"),
        source=source,
        threshold=threshold,
        threshold_line=lines.key("threshold") if threshold is not None else None,
        margin=margin,
        tag_root=tag_root,
        templates=templates,
        kind="toml",
    )
