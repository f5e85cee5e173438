"""How scores become decisions: one score per label, judged on its own (docs/scoring.md).

Pure numpy. Every label has a direction ``w`` in the model's embedding space (its
prompts' embedding, or a learned one) and a calibration ``(a, b)``; its score for a
photo ``x`` is

    score = sigmoid(a * cos(x, w) + b)

which does not depend on the other labels of the file. For zero-shot labels
``a`` is the model's ``logit_scale`` s and ``b = -s * u - OFFSET_LOGITS``, where ``u``
is the model's *unrelated level* (the mean cosine between plain pictures and a
fixed set of everyday prompts, :data:`UNRELATED_PROMPTS`): a score of 0.5 is a
cosine ``OFFSET_LOGITS / s`` above what unrelated captions get. Learned labels
(``clipsort learn``) carry their own ``w``, ``a`` and ``b``.

* ``tag`` (multi-label): keep every label whose score reaches its threshold.
* ``sort`` (single-label): the best label, kept only if it reaches its own
  threshold and leads the runner-up by the margin; otherwise "none of these".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from clipsort.labels.score import normalise

#: Logits above the unrelated level that make a score of 0.5 (docs/scoring.md, "the scale").
OFFSET_LOGITS = 5.5

#: Everyday subjects, filled into the label templates: what "unrelated" captions look like.
UNRELATED_PROMPTS: tuple[str, ...] = (
    "person",
    "dog",
    "car",
    "tree",
    "house",
    "food",
    "mountain",
    "city street",
    "flower",
    "bird",
    "book",
    "telephone",
    "table",
    "river",
    "building",
    "child",
)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class Scorer:
    """Label directions and calibrations: ``score = sigmoid(a * cos(x, w) + b)`` per label."""

    directions: np.ndarray  #: (labels, D), unit rows
    a: np.ndarray  #: (labels,)
    b: np.ndarray  #: (labels,)

    @classmethod
    def zero_shot(cls, directions: np.ndarray, logit_scale: float, unrelated: float) -> Scorer:
        n = len(directions)
        a = np.full(n, float(logit_scale))
        b = np.full(n, -float(logit_scale) * unrelated - OFFSET_LOGITS)
        return cls(normalise(directions), a, b)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(images, labels) ``a * cos + b``: the score before the sigmoid."""
        return (normalise(images) @ self.directions.T) * self.a + self.b

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(images, labels) scores in [0, 1]."""
        return sigmoid(self.logits(images))


class Judgement(NamedTuple):
    """One label's verdict for one photo (what ``--explain`` prints). A tuple: one is made
    per label per photo, and a tuple is made several times faster than a frozen dataclass."""

    score: float
    threshold: float
    kept: bool
    why: str


def _kept(
    values: list[float], thresholds: Sequence[float], exclude: Sequence[bool], top_k: int | None
) -> tuple[list[int], int | None]:
    """:func:`multi_label`'s kept labels, best first, and the excluded label that took the photo (or None)."""
    # Best first; ties keep label order (a stable sort, as argsort(kind="stable") of -scores).
    passing = [i for i, v in enumerate(values) if v >= thresholds[i]]
    if len(passing) > 1:
        passing.sort(key=values.__getitem__, reverse=True)  # reverse keeps the sort stable
    absorbed_by = passing[0] if passing and exclude[passing[0]] else None
    kept = [] if absorbed_by is not None else [i for i in passing if not exclude[i]]
    if top_k is not None:
        kept = kept[:top_k]
    return kept, absorbed_by


def kept_labels(
    scores: np.ndarray, thresholds: Sequence[float], exclude: Sequence[bool], top_k: int | None = None
) -> list[int]:
    """The labels :func:`multi_label` keeps, without judging the others (a re-run nobody watches)."""
    return _kept(scores.tolist(), thresholds, exclude, top_k)[0]


def multi_label(
    scores: np.ndarray, thresholds: Sequence[float], exclude: Sequence[bool], top_k: int | None = None
) -> tuple[list[int], list[Judgement]]:
    """``tag``'s rule for one photo: every label at or above its threshold, best first.

    Excluded labels are judged but never kept; when one of them is the photo's best
    passing label, it takes the photo and no label is kept ("this is a screenshot").
    ``top_k`` keeps only the best ones.
    """
    values = scores.tolist()  # a handful of labels: plain Python beats numpy calls here
    kept, absorbed_by = _kept(values, thresholds, exclude, top_k)
    chosen = set(kept)
    judgements = []
    for i, value in enumerate(values):
        if i in chosen:
            why = "kept"
        elif value < thresholds[i]:
            why = "below threshold"
        elif exclude[i]:
            why = "excluded label: never written" + (", takes the photo" if i == absorbed_by else "")
        elif absorbed_by is not None:
            why = "the photo was taken by an excluded label"
        else:
            why = f"beyond --top-k {top_k}"
        judgements.append(Judgement(value, float(thresholds[i]), i in chosen, why))
    return kept, judgements


def needed_score(runner_up_logit: float, margin: float) -> float:
    """The score the best label needs to lead a runner-up of this logit by ``margin`` logits: the
    margin on the 0-to-1 scale of the scores, for one photo (docs/scoring.md, "the margin")."""
    return float(sigmoid(np.float64(runner_up_logit + margin)))


def _told(score: float) -> str:
    """A score as a reason tells it: two decimals, four near 0 and 1 (where two would read 0.00 or 1.00)."""
    return f"{score:.2f}" if 0.01 <= score <= 0.99 else f"{score:.4f}"


def single_label(
    scores: np.ndarray, logits: np.ndarray, thresholds: Sequence[float], margin: float, exclude: Sequence[bool]
) -> tuple[int | None, list[Judgement]]:
    """``sort``'s rule for one photo: the best label, if it passes and leads the runner-up.

    The lead is measured in logits (``a * cos + b``): ``margin`` 1.0 means the best
    label is e (2.7) times as likely as the runner-up. It is told on the scale of the scores
    beside it: the runner-up's score and the score the margin asks of the best label
    (:func:`needed_score`). Returns None for "none of these", which is also the answer when
    the best label is an excluded one.
    """
    order = np.argsort(-logits, kind="stable")
    best = int(order[0])
    second = int(order[1]) if len(order) > 1 else None
    lead = float(logits[best] - logits[second]) if second is not None else float("inf")
    told = _told(float(scores[best]))
    chosen: int | None = best
    if scores[best] < thresholds[best]:
        chosen, reason = None, "best label, but below its threshold: none of these"
    elif second is not None and lead < margin:
        needed, runner_up = _told(needed_score(float(logits[second]), margin)), _told(float(scores[second]))
        short = "just short of" if needed == told else "short of"
        reason = f"best label ({told}), but {short} the {needed} the margin asks over the runner-up's {runner_up}"
        chosen, reason = None, reason + ": none of these"
    elif exclude[best]:
        chosen, reason = None, "best label, excluded: the photo is left unsorted"
    elif second is not None:
        needed, runner_up = _told(needed_score(float(logits[second]), margin)), _told(float(scores[second]))
        reason = f"chosen ({told}; the margin asks {needed} over the runner-up's {runner_up})"
    else:
        reason = "chosen"
    judgements = []
    for i, value in enumerate(scores):
        why = reason if i == best else ("passes, but not the best" if value >= thresholds[i] else "below threshold")
        judgements.append(Judgement(float(value), float(thresholds[i]), i == chosen, why))
    return chosen, judgements
