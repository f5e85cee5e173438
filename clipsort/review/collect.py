"""What a review page is made from: every result of a run, with its scores and verdicts, taken
from the run's events on their way to the terminal."""

from __future__ import annotations

from clipsort.errors import FileFailure
from clipsort.run.events import Events
from clipsort.run.report import PhotoResult


class Collecting:
    """Events that pass everything on to ``inner`` and keep each photo's result and each failure.

    Asks for every result's scores and verdicts (a page shows them) whatever ``inner`` wants."""

    wants_details = True

    def __init__(self, inner: Events) -> None:
        self.inner = inner
        self.results: list[PhotoResult] = []
        self.failures: list[FileFailure] = []

    def discovering(self, count: int) -> None:
        self.inner.discovering(count)

    def started(self, total: int) -> None:
        self.inner.started(total)

    def advanced(self, count: int) -> None:
        self.inner.advanced(count)

    def photo(self, result: PhotoResult) -> None:
        self.results.append(result)
        self.inner.photo(result)

    def failed(self, failure: FileFailure) -> None:
        self.failures.append(failure)
        self.inner.failed(failure)

    def warned(self, message: str) -> None:
        self.inner.warned(message)
