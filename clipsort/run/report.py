"""What a run did: counts per outcome, the files that failed, and the exit code."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from clipsort.errors import ExitCode, FileFailure
from clipsort.labels.decide import Judgement

#: What a summary calls the photos given no label, and those a sort plan leaves where they are.
NONE_OF_THESE = "none of these"
LEFT_AS_PLANNED = "left where it is"
#: The note of a photo that a sort plan leaves where it is (``_leave`` on the review page).
LEFT_BY_PLAN = "left where it is by the plan"
#: The action of a file the walk met that is not a photo or video (counted, named, never read).
LEFT_OUT = "left-out"
#: Actions of photos that were judged (not the unreadable ones).
_JUDGED = frozenset(
    {"tagged", "untagged", "moved", "copied", "linked", "in-place", "duplicate", "unsorted", "left", "deduplicated"}
)


@dataclass(slots=True)  # one per photo: plain slots are made several times faster than a frozen dataclass
class PhotoResult:
    """The outcome for one photo, as ``--json`` prints it. Not changed once made."""

    path: Path
    scores: dict[str, float]
    labels: tuple[str, ...]
    #: tagged, untagged (no label kept), moved, copied, linked, in-place, duplicate,
    #: unsorted (to the unsorted folder), left (below threshold, --leave-unsorted),
    #: unreadable (a format this installation cannot decode; ``note`` says what to install).
    #: In a dry run it is what would happen.
    action: str
    destination: Path | None = None
    sidecar: Path | None = None
    dry_run: bool = False
    #: Per label: its score, threshold, whether it was kept and why (``--explain``, ``--json``).
    explained: dict[str, Judgement] = field(default_factory=dict)
    #: Why a photo was not read (``unreadable``: the package its format needs).
    note: str | None = None
    #: A RAW partner's JPEG: the photo it was judged (and moved) through.
    pair_of: Path | None = None
    #: sort by a dated --pattern, a photo with no date taken: ``unknown`` folders, or ``mtime`` (a guess).
    undated: str = ""

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "path": str(self.path),
            "scores": {name: round(float(p), 6) for name, p in self.scores.items()},
            "labels": list(self.labels),
            "action": self.action,
        }
        if self.destination is not None:
            record["destination"] = str(self.destination)
        if self.sidecar is not None:
            record["sidecar"] = str(self.sidecar)
        if self.note:
            record["note"] = self.note
        if self.pair_of is not None:
            record["pair_of"] = str(self.pair_of)
        if self.undated:
            record["undated"] = self.undated
        if self.dry_run:
            record["dry_run"] = True
        if self.explained:
            record["thresholds"] = {name: round(j.threshold, 6) for name, j in self.explained.items()}
            record["why"] = {name: j.why for name, j in self.explained.items()}
        return record


@dataclass
class Report:
    """Counts of a run. Filled by the pipeline, rendered by the CLI."""

    command: str
    dry_run: bool = False
    found: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    failures: list[FileFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    #: The journal of a sort run, and the error that stopped a run early (a full disk).
    journal: Path | None = None
    fatal: str | None = None
    #: Photos that went through the model, and photos whose vectors came from the cache.
    embedded: int = 0
    cached: int = 0
    #: Files of a known format this installation cannot read: format -> (count, what to install).
    unreadable: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: tag: sidecars left alone because the record shows them unchanged (no read, no write).
    unchanged: int = 0
    #: tag --into photo|both: photos that already held this run's keywords (not rewritten).
    unchanged_in_photos: int = 0
    #: Facts about the run a person should know (printed after the summary).
    notes: list[str] = field(default_factory=list)
    #: sort and tag: photos per label ("none of these" for those given none), RAW partners aside.
    per_label: Counter[str] = field(default_factory=Counter)
    #: Where the run put what it wrote (sort's destination, tag's sidecars), for its summary.
    written_to: str | None = None
    #: The review page written (``--review``).
    review: Path | None = None
    #: Paths the walk did not enter on purpose, and why (links not followed, managed folders).
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    #: Files the walk met that are not photos or videos, by extension (each is a ``left-out`` result).
    not_photos: Counter[str] = field(default_factory=Counter)
    not_photo_paths: list[Path] = field(default_factory=list)
    #: Of the files found, the video clips (the summary line counts them apart).
    videos: int = 0

    def record(self, result: PhotoResult) -> None:
        self.actions[result.action] += 1
        if self.command in ("sort", "tag") and result.pair_of is None and result.action in _JUDGED:
            for name in result.labels:
                self.per_label[name] += 1
            if not result.labels:
                self.per_label[LEFT_AS_PLANNED if result.note == LEFT_BY_PLAN else NONE_OF_THESE] += 1

    def fail(self, failure: FileFailure) -> None:
        self.failures.append(failure)

    def finish(self) -> None:
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def scored(self) -> int:
        return self.embedded + self.cached

    @property
    def rate(self) -> float:
        """Photos scored per second."""
        return self.scored / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.fatal:
            return ExitCode.ERROR
        return ExitCode.PARTIAL if self.failures else ExitCode.OK
