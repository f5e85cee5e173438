"""What a run is asked to do (:class:`RunOptions`) and what it tells its caller while it runs
(:class:`Events`); the stages never print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from clipsort.errors import FileFailure
from clipsort.run.report import PhotoResult, Report


class Events(Protocol):
    """What the pipeline tells its caller while it runs.

    An Events may also say, as ``wants_details``, whether :meth:`photo` reads each result's
    scores and per-label verdicts (see :class:`SilentEvents`); one that does not say gets them.
    """

    def discovering(self, count: int) -> None: ...
    def started(self, total: int) -> None: ...
    def advanced(self, count: int) -> None: ...
    def photo(self, result: PhotoResult) -> None: ...
    def failed(self, failure: FileFailure) -> None: ...
    def warned(self, message: str) -> None: ...


class SilentEvents:
    """Events that go nowhere (library use, tests)."""

    #: Whether :meth:`photo` reads each result's scores and per-label verdicts (an Events
    #: without this attribute gets them).
    wants_details = False

    def discovering(self, count: int) -> None:
        pass

    def started(self, total: int) -> None:
        pass

    def advanced(self, count: int) -> None:
        pass

    def photo(self, result: PhotoResult) -> None:
        pass

    def failed(self, failure: FileFailure) -> None:
        pass

    def warned(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    #: Images per model call; None: the loaded model's default for its device (32 on CPUs).
    batch_size: int | None = None
    #: Decode threads; None chooses from the CPUs this process may use.
    workers: int | None = None
    #: Images with more pixels are refused; None derives a cap from the available memory.
    max_megapixels: float | None = None
    #: RAW+JPEG pairs judged once, through the JPEG (False: every file on its own).
    pairs: bool = True
    #: JPEGs decoded by the model's device too (nvJPEG), beside the CPU threads: None on CUDA
    #: when the model allows it; True also decodes them on CPU tensors (to compare; tests).
    gpu_decode: bool | None = None
    #: ``local`` (this machine's threads) or ``ray`` (a Ray cluster: :mod:`clipsort.run.engine_ray`).
    engine: str = "local"
    #: The Ray cluster to join (``auto``, ``ray://HOST:PORT``); None starts one on this machine.
    address: str | None = None
    #: The device the user asked for, before this machine resolved it (a cluster may have GPUs).
    ray_device: str = "auto"
    #: Follow symbolic links to folders met in the walk (``--follow-links``).
    follow_links: bool = False
    #: Enter folders another application manages (``--include-managed``; never for tag and sort).
    include_managed: bool = False
    #: gitignore-style patterns of what the walk leaves out (``--exclude``; :mod:`clipsort.photos.ignore`).
    exclude: tuple[str, ...] = ()


def warn(report: Report, events: Events, message: str) -> None:
    """A warning for the run's report and for its caller now."""
    report.warnings.append(message)
    events.warned(message)


def fail(report: Report, events: Events, failure: FileFailure) -> None:
    report.fail(failure)
    events.failed(failure)
    events.advanced(1)


def wants_details(events: Events) -> bool:
    """Whether ``events`` reads each photo's scores and per-label verdicts (an Events that does not
    say gets them): 100,000 of each cost a second, made for nobody."""
    return bool(getattr(events, "wants_details", True))
