"""Runs the stages: discover -> decode (thread pool, ahead of the model) -> embed -> score -> act.

The pipeline never prints: it reports through an :class:`Events` object (the CLI
renders those as progress, warnings and JSON lines) and fills a :class:`Report`.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from clipsort import decide, settings
from clipsort.classifier import Decisions
from clipsort.decode import default_max_megapixels, set_max_megapixels
from clipsort.decode_pool import DecodePool
from clipsort.discover import ImageRef, SideFiles, discover, pair_raw_with_jpeg
from clipsort.embed import Embedder, Resolved
from clipsort.errors import ClipsortError, FileFailure, UsageError
from clipsort.formats import Format, available, format_of
from clipsort.labels import LabelSet
from clipsort.remote import is_url
from clipsort.report import PhotoResult, Report

#: Photos looked up in the cache at a time by the run's thread, before any goes to a decode thread.
LOOKUP_BLOCK = 256


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
    #: ``local`` (this machine's threads) or ``ray`` (a Ray cluster: :mod:`clipsort.engine_ray`).
    engine: str = "local"
    #: The Ray cluster to join (``auto``, ``ray://HOST:PORT``); None starts one on this machine.
    address: str | None = None
    #: The device the user asked for, before this machine resolved it (a cluster may have GPUs).
    ray_device: str = "auto"


def default_workers(device: str = "cpu") -> int:
    """Decode threads: on a CPU they share its cores with the model (4 at most: more only slowed
    the model on the 2- and 4-core machines measured); beside a GPU, every core but two (the
    run's own thread and the GPU's JPEG decoder)."""
    cpus = settings.usable_cpus()
    if device == "cpu":
        return max(1, min(4, cpus))
    return max(1, cpus - 2)


def check_run_options(run: RunOptions, device: str) -> None:
    """Refuse options that cannot apply to ``device`` (resolved)."""
    if run.engine not in ("local", "ray"):
        raise UsageError(f"unknown engine {run.engine!r}: use local or ray")
    if run.address and run.engine != "ray":
        raise UsageError("--address is for --engine ray")
    if run.gpu_decode and run.engine == "local" and not device.startswith("cuda"):
        raise UsageError(f"--gpu-decode needs a CUDA device; the model runs on {device} here")


def look_ahead(batch_size: int, device: str, loading: bool) -> int:
    """Photos decoded ahead of the model: two batches (three beside a GPU, whose model waits on
    nothing else), twice that while the model loads, so the decoders work on meanwhile."""
    batches = 2 if device == "cpu" else 3
    return batch_size * batches * (2 if loading else 1)


# ----------------------------------------------------------------------------- stages


def check_roots(roots: Sequence[Path]) -> None:
    """Every path given must exist (a typo should not look like an empty library)."""
    missing = [str(r) for r in roots if "://" not in str(r) and not os.path.lexists(r)]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")


def find_photos(
    roots: Sequence[Path], report: Report, events: Events, side_files: SideFiles | None = None
) -> list[ImageRef]:
    """Discover every photo first: sorting must not meet the files it has just moved."""
    check_roots(roots)
    refs: list[ImageRef] = []

    def on_error(path: Path, reason: str) -> None:
        failure = FileFailure(path, reason)
        report.fail(failure)
        events.failed(failure)

    unreadable: dict[Format, list[ImageRef]] = {}
    for ref in discover(roots, on_error=on_error, side_files=side_files):
        fmt = format_of(ref.path.name)
        if fmt is not None and not available(fmt):
            unreadable.setdefault(fmt, []).append(ref)
        else:
            refs.append(ref)
        if len(refs) % 1000 == 0:
            events.discovering(len(refs))
    report.found = len(refs)
    for fmt, skipped in unreadable.items():
        note = f"{fmt.name} needs {fmt.reader}: {fmt.install}"
        report.unreadable[fmt.name] = (len(skipped), fmt.install)
        events.warned(f"{len(skipped)} {fmt.name} file(s) skipped: this installation cannot read them ({note})")
        for ref in skipped:
            record(report, events, PhotoResult(ref.path, {}, (), "unreadable", note=note))
    return refs


def embedded_photos(
    refs: Sequence[ImageRef],
    embedder: Embedder,
    run: RunOptions,
    report: Report,
    events: Events,
) -> Iterator[list[tuple[ImageRef, np.ndarray]]]:
    """Yield chunks of (photo, vector), in discovery order.

    Photos the cache holds at their path are found here, a block at a time; decode threads
    (:class:`clipsort.decode_pool.DecodePool`) look the others up further (same content elsewhere),
    or decode and prepare them, ahead of the model; beside a GPU, its JPEG decoder joins them once
    the model has loaded. A bounded number of photos is in flight (:func:`look_ahead`), so
    memory stays bounded. Vectors are committed to the cache batch by batch. Files that fail
    are reported and skipped.
    """

    if run.engine == "ray":
        from clipsort.engine_ray import ray_embedded_photos

        yield from ray_embedded_photos(refs, embedder, run, report, events)
        return

    def batch_size() -> int:
        # Known once the model has loaded (started by the first photo that needs it).
        if run.batch_size:
            return run.batch_size
        model = embedder.loaded
        return model.batch_size if model is not None else settings.DEFAULT_BATCH_SIZE

    device = embedder.device
    workers = run.workers or default_workers(device)
    set_max_megapixels(run.max_megapixels or default_max_megapixels(workers))
    # The device's JPEG decoder joins once the model has loaded (on CUDA unless --no-gpu-decode).
    device_decoder_pending = run.gpu_decode if run.gpu_decode is not None else device.startswith("cuda")
    # Photos the cache holds at the same path, size and mtime are found here, a block at a time,
    # and never go through the decode threads (a re-run of a library that is all cached).
    pending: deque[tuple[ImageRef, Future[Resolved] | Resolved]] = deque()
    looked_up: deque[tuple[ImageRef, Resolved | None]] = deque()
    refs_iter = iter(refs)

    def next_photo() -> tuple[ImageRef, Resolved | None] | None:
        if not looked_up:
            block = list(itertools.islice(refs_iter, LOOKUP_BLOCK))
            looked_up.extend(zip(block, embedder.cached(block), strict=True))
        return looked_up.popleft() if looked_up else None

    chunk: list[Resolved] = []
    to_embed = 0
    with DecodePool(embedder, workers) as pool:
        try:
            while True:
                if device_decoder_pending and embedder.loaded is not None:
                    device_decoder_pending = False
                    _start_device_decoder(pool, embedder, report, events)
                size = batch_size()
                ahead = look_ahead(size, device, embedder.loading)
                while len(pending) < ahead:
                    photo = next_photo()
                    if photo is None:
                        break
                    ref, known = photo
                    pending.append((ref, known if known is not None else pool.submit(ref)))
                if not pending and not chunk:
                    break
                if pending:
                    ref, work = pending.popleft()
                    try:
                        resolved = work if isinstance(work, Resolved) else work.result()
                    except FileFailure as failure:
                        fail(report, events, failure)
                    except (ClipsortError, KeyboardInterrupt):
                        raise
                    except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
                        fail(report, events, FileFailure(ref.path, f"cannot decode: {exc}"))
                    else:
                        chunk.append(resolved)
                        to_embed += resolved.vector is None
                if to_embed >= size or len(chunk) >= ahead * 2 or (not pending and chunk):
                    late = [r for r in chunk if r.vector is None and r.prepared is None]
                    if len(late) > 1:  # decoded while the model loaded: prepared in the decode threads
                        embedder.model()
                        pool.map(embedder.prepare_late, late)
                    vectors = embedder.finish(chunk)
                    yield [(r.ref, v) for r, v in zip(chunk, vectors, strict=True)]
                    chunk, to_embed = [], 0
        finally:
            for _, work in pending:
                if not isinstance(work, Resolved):
                    work.cancel()
            report.embedded = embedder.embedded
            report.cached = embedder.from_cache
            if pool.device_error is not None:
                message = f"the GPU's JPEG decoder stopped ({pool.device_error}); the CPU threads decoded the rest"
                report.warnings.append(message)
                events.warned(message)
            if pool.on_device:
                report.notes.append(
                    f"{pool.on_device:,} of {pool.on_device + pool.on_cpu:,} photos decoded on {device}"
                    f"{' (nvJPEG)' if device.startswith('cuda') else ''}, the rest on {workers} CPU"
                    f" thread{'s' if workers != 1 else ''}"
                )


def _start_device_decoder(pool: DecodePool, embedder: Embedder, report: Report, events: Events) -> None:
    """Share JPEGs with the model device's decoder, or say why not (when it was asked for, or
    the device is a GPU: nothing is skipped silently)."""
    decoder = embedder.jpeg_decoder()
    if not isinstance(decoder, str):
        pool.start_device_decoder(decoder)
        return
    message = f"JPEGs are decoded on the CPU alone: {decoder}"
    report.warnings.append(message)
    events.warned(message)


def fail(report: Report, events: Events, failure: FileFailure) -> None:
    report.fail(failure)
    events.failed(failure)
    events.advanced(1)


# ----------------------------------------------------------------------------- commands


def photos_to_score(
    roots: Sequence[Path], run: RunOptions, report: Report, events: Events, side_files: SideFiles | None = None
) -> tuple[list[ImageRef], dict[Path, list[ImageRef]]]:
    """The photos to embed and judge, and each JPEG's RAW partners (RAW+JPEG pairs are judged once)."""
    urls = [str(root) for root in roots if is_url(root)]
    if urls and run.engine != "ray":
        raise UsageError(f"{urls[0]}: URLs are read by the Ray engine: add --engine ray (docs/scale-out.md)")
    refs = find_photos(roots, report, events, side_files)
    partners: dict[Path, list[ImageRef]] = {}
    if run.pairs:
        refs, partners = pair_raw_with_jpeg(refs)
    if partners:
        report.notes.append(
            f"{len(partners)} RAW+JPEG pair(s) judged once, through the JPEG; the RAW files share its labels"
            " (--no-pairs treats every file on its own)"
        )
    events.started(len(refs) + sum(len(p) for p in partners.values()))
    return refs, partners


def fail_unhandled_partners(
    partners: dict[Path, list[ImageRef]], handled: set[Path], report: Report, events: Events
) -> None:
    """Name the RAW partners of the photos that failed: they are judged and moved through them."""
    for primary, raws in partners.items():
        if primary in handled:
            continue
        for raw in raws:
            reason = (
                f"not handled: it goes with its RAW+JPEG partner {primary.name}, which failed (--no-pairs: on its own)"
            )
            fail(report, events, FileFailure(raw.path, reason))


def score_all(
    refs: Sequence[ImageRef], decisions: Decisions, embedder: Embedder, run: RunOptions, report: Report, events: Events
) -> Iterator[tuple[ImageRef, np.ndarray, np.ndarray]]:
    """(photo, scores, logits) for every photo of ``refs``, in order."""
    for chunk in embedded_photos(refs, embedder, run, report, events):
        logits = decisions.scorer.logits(np.stack([v for _, v in chunk]))
        yield from zip((ref for ref, _ in chunk), decide.sigmoid(logits), logits, strict=True)


def scores_of(labels: LabelSet, row: np.ndarray) -> dict[str, float]:
    return dict(zip(labels.names, row.tolist(), strict=True))


def explained_of(decisions: Decisions, judgements: Sequence[decide.Judgement]) -> dict[str, decide.Judgement]:
    return {label.name: j for label, j in zip(decisions.labels.labels, judgements, strict=True)}


def run_index(
    roots: Sequence[Path],
    embedder: Embedder,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> Report:
    """Fill the cache with the vectors of every photo under ``roots``; tag and move nothing."""
    events = events or SilentEvents()
    report = Report("index")
    refs, partners = photos_to_score(roots, run, report, events)
    handled: set[Path] = set()
    for chunk in embedded_photos(refs, embedder, run, report, events):
        for ref, _ in chunk:
            handled.add(ref.path)
            record(report, events, PhotoResult(ref.path, {}, (), "indexed"))
            events.advanced(1)
            for partner in partners.get(ref.path, []):
                note = f"RAW+JPEG pair: embedded once, through {ref.path.name}"
                record(report, events, PhotoResult(partner.path, {}, (), "paired", note=note))
                events.advanced(1)
    fail_unhandled_partners(partners, handled, report, events)
    report.finish()
    return report


def record(report: Report, events: Events, result: PhotoResult) -> None:
    report.record(result)
    events.photo(result)
