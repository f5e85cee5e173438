"""A label set made ready to judge photos: its directions embedded (from the cache where it can),
calibrated, and each label's threshold resolved. The rules that use it are in :mod:`clipsort.labels.decide`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from clipsort.labels import decide, score
from clipsort.labels.label_set import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Label, LabelSet, check_dimension
from clipsort.model.embed import Embedder


def label_matrix(embedder: Embedder, labels: LabelSet) -> np.ndarray:
    """(labels x D) zero-shot classifier: each label's prompts embedded, averaged, normalised."""
    prompts = [prompt for label in labels.labels for prompt in label.prompts]
    embedded = embedder.text_vectors(prompts)
    rows, start = [], 0
    for label in labels.labels:
        rows.append(score.label_embedding(embedded[start : start + len(label.prompts)]))
        start += len(label.prompts)
    return np.stack(rows)


@dataclass(frozen=True)
class Decisions:
    """A label set made ready to judge photos: the scorer, and each label's threshold with its source."""

    labels: LabelSet
    scorer: decide.Scorer
    thresholds: tuple[float, ...]
    threshold_sources: tuple[str, ...]
    margin: float
    exclude: tuple[bool, ...]


def threshold_of(label: Label, labels: LabelSet, override: float | None) -> tuple[float, str]:
    """A label's threshold and where it comes from: the label's own (label file, or learned), else
    ``--threshold``, else the file's ``threshold``, else the built-in default."""
    if label.threshold is not None:
        return label.threshold, label.threshold_source or labels.source.name
    if override is not None:
        return override, "--threshold"
    if labels.threshold is not None:
        where = f":{labels.threshold_line}" if labels.threshold_line else ""
        return labels.threshold, f"{labels.source.name}{where} (file default)"
    return DEFAULT_THRESHOLD, "built-in default"


def prepare_decisions(
    embedder: Embedder, labels: LabelSet, threshold: float | None = None, margin: float | None = None
) -> Decisions:
    """Embed the labels (from the cache where it can) and calibrate them (docs/scoring.md)."""
    rows = [i for i, label in enumerate(labels.labels) if label.vector is None]
    zero_shot = None
    if rows:
        text_labels = LabelSet(tuple(labels.labels[i] for i in rows), labels.source)
        zero_shot = decide.Scorer.zero_shot(
            label_matrix(embedder, text_labels), embedder.logit_scale(), embedder.unrelated_level()
        )
    learned = next((label.vector for label in labels.labels if label.vector is not None), None)
    dimension = zero_shot.directions.shape[1] if zero_shot is not None else len(learned or ())
    check_dimension(labels, dimension, embedder.name)
    directions = np.zeros((len(labels), dimension), dtype=np.float32)
    a, b = np.zeros(len(labels)), np.zeros(len(labels))
    if zero_shot is not None:
        directions[rows], a[rows], b[rows] = zero_shot.directions, zero_shot.a, zero_shot.b
    for i, label in enumerate(labels.labels):
        if label.vector is not None and label.calibration is not None:
            directions[i] = label.vector
            a[i], b[i] = label.calibration
    resolved = [threshold_of(label, labels, threshold) for label in labels.labels]
    if margin is None:
        margin = labels.margin if labels.margin is not None else DEFAULT_MARGIN
    return Decisions(
        labels=labels,
        scorer=decide.Scorer(score.normalise(directions), a, b),
        thresholds=tuple(t for t, _ in resolved),
        threshold_sources=tuple(src for _, src in resolved),
        margin=margin,
        exclude=tuple(label.exclude for label in labels.labels),
    )


def decisions_when_needed(
    embedder: Embedder, labels: LabelSet, threshold: float | None = None, margin: float | None = None
) -> Decisions:
    """:func:`prepare_decisions`, run when the run first reads them (its first photo's scores).

    The labels' vectors need the model's text tower, the photos' its image tower: asked for first,
    they held the whole run until the model was loaded, or on its first run prepared (seconds),
    while the decode threads could have read and decoded photos meanwhile. Now the first photo
    decoded starts the model's loading in the background, and the labels are embedded once it is
    there."""
    return cast(Decisions, _Later(lambda: prepare_decisions(embedder, labels, threshold, margin)))


class _Later:
    """A value made when first used (attributes read through to it)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._made is None:
            self._made = self._make()
        return getattr(self._made, name)
