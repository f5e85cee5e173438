"""Runs over folders of labelled photos, one subfolder per label: ``learn`` and ``eval``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsort.errors import UsageError
from clipsort.labels import decide, learn
from clipsort.labels.evaluate import NONE, Evaluation, decide_all, evaluate
from clipsort.labels.label_set import DEFAULT_TEMPLATES, Label, LabelSet, ModelRecord, _fold, prompts_for
from clipsort.model.embed import Embedder
from clipsort.model.model_files import model_key
from clipsort.photos.discover import ImageRef
from clipsort.run.classifier import prepare_decisions
from clipsort.run.events import Events, RunOptions, SilentEvents, warn
from clipsort.run.pipeline import embedded_photos, find_photos
from clipsort.run.report import Report
from clipsort.safe_files import LABEL_FILE_LIMIT, read_regular, write_atomically


@dataclass(frozen=True)
class Labelled:
    """Photos of a labelled folder with the label path of each (its folder, relative to the root)."""

    refs: tuple[ImageRef, ...]
    paths: tuple[tuple[str, ...], ...]


def find_labelled(
    root: Path, report: Report, events: Events, need_photos: bool, run: RunOptions = RunOptions()
) -> Labelled:
    """The photos under ``root``, each labelled by its folder. Photos directly in ``root`` have no
    label and are reported; with ``need_photos``, a label folder without photos is an error."""
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder (expected one subfolder of photos per label)")
    refs, paths = [], []
    loose = 0
    for ref in find_photos([root], report, events, run=run):
        relative = ref.path.parent.relative_to(root).parts
        if not relative:
            loose += 1
            continue
        refs.append(ref)
        paths.append(relative)
    if loose:
        message = f"{loose} photos directly in {root} belong to no label folder; skipped"
        warn(report, events, message)
    if need_photos:
        holding = {parts[: i + 1] for parts in paths for i in range(len(parts))}
        for folder, subfolders, _ in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            relative = Path(folder).relative_to(root).parts
            if relative and relative not in holding:
                raise UsageError(f"{folder}: no photos for label {'/'.join(relative)!r}")
        if not refs:
            raise UsageError(f"{root}: no photos in label folders (expected one subfolder of photos per label)")
    report.found = len(refs)
    return Labelled(tuple(refs), tuple(paths))


def _vectors(refs: Sequence[ImageRef], embedder: Embedder, run: RunOptions, report: Report, events: Events):  # noqa: ANN202
    """Vectors of the photos that could be read, with their indices in ``refs``."""
    index = {ref.path: i for i, ref in enumerate(refs)}
    rows, vectors = [], []
    for chunk in embedded_photos(refs, embedder, run, report, events):
        for ref, vector in chunk:
            rows.append(index[ref.path])
            vectors.append(vector)
            events.advanced(1)
    return np.array(rows, dtype=int), (np.stack(vectors) if vectors else np.zeros((0, 0), np.float32))


# ----------------------------------------------------------------------------- learn


@dataclass(frozen=True)
class LearnOutcome:
    labels: LabelSet
    learned: learn.Learned
    output: Path


def run_learn(
    root: Path,
    output: Path,
    embedder: Embedder,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> tuple[Report, LearnOutcome | None]:
    """Learn a label file from ``root``'s example photos and write it to ``output``."""
    events = events or SilentEvents()
    report = Report("learn")
    if output.exists() and not _is_learned_file(output):
        raise UsageError(f"{output} exists and is not a file made by 'clipsort learn'; not overwritten")
    found = find_labelled(root, report, events, need_photos=True, run=run)
    names = sorted(set(found.paths), key=lambda p: [s.casefold() for s in p])
    label_set = LabelSet(
        tuple(Label(path=p, prompts=prompts_for(p[-1]), custom_prompts=False, line=None) for p in names),
        root,
    )
    prior = prepare_decisions(embedder, label_set).scorer
    events.started(len(found.refs))
    rows, vectors = _vectors(found.refs, embedder, run, report, events)
    truth = np.array([names.index(found.paths[i]) for i in rows], dtype=int)
    missing = [names[i] for i in range(len(names)) if not (truth == i).any()]
    if missing:
        report.fatal = f"no readable example photos for label {'/'.join(missing[0])!r}; nothing written"
        report.finish()
        return report, None
    learned = learn.learn(vectors, truth, prior)
    identity = model_key(embedder.spec) or embedder.spec.display
    text = learn.to_json(label_set.labels, learned, ModelRecord(embedder.name, identity), root.absolute())
    _write_atomic(output, text)
    report.actions["learned"] = len(rows)
    report.finish()
    return report, LearnOutcome(label_set, learned, output)


def _is_learned_file(path: Path) -> bool:
    try:
        data = read_regular(path, LABEL_FILE_LIMIT, "label file")
        return json.loads(data).get("format") == learn.FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole (:func:`clipsort.safe_files.write_atomically`: a new file gets the
    permissions the umask gives, like any file a person writes; a link is never replaced)."""
    try:
        write_atomically(path, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- eval


@dataclass(frozen=True)
class EvalOptions:
    threshold: float | None = None
    margin: float | None = None
    target_precision: float = 0.9


def run_eval(
    root: Path,
    labels: LabelSet,
    embedder: Embedder,
    options: EvalOptions = EvalOptions(),
    run: RunOptions = RunOptions(),
    events: Events | None = None,
    per_photo: list[tuple[Path, str, str, dict[str, float]]] | None = None,
) -> tuple[Report, Evaluation]:
    """Decide every photo of ``root`` as ``sort`` would, and compare with its folder. ``per_photo``,
    when given, gets each photo's (path, right label, decision, scores); "none of these" is NONE."""
    events = events or SilentEvents()
    report = Report("eval")
    found = find_labelled(root, report, events, need_photos=False, run=run)
    if not found.refs:
        raise UsageError(f"{root}: no photos in label folders (expected one subfolder of photos per label)")
    by_folder: dict[str, int] = {}
    for i, label in enumerate(labels.labels):
        by_folder.setdefault(_fold("/".join(label.path)), i)
        by_folder.setdefault(_fold("/".join(label.folder_path)), i)
    unknown = sorted({"/".join(p) for p in found.paths if _fold("/".join(p)) not in by_folder})
    if unknown:
        message = f"folders that are no label count as 'none of these': {', '.join(unknown)}"
        warn(report, events, message)
    events.started(len(found.refs))
    rows, vectors = _vectors(found.refs, embedder, run, report, events)  # decoded while the model loads
    decisions = prepare_decisions(embedder, labels, options.threshold, options.margin)
    truth = [by_folder.get(_fold("/".join(found.paths[i]))) for i in rows]
    logits = decisions.scorer.logits(vectors) if len(rows) else np.zeros((0, len(labels)))
    scores = decide.sigmoid(logits)
    chosen = decide_all(scores, logits, decisions.thresholds, decisions.margin, decisions.exclude)
    report.actions["evaluated"] = len(rows)
    if per_photo is not None:
        names = labels.names
        for k, i in enumerate(rows):
            right, decided = truth[k], chosen[k]
            per_photo.append(
                (
                    found.refs[i].path,
                    NONE if right is None else names[right],
                    NONE if decided is None else names[decided],
                    dict(zip(names, scores[k].tolist(), strict=True)),
                )
            )
    report.finish()
    result = evaluate(labels.names, truth, chosen, scores, decisions.thresholds, options.target_precision)
    return report, result


def save_thresholds(labels: LabelSet, evaluation: Evaluation, path: Path) -> int:
    """Write ``labels`` with the suggested thresholds to ``path`` (TOML; a learned file stays JSON).

    Never overwrites: ``path`` must not exist. Returns how many thresholds were set.
    """
    if path.exists():
        raise UsageError(f"{path} exists; give a new file name for the label file with thresholds")
    suggested = {f.name: f.suggested for f in evaluation.labels}
    if labels.kind == "learned":
        document = json.loads(labels.source.read_text(encoding="utf-8"))
        for record in document["labels"]:
            value = suggested.get(record["name"])
            if value is not None:
                record["threshold"] = value
        _write_atomic(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        return sum(v is not None for v in suggested.values())
    lines = [
        f"# Label file written by 'clipsort eval' from {labels.source.name}: thresholds for a precision of",
        f"# {evaluation.target_precision:g} on the photos evaluated (docs/scoring.md). Labels without enough photos",
        "# keep the threshold they had.",
    ]
    if labels.templates != DEFAULT_TEMPLATES:
        lines.append(f"templates = {_toml_list(labels.templates)}")
    if labels.threshold is not None:
        lines.append(f"threshold = {labels.threshold:g}")
    if labels.margin is not None:
        lines.append(f"margin = {labels.margin:g}")
    if labels.tag_root is not None:
        lines.append(f"tag_root = {json.dumps(labels.tag_root, ensure_ascii=False)}")
    for label in labels.labels:
        lines += ["", f"[labels.{json.dumps(label.name, ensure_ascii=False)}]"]
        if label.custom_prompts:
            own = [p for p in label.prompts if p not in _alias_prompts(label, labels)]
            lines.append(f"prompts = {_toml_list(own)}")
        if label.aliases:
            lines.append(f"aliases = {_toml_list(label.aliases)}")
        if label.folder is not None:
            lines.append(f"folder = {json.dumps('/'.join(label.folder), ensure_ascii=False)}")
        if label.exclude:
            lines.append("exclude = true")
        value = suggested.get(label.name)
        if value is None and label.threshold is not None:
            value = label.threshold
        if value is not None:
            lines.append(f"threshold = {value:g}")
    _write_atomic(path, "\n".join(lines) + "\n")
    return sum(v is not None for v in suggested.values())


def _alias_prompts(label: Label, labels: LabelSet) -> set[str]:
    return {p for alias in label.aliases for p in prompts_for(alias, labels.templates)}


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"
