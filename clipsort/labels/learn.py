"""Few-shot learning: a label file fitted to example photos (``clipsort learn``).

The examples are a folder tree, one subfolder of photos per label (nested folders
give hierarchical labels). For every label clipsort fits a one-vs-rest logistic
regression on the photos' vectors that starts from the zero-shot classifier (the
label name's prompts, calibrated as in :mod:`clipsort.labels.decide`) and is pulled back
towards it with strength ``lambda``: with few examples the prompts count, with many
the examples do, and a label named by a word the model does not know is learned
from its photos alone. ``lambda`` is chosen by cross-validation on the examples, and
each label's threshold is set from the held-out scores. The result is a JSON file
(documented in docs/labels.md, no pickle) usable wherever ``--labels`` is.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort.errors import LabelFileError
from clipsort.labels import decide
from clipsort.labels.label_set import Label, LabelSet, ModelRecord, parse_label_path, prompts_for
from clipsort.labels.score import normalise
from clipsort.safe_files import MAX_LABELS

if TYPE_CHECKING:
    pass

FORMAT = "clipsort-learned-labels"
VERSION = 1
#: Pulls towards the zero-shot classifier tried by cross-validation, weakest first.
LAMBDAS = (0.003, 0.03, 0.3, 3.0)
#: Used when a label has a single example, so that nothing can be held out.
LAMBDA_WITHOUT_CV = 0.03
_STEPS = 400


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Fit:
    """Learned directions and calibrations (``score = sigmoid(a * cos + b)``), one row per label."""

    directions: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def scorer(self) -> decide.Scorer:
        return decide.Scorer(self.directions, self.a, self.b)


def fit(vectors: np.ndarray, truth: np.ndarray, prior: decide.Scorer, strength: float, steps: int = _STEPS) -> Fit:
    """One-vs-rest logistic regression of ``truth`` (label index per photo) on ``vectors``,
    started at and pulled towards ``prior`` (the zero-shot scorer) with ``strength``.

    The loss of each label weighs its positives and negatives equally. Full-batch
    gradient descent with Nesterov momentum on centred vectors.
    """
    x = normalise(vectors).astype(np.float64)
    centre = x.mean(axis=0)
    xc = x - centre
    n_labels = len(prior.a)
    w0 = prior.directions.astype(np.float64) * prior.a[:, None]  # (L, D): logits = x @ w0.T + b0
    c0 = prior.b + centre @ w0.T  # the same logits, written for centred vectors
    y = (truth[:, None] == np.arange(n_labels)[None, :]).astype(np.float64)
    positives = np.maximum(y.sum(axis=0), 1)
    negatives = np.maximum(len(y) - y.sum(axis=0), 1)
    weight = np.where(y > 0, 0.5 / positives, 0.5 / negatives)  # each label's loss sums to 1
    # Each label's loss weighs samples by at most 1 in all, so its curvature is at most 0.25 |x|^2 (+ the pull).
    step = 1.0 / (0.25 * float((xc**2).sum(axis=1).max(initial=0.0)) + 0.25 + strength)
    w, c = w0.copy(), c0.copy()
    w_prev, c_prev = w.copy(), c.copy()
    for k in range(1, steps + 1):
        momentum = (k - 1) / (k + 2)
        w_look = w + momentum * (w - w_prev)
        c_look = c + momentum * (c - c_prev)
        residual = (decide.sigmoid(xc @ w_look.T + c_look) - y) * weight  # (N, L)
        grad_w = residual.T @ xc + strength * (w_look - w0)
        grad_c = residual.sum(axis=0)
        w_prev, c_prev = w, c
        w = w_look - step * grad_w
        c = c_look - step * grad_c
    norms = np.linalg.norm(w, axis=1)
    return Fit(w / np.maximum(norms[:, None], 1e-12), norms, c - w @ centre)


@dataclass(frozen=True)
class LabelStats:
    """What ``learn`` reports for one label."""

    examples: int
    threshold: float
    #: Held-out precision and recall at the threshold (None with a single example).
    precision: float | None
    recall: float | None


@dataclass(frozen=True)
class Learned:
    fit: Fit
    strength: float
    #: Held-out accuracy of the best label per photo (None without cross-validation).
    held_out_accuracy: float | None
    zero_shot_accuracy: float
    stats: tuple[LabelStats, ...]


def _folds(truth: np.ndarray, count: int) -> list[np.ndarray]:
    """Stratified folds: each label's examples dealt round-robin."""
    fold_of = np.zeros(len(truth), dtype=int)
    for label in np.unique(truth):
        members = np.flatnonzero(truth == label)
        fold_of[members] = np.arange(len(members)) % count
    return [np.flatnonzero(fold_of == f) for f in range(count)]


def _held_out_logits(
    vectors: np.ndarray, truth: np.ndarray, prior: decide.Scorer, strength: float, folds
) -> np.ndarray:  # noqa: ANN001
    logits = np.zeros((len(truth), len(prior.a)))
    for test in folds:
        train = np.setdiff1d(np.arange(len(truth)), test)
        logits[test] = fit(vectors[train], truth[train], prior, strength).scorer().logits(vectors[test])
    return logits


def _threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float | None, float | None]:
    """The cut that best separates a label's held-out positives from its negatives (balanced
    accuracy, then the widest gap), with the precision and recall it gives."""
    values = np.unique(scores)
    cuts = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [1.0]]) if len(values) > 1 else np.array([0.5])
    best, best_key = 0.5, (-1.0, -1.0)
    for cut in cuts:
        kept = scores >= cut
        tpr = kept[positive].mean() if positive.any() else 0.0
        tnr = (~kept[~positive]).mean() if (~positive).any() else 0.0
        gap = min(np.abs(scores - cut).min(), 0.5)
        key = (float(tpr + tnr), float(gap))
        if key > best_key:
            best, best_key = float(cut), key
    best = min(max(best, 0.05), 0.95)
    kept = scores >= best
    precision = float(kept[positive].sum() / kept.sum()) if kept.any() else 1.0
    recall = float(kept[positive].mean()) if positive.any() else 0.0
    return best, precision, recall


def learn(vectors: np.ndarray, truth: np.ndarray, prior: decide.Scorer) -> Learned:
    """Fit the examples, choosing the pull towards zero-shot by cross-validation, and set thresholds."""
    counts = np.bincount(truth, minlength=len(prior.a))
    zero_shot_accuracy = float((prior.logits(vectors).argmax(axis=1) == truth).mean())
    fewest = int(counts.min())
    if fewest < 2:
        final = fit(vectors, truth, prior, LAMBDA_WITHOUT_CV)
        single = tuple(LabelStats(int(n), 0.5, None, None) for n in counts)
        return Learned(final, LAMBDA_WITHOUT_CV, None, zero_shot_accuracy, single)
    folds = _folds(truth, min(5, fewest))
    best: tuple[float, float, np.ndarray] | None = None
    for strength in LAMBDAS:
        logits = _held_out_logits(vectors, truth, prior, strength, folds)
        accuracy = float((logits.argmax(axis=1) == truth).mean())
        if best is None or accuracy > best[0] + 1e-9:
            best = (accuracy, strength, logits)
    assert best is not None
    accuracy, strength, logits = best
    scores = decide.sigmoid(logits)
    stats = []
    for label in range(len(prior.a)):
        cut, precision, recall = _threshold(scores[:, label], truth == label)
        stats.append(LabelStats(int(counts[label]), cut, precision, recall))
    return Learned(fit(vectors, truth, prior, strength), strength, accuracy, zero_shot_accuracy, tuple(stats))


# ----------------------------------------------------------------------------- the file


def to_json(labels: Sequence[Label], learned: Learned, model: ModelRecord, examples_dir: Path) -> str:
    """The learned label file (format ``clipsort-learned-labels``, version 1; docs/labels.md)."""
    records = []
    for i, label in enumerate(labels):
        stats = learned.stats[i]
        records.append(
            {
                "name": label.name,
                "examples": stats.examples,
                "threshold": round(stats.threshold, 4),
                "held_out": {"precision": stats.precision, "recall": stats.recall},
                "prompts": list(label.prompts),
                "a": float(learned.fit.a[i]),
                "b": float(learned.fit.b[i]),
                "direction": [round(float(v), 7) for v in learned.fit.directions[i]],
            }
        )
    document = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": model.display, "identity": model.identity},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "examples": str(examples_dir),
        "strength": learned.strength,
        "held_out_accuracy": learned.held_out_accuracy,
        "zero_shot_accuracy": learned.zero_shot_accuracy,
        "labels": records,
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


#: Larger calibrations than this are no fit of any photos (learned ones are tens): refused.
_LARGEST = 1e6


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a label file may hold (learned values must be finite)")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _need(condition: bool, source: Path, message: str) -> None:
    if not condition:
        raise LabelFileError(source, message)


def parse_learned(text: str, source: Path | str) -> LabelSet:
    """Read a file written by ``clipsort learn``. Raises :class:`LabelFileError` when it is not one."""
    source = Path(source)
    try:
        data: Any = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise LabelFileError(source, f"not valid JSON: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # NaN or Infinity (see _no_constant)
        raise LabelFileError(source, str(exc)) from None
    except RecursionError:
        raise LabelFileError(source, "nested too deeply to be a label file") from None
    _need(
        isinstance(data, dict) and data.get("format") == FORMAT,
        source,
        f"not a file made by 'clipsort learn' (no format {FORMAT!r})",
    )
    _need(
        data.get("version") == VERSION,
        source,
        f"learned-label format version {data.get('version')!r}; this clipsort reads {VERSION}",
    )
    model = data.get("model")
    _need(
        isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("identity"), str),
        source,
        "the file does not say which model it was learned with",
    )
    records = data.get("labels")
    _need(isinstance(records, list) and len(records) > 0, source, "no labels")
    _need(len(records) <= MAX_LABELS, source, f"{len(records)} labels: a label file may hold at most {MAX_LABELS}")
    labels: list[Label] = []
    dimension = None
    for number, record in enumerate(records, start=1):
        where = f"label {number}"
        _need(isinstance(record, dict) and isinstance(record.get("name"), str), source, f"{where} has no name")
        direction = record.get("direction")
        _need(
            isinstance(direction, list) and len(direction) > 0 and all(_number(v) for v in direction),
            source,
            f"{where} ({record['name']!r}) has no direction vector",
        )
        dimension = dimension or len(direction)
        _need(len(direction) == dimension, source, f"{where} ({record['name']!r}) has a vector of another size")
        _need(
            all(math.isfinite(v) for v in direction) and any(v != 0 for v in direction),
            source,
            f"{where} ({record['name']!r}): its direction vector is all zeros or holds numbers too large to be finite",
        )
        numbers = [record.get(key) for key in ("a", "b", "threshold")]
        _need(all(_number(v) for v in numbers), source, f"{where} ({record['name']!r}) lacks a, b or threshold")
        _need(
            all(math.isfinite(v) and abs(v) <= _LARGEST for v in numbers),
            source,
            f"{where} ({record['name']!r}): a, b or threshold is not a finite number of a sane size",
        )
        _need(0.0 <= float(record["threshold"]) <= 1.0, source, f"{where} ({record['name']!r}): threshold outside 0-1")
        path = parse_label_path(record["name"], source, None)
        prompts = tuple(p for p in record.get("prompts") or () if isinstance(p, str)) or prompts_for(path[-1])
        held = record.get("held_out") or {}
        estimate = (
            f", held-out precision {held['precision']:.2f} recall {held['recall']:.2f}"
            if isinstance(held.get("precision"), (int, float)) and isinstance(held.get("recall"), (int, float))
            else ""
        )
        labels.append(
            Label(
                path=path,
                prompts=prompts,
                custom_prompts=False,
                line=None,
                threshold=float(record["threshold"]),
                threshold_source=f"learned from {record.get('examples', '?')} examples{estimate}",
                vector=tuple(float(v) for v in direction),
                calibration=(float(record["a"]), float(record["b"])),
                learned=f"{record.get('examples', '?')} examples",
            )
        )
    return LabelSet(
        labels=tuple(labels),
        source=source,
        kind="learned",
        model=ModelRecord(model["name"], model["identity"]),
    )
