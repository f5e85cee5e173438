"""The decode threads ahead of the model, and the device's JPEG decoder beside them.

Each photo given to :meth:`DecodePool.submit` is looked up in the cache, then decoded and
prepared, by a pool of CPU threads (Pillow releases the GIL while it decodes). When the model's
device can decode JPEGs itself (nvJPEG on a CUDA GPU, :mod:`clipsort.photos.decode_tensor`), JPEGs to
decode wait in one shared queue instead, and whoever is free takes the next: the device's
decoder a batch at a time, each CPU thread one photo. Neither share is fixed, so the split
follows both rates as they are on this machine, for these photos. Files the device's decoder
gives back (CMYK, a header it cannot read, a file it fails on) go to the CPU threads first, and
whatever they make of it is what the CPU path makes of it: no photo fails that the CPU reads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from clipsort.photos.discover import ImageRef
from clipsort.photos.formats import format_of

if TYPE_CHECKING:
    from clipsort.model.embed import Embedder, Resolved
    from clipsort.photos.decode_tensor import JpegDecoder

T = TypeVar("T")
#: Threads that read files for the device's decoder (reads overlap its decoding).
READERS = 4


class DecodePool:
    """CPU decode threads, and optionally a device JPEG decoder, fed from shared queues."""

    def __init__(self, embedder: Embedder, workers: int, cpu_takes_jpegs: bool = True) -> None:
        self.embedder = embedder
        self.workers = workers
        #: False leaves shared JPEGs to the device's decoder alone (to measure it; tests).
        self.cpu_takes_jpegs = cpu_takes_jpegs
        #: Photos decoded by the device's decoder, and by the CPU threads.
        self.on_device = 0
        self.on_cpu = 0
        #: Why the device's decoder stopped before the run ended (its photos went to the CPU threads).
        self.device_error: str | None = None
        # One lock, two conditions: CPU threads and the device's decoder wait for different work,
        # and a notification meant for one must not be used up by the other.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # CPU threads
        self._device_cond = threading.Condition(self._lock)  # the device's decoder
        self._urgent: deque[Callable[[], None]] = deque()  # work the run waits on, first
        self._given_back: deque[tuple[Resolved, Future[Resolved]]] = deque()  # JPEGs for the CPU alone
        self._new: deque[tuple[ImageRef, Future[Resolved]]] = deque()  # photos to look up
        self._jpegs: deque[tuple[Resolved, Future[Resolved]]] = deque()  # JPEGs for whoever is free
        self._closed = False
        self._decoder: JpegDecoder | None = None
        self._threads = [
            threading.Thread(target=self._cpu_loop, name=f"clipsort-decode-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- the run's side ------------------------------------------------------------------------
    def submit(self, ref: ImageRef) -> Future[Resolved]:
        future: Future[Resolved] = Future()
        with self._cond:
            self._new.append((ref, future))
            self._cond.notify()
        return future

    def map(self, function: Callable[[T], Any], items: Sequence[T]) -> None:
        """Run ``function`` on every item in the CPU threads, before any other work; wait for all."""
        futures: list[Future[Any]] = []
        with self._cond:
            for item in items:
                future: Future[Any] = Future()
                # True: a result that is not None, so that _into sets the future.
                self._urgent.append(_into(future, lambda x: function(x) or True, item))
                futures.append(future)
            self._cond.notify_all()
        for future in futures:
            future.result()

    @property
    def device_decoding(self) -> bool:
        return self._decoder is not None

    def start_device_decoder(self, decoder: JpegDecoder) -> None:
        """From now on JPEGs to decode are shared with ``decoder`` (a thread of its own)."""
        if self._decoder is not None:
            return
        self._decoder = decoder
        thread = threading.Thread(target=self._device_loop, args=(decoder,), name="clipsort-jpeg", daemon=True)
        self._threads.append(thread)
        thread.start()

    def close(self) -> None:
        """Stop the threads once their current work is done; photos not started are dropped."""
        with self._cond:
            self._closed = True
            dropped = [f for _, f in self._new] + [f for _, f in self._jpegs] + [f for _, f in self._given_back]
            self._new.clear()
            self._jpegs.clear()
            self._given_back.clear()
            self._cond.notify_all()
            self._device_cond.notify_all()
        for future in dropped:
            future.cancel()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- CPU threads ---------------------------------------------------------------------------
    def _cpu_loop(self) -> None:
        while True:
            with self._cond:
                while not (
                    self._closed
                    or self._urgent
                    or self._given_back
                    or self._new
                    or (self._jpegs and self.cpu_takes_jpegs)
                ):
                    self._cond.wait()
                if self._urgent:
                    task = self._urgent.popleft()
                elif self._closed:
                    return
                elif self._given_back:
                    resolved, future = self._given_back.popleft()
                    if future.done():  # decoded already, before the device's decoder broke
                        continue
                    task = _into(future, self._decode_on_cpu, resolved)
                elif self._new:
                    ref, future = self._new.popleft()
                    if not future.set_running_or_notify_cancel():
                        continue
                    task = _into(future, self._look_up, ref, future)
                else:
                    resolved, future = self._jpegs.popleft()
                    task = _into(future, self._decode_on_cpu, resolved)
            task()

    def _look_up(self, ref: ImageRef, future: Future[Resolved]) -> Resolved | None:
        """The photo found or decoded; None when it waits in the shared queue (whoever decodes it
        sets its future)."""
        resolved = self.embedder.lookup(ref)
        if resolved.vector is not None:
            return resolved
        fmt = format_of(ref.path.name)
        if self._decoder is not None and fmt is not None and fmt.name == "JPEG":
            with self._lock:
                self._jpegs.append((resolved, future))
                self._device_cond.notify()
                if self.cpu_takes_jpegs:
                    self._cond.notify()
            return None
        return self._decode_on_cpu(resolved)

    def _decode_on_cpu(self, resolved: Resolved) -> Resolved:
        decoded = self.embedder.decode(resolved)
        with self._cond:
            self.on_cpu += 1
        return decoded

    # -- the device's decoder ------------------------------------------------------------------
    def _take(self, count: int, wait: bool) -> list[tuple[Resolved, Future[Resolved]]]:
        with self._lock:
            while wait and not self._jpegs and not self._closed:
                self._device_cond.wait()
            taken: list[tuple[Resolved, Future[Resolved]]] = []
            while self._jpegs and len(taken) < count:
                taken.append(self._jpegs.popleft())
            return taken

    def _device_loop(self, decoder: JpegDecoder) -> None:
        from clipsort.photos.decode_tensor import read_jpeg

        held: list[tuple[Resolved, Future[Resolved]]] = []
        try:
            with ThreadPoolExecutor(READERS, thread_name_prefix="clipsort-read") as readers:

                def start(batch: list[tuple[Resolved, Future[Resolved]]]) -> list[Future[Any]]:
                    return [readers.submit(read_jpeg, resolved.ref.path) for resolved, _ in batch]

                batch = self._take(decoder.batch, wait=True)
                reads = start(batch)
                while batch:
                    following = self._take(decoder.batch, wait=False)  # read while this batch decodes
                    held = batch + following
                    following_reads = start(following)
                    self._decode_on_device(decoder, batch, [r.result() for r in reads])
                    held = following
                    if not following:
                        following = self._take(decoder.batch, wait=True)
                        held = following
                        following_reads = start(following)
                    batch, reads = following, following_reads
                held = []
        except Exception as exc:  # noqa: BLE001 - the decoder broke: the CPU threads take everything
            self.device_error = f"{type(exc).__name__}: {exc}"
        finally:  # the decoder broke (or the run ends): the CPU threads take everything from now on
            with self._lock:
                self._decoder = None
                self._given_back.extend(held)
                self._given_back.extend(self._jpegs)
                self._jpegs.clear()
                self._cond.notify_all()

    def _decode_on_device(
        self, decoder: JpegDecoder, batch: list[tuple[Resolved, Future[Resolved]]], files: list[Any]
    ) -> None:
        readable = [i for i, file in enumerate(files) if file is not None]
        results = decoder.decode([files[i] for i in readable])  # raising: the loop hands the batch back
        decoded: dict[int, Any] = {i: r for i, r in zip(readable, results, strict=True) if r is not None}
        back: list[tuple[Resolved, Future[Resolved]]] = []
        for i, (resolved, future) in enumerate(batch):
            if i in decoded:
                resolved.prepared, resolved.phash = decoded[i]
                future.set_result(resolved)
            else:
                back.append((resolved, future))
        with self._cond:
            self.on_device += len(decoded)
            self._given_back.extend(back)
            self._cond.notify_all()


def _into(future: Future[Any], function: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """A task: ``function(*args)`` into ``future`` (a running one), unless it returns None, handing
    the future on to whoever finishes the work."""

    def task() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - the run's thread raises it
            future.set_exception(exc)
        else:
            if result is not None:
                future.set_result(result)

    return task
