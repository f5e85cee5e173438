"""Evaluation of sort's decisions against photos whose right label is known (``clipsort eval``).

Pure numpy. The decisions are exactly ``sort``'s (:func:`clipsort.labels.decide.single_label`),
so the accuracy is what a hand count of a ``sort`` run over the same folder gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsort.labels import decide

#: The name of "none of these" in the confusion matrix and in ``--json``.
NONE = "(none)"


@dataclass(frozen=True)
class LabelFigures:
    name: str
    photos: int  #: photos whose right label this is
    precision: float | None  #: None when sort chose this label for no photo
    recall: float | None  #: None when no photo has this label
    threshold: float
    #: The lowest threshold that reaches the target precision on these photos (None: none does).
    suggested: float | None


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    photos: int
    labels: tuple[LabelFigures, ...]
    #: confusion[truth][decision] = photos; names include :data:`NONE`.
    confusion: dict[str, dict[str, int]]
    target_precision: float


def evaluate(
    names: Sequence[str],
    truth: Sequence[int | None],
    chosen: Sequence[int | None],
    scores: np.ndarray,
    thresholds: Sequence[float],
    target_precision: float = 0.9,
) -> Evaluation:
    """Figures for ``chosen`` (sort's decision per photo, None: none of these) against ``truth``
    (None: the photo's folder is no label, so "none of these" is right).

    The suggested threshold of a label is the lowest at which the photos sort would give
    it, keeping only those whose score reaches it, are at least ``target_precision`` right.
    """
    correct = sum(1 for t, c in zip(truth, chosen, strict=True) if t == c)
    all_names = [*names, NONE]

    def name_of(index: int | None) -> str:
        return NONE if index is None else names[index]

    confusion = {row: dict.fromkeys(all_names, 0) for row in all_names}
    for t, c in zip(truth, chosen, strict=True):
        confusion[name_of(t)][name_of(c)] += 1
    figures = []
    truth_array = np.array([-1 if t is None else t for t in truth])
    chosen_array = np.array([-1 if c is None else c for c in chosen])
    for i, name in enumerate(names):
        given = chosen_array == i
        actual = truth_array == i
        precision = float((given & actual).sum() / given.sum()) if given.any() else None
        recall = float((given & actual).sum() / actual.sum()) if actual.any() else None
        figures.append(
            LabelFigures(
                name,
                int(actual.sum()),
                precision,
                recall,
                float(thresholds[i]),
                _suggest(scores, i, truth_array, target_precision),
            )
        )
    return Evaluation(
        accuracy=correct / len(truth) if truth else 0.0,
        photos=len(truth),
        labels=tuple(figures),
        confusion=confusion,
        target_precision=target_precision,
    )


def _suggest(scores: np.ndarray, label: int, truth: np.ndarray, target: float) -> float | None:
    """Lowest threshold at which the photos that rank ``label`` first and reach it are ``target`` right."""
    if len(scores) == 0:
        return None
    best = scores.argmax(axis=1) == label
    candidates = np.sort(np.unique(scores[best, label]))
    for cut in candidates:
        kept = best & (scores[:, label] >= cut)
        if kept.any() and (truth[kept] == label).mean() >= target:
            return float(np.floor(cut * 1000) / 1000)
    return None


def decide_all(
    scores: np.ndarray, logits: np.ndarray, thresholds: Sequence[float], margin: float, exclude: Sequence[bool]
) -> list[int | None]:
    """sort's decision for every row."""
    return [
        decide.single_label(row, logit_row, thresholds, margin, exclude)[0]
        for row, logit_row in zip(scores, logits, strict=True)
    ]
