"""The local engine: photos decoded by this machine's threads (and a GPU's JPEG decoder) ahead of
the model, embedded in batches, in discovery order. The Ray engine: :mod:`clipsort.run.engine_ray`."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

import numpy as np

from clipsort import settings
from clipsort.errors import ClipsortError, FileFailure
from clipsort.model.devices import likely_batch_size
from clipsort.model.embed import Embedder, Resolved
from clipsort.photos.decode import default_max_megapixels, set_max_megapixels
from clipsort.photos.discover import ImageRef
from clipsort.run.decode_pool import DecodePool
from clipsort.run.events import Events, RunOptions, fail, warn
from clipsort.run.report import Report

#: Photos looked up in the cache at a time by the run's thread, before any goes to a decode thread.
LOOKUP_BLOCK = 256


def default_workers(device: str = "cpu") -> int:
    """Decode threads: on a CPU they share its cores with the model (4 at most: more only slowed
    the model on the 2- and 4-core machines measured); beside a GPU, every core but two (the
    run's own thread and the GPU's JPEG decoder)."""
    cpus = settings.usable_cpus()
    if device == "cpu":
        return max(1, min(4, cpus))
    return max(1, cpus - 2)


def look_ahead(batch_size: int, device: str, loading: bool) -> int:
    """Photos decoded ahead of the model: two batches (three beside a GPU, whose model waits on
    nothing else); while the model loads, four, so that the decoders work on meanwhile (beside a
    GPU the load takes seconds: torch, CUDA, open_clip; its four batches of 256 decoded photos
    hold about half a GB of pixels until the model is there)."""
    if loading:
        return batch_size * 4
    return batch_size * (2 if device == "cpu" else 3)


def local_embedded_photos(
    refs: Sequence[ImageRef],
    embedder: Embedder,
    run: RunOptions,
    report: Report,
    events: Events,
) -> Iterator[list[tuple[ImageRef, np.ndarray]]]:
    """:func:`clipsort.run.pipeline.embedded_photos` on this machine's threads: chunks of (photo, vector),
    in discovery order.

    Photos the cache holds at their path are found here, a block at a time; decode threads
    (:class:`clipsort.run.decode_pool.DecodePool`) look the others up further (same content elsewhere),
    or decode and prepare them, ahead of the model; beside a GPU, its JPEG decoder joins them once
    the model has loaded. A bounded number of photos is in flight (:func:`look_ahead`), so
    memory stays bounded. Vectors are committed to the cache batch by batch. Files that fail
    are reported and skipped.
    """

    def batch_size() -> int:
        # Known once the model has loaded (started by the first photo that needs it); until then
        # the device's likely choice, so that decoding beside a loading GPU is planned in its batches.
        if run.batch_size:
            return run.batch_size
        model = embedder.loaded
        return model.batch_size if model is not None else likely_batch_size(embedder.device)

    # The device is read where it is used: a GPU taken for granted before torch was imported may
    # turn out unusable when the model loads (Embedder._confirm_device), and the run goes on on the CPU.
    workers = run.workers or default_workers(embedder.device)
    set_max_megapixels(run.max_megapixels or default_max_megapixels(workers))
    # The device's JPEG decoder joins once the model has loaded (on CUDA unless --no-gpu-decode).
    device_decoder_pending = run.gpu_decode is not False
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
                    if run.gpu_decode or embedder.device.startswith("cuda"):
                        _start_device_decoder(pool, embedder, report, events)
                size = batch_size()
                ahead = look_ahead(size, embedder.device, embedder.loading)
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
                        if resolved.vector is None:  # a clip's frames count one by one in the batch
                            to_embed += len(resolved.times) or 1
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
            for message in embedder.warnings:
                warn(report, events, message)
            if pool.device_error is not None:
                warn(
                    report,
                    events,
                    f"the GPU's JPEG decoder stopped ({pool.device_error}); the CPU threads decoded the rest",
                )
            if pool.on_device:
                device = embedder.device
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
    warn(report, events, f"JPEGs are decoded on the CPU alone: {decoder}")
