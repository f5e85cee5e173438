"""The Ray engine (``--engine ray``): photos embedded on a Ray cluster, vectors into this machine's cache.

The driver (this process) lists the photos and looks each up in the cache, as the local engine
does. Those it lacks go through a Ray Data pipeline:

* **decode**, Ray tasks on the cluster's CPUs: each reads its file (a local path the workers
  can see, or an fsspec URL) and decodes it with clipsort's own reduced-size decoder
  (:func:`clipsort.photos.decode.load_image`: EXIF orientation, draft decoding, every format), and
  fingerprints and hashes it. Only the reduced picture (a few hundred KB) travels on, never the
  file's bytes or a full-size picture. A file that fails is a row with its reason.
* **embed**, a pool of Ray actors that keep the model loaded (on GPUs when the cluster has
  them, two actors to a GPU; else on CPUs), batch after batch.

Results stream back to the driver in order, batch by batch, and go into the cache as the local
engine's do (one transaction a batch), so tagging, sorting, search and a later local run see
no difference. Ray retries a task whose worker died and restarts an actor that died; since
the cache keys each photo by path, a photo embedded twice is stored once. A driver that dies
loses at most the batches not yet stored: the next run finds the rest in the cache.

Ray is imported by this module only, and only when ``--engine ray`` is given.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort import settings
from clipsort.errors import ClipsortError, FileFailure, UsageError
from clipsort.photos.formats import is_video
from clipsort.privacy import (
    FORWARDED,
    TELEMETRY_OFF,
    cluster_processes_offline,
    outgoing_proxies,
    own_cluster_env,
)

if TYPE_CHECKING:
    from clipsort.model.embed import Embedder, Resolved
    from clipsort.model.model_spec import ModelSpec
    from clipsort.photos.discover import ImageRef
    from clipsort.run.events import Events, RunOptions
    from clipsort.run.report import Report

#: Environment the workers need to load the same model the same way and to read the same storage
#: (with every ``CLIPSORT_*``, ``AWS_*`` and ``FSSPEC_*`` variable): sent with each actor, since a
#: cluster's workers do not share the driver's environment.
_WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE", *FORWARDED)


class EngineError(ClipsortError):
    """Ray could not be started, joined, or finish the run."""


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'clipsort[ray]'") from None
    return ray


def connect(address: str | None) -> Any:
    """Ray, started on this machine (``address`` None) or joined (``auto``, ``ray://HOST:PORT``)."""
    if address is None and "ray" not in sys.modules:  # read by Ray when it is imported
        os.environ.update(own_cluster_env())
    ray = ray_module()
    if not ray.is_initialized():
        own: dict[str, Any] = {}
        workers_env = dict(TELEMETRY_OFF)
        starting: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if address is None:  # a cluster of clipsort's own: no usage stats, and no files left behind
            os.environ.update(own_cluster_env())
            own["_temp_dir"] = _temporary_folder()
            # on loopback: finding "this node's address" otherwise asks the route to a public address
            own["_node_ip_address"] = "127.0.0.1"
            starting = cluster_processes_offline()
            workers_env.update(outgoing_proxies())  # the photos' storage is the workers' to reach
        try:
            with starting:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    configure_logging=True,
                    runtime_env={"env_vars": workers_env},
                    **own,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise EngineError(f"cannot start or join {where}: {exc}") from None
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # rows come back in the order they went in
    return ray


def _temporary_folder() -> str:
    """A folder for the session files of a Ray clipsort starts (sockets, logs, spilled objects),
    removed when the run's process exits: Ray's own default, /tmp/ray, keeps every session's files.
    Under the system's temp folder, or /tmp where that is long: Ray's socket paths (about 80
    characters under it) must stay within the 107 bytes of a Unix socket's name."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) > 24 and os.path.isdir("/tmp"):
        base = "/tmp"
    folder = tempfile.mkdtemp(prefix="clipsort-ray-", dir=base)

    def remove() -> None:  # registered after ray.init's own shutdown handler: runs before it
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


@dataclass(frozen=True)
class Plan:
    """Where the model runs on the cluster, and how the driver's cache names its vectors."""

    device: str  #: the workers' device: cpu or cuda
    precision: str  #: the workers' precision (resolved)
    actors: int
    gpus_per_actor: float
    cpus_per_actor: float


def _uses_gpus(ray: Any, requested_device: str) -> bool:
    """The one rule: the model runs on the cluster's GPUs when it has some and the user did not ask
    for the CPU (``--device cpu``)."""
    return float(ray.cluster_resources().get("GPU", 0)) >= 1 and requested_device in ("auto", "cuda")


def plan(ray: Any, embedder: Embedder, requested_device: str) -> Plan:
    """Where the model runs: two actors to a GPU when the cluster has GPUs (one computes while the
    other's batch arrives), else one actor per 8 CPUs (the model takes its threads from its CPU
    slot; the other CPUs decode)."""
    resources = ray.cluster_resources()
    # GPUs compute float vectors: only when the driver's cache names them so (driver_choice).
    if _uses_gpus(ray, requested_device) and embedder.precision != "int8":
        return Plan("cuda", "fp16", max(1, int(float(resources.get("GPU", 0)) * 2)), 0.5, 1.0)
    cpus = float(resources.get("CPU", 1))
    # A one-CPU cluster: the actor takes half, so that decoding can run beside it.
    return Plan("cpu", embedder.precision, max(1, int(cpus) // 8), 0.0, 1.0 if cpus >= 2 else 0.5)


def driver_choice(address: str | None, device: str, precision: str) -> tuple[str, str]:
    """(device, precision) for the driver's embedder: the one that names the vectors the workers
    will compute (float vectors from GPUs are cached with float ones from CPUs)."""
    ray = connect(address)
    return ("cpu", "fp32") if _uses_gpus(ray, device) else ("cpu", precision)


# ----------------------------------------------------------------------------- the stages (on workers)


def decode_batch(batch: dict[str, np.ndarray], min_side: int, max_pixels: int, env: dict[str, str]) -> dict[str, Any]:
    """Decode stage: each photo read, decoded at reduced size, fingerprinted and hashed. One file
    that fails is a row with its reason, never a failed task (Ray would abort the whole run)."""
    os.environ.update(env)
    from clipsort.errors import DecodeError
    from clipsort.photos.decode import load_image, set_max_megapixels
    from clipsort.photos.location import file_fingerprint
    from clipsort.photos.phash import perceptual_hash
    from clipsort.photos.remote import local_copy

    set_max_megapixels(max_pixels / 1_000_000)
    pixels: list[np.ndarray] = []
    fingerprints, hashes, errors = [], [], []
    for where in batch["path"]:
        fingerprint, picture, error = b"", None, ""
        try:
            with local_copy(str(where)) as path:
                fingerprint = file_fingerprint(path)
                picture = load_image(path, min_side=min_side)
        except DecodeError as failure:
            error = failure.reason
        except Exception as exc:  # noqa: BLE001 - storage errors (OSError, botocore's, ...)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            error = f"cannot read: {reason}"
        # A failed photo is a row with its reason and placeholder values.
        pixels.append(np.zeros((1, 1, 3), np.uint8) if picture is None else np.asarray(picture.convert("RGB")))
        fingerprints.append(fingerprint if picture is not None else b"")
        hashes.append(0 if picture is None else perceptual_hash(picture))
        errors.append(error)
    out = np.empty(len(pixels), dtype=object)
    out[:] = pixels
    return {
        "path": batch["path"],
        "pixels": out,
        "fingerprint": np.array(fingerprints, dtype=object),
        "phash": np.array(hashes, dtype=np.int64),
        "error": np.array(errors, dtype=object),
    }


class EmbedActor:
    """Embed stage: the model, loaded once per actor, on its device (see :func:`embed_actor`)."""

    settings: tuple[ModelSpec, str, str, dict[str, str]]

    def __init__(self) -> None:
        spec, device, precision, env = self.settings
        os.environ.update(env)
        from clipsort.model.loading import load_model

        self.model = load_model(spec, device, precision)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        from clipsort.store.cache import as_stored

        ok = [i for i, error in enumerate(batch["error"]) if not error]
        vectors = np.zeros((len(batch["error"]), 1), dtype=np.float16)
        if ok:
            prepared = [self.model.prepare(Image.fromarray(batch["pixels"][i])) for i in ok]
            found = as_stored(self.model.encode_prepared(prepared))
            vectors = np.zeros((len(batch["error"]), found.shape[1]), dtype=np.float16)
            vectors[ok] = found
        return {
            "path": batch["path"],
            "vector": vectors,
            "fingerprint": batch["fingerprint"],
            "phash": batch["phash"],
            "error": batch["error"],
        }


def embed_actor(spec: ModelSpec, device: str, precision: str, env: dict[str, str]) -> type[EmbedActor]:
    """:class:`EmbedActor` with its settings in the class itself: no constructor arguments, which Ray
    would keep in its object store, where a restarted actor could fail to find them."""
    return type("EmbedActor", (EmbedActor,), {"settings": (spec, device, precision, env)})


# ----------------------------------------------------------------------------- the driver


def ray_embedded_photos(
    refs: Sequence[ImageRef],
    embedder: Embedder,
    run: RunOptions,
    report: Report,
    events: Events,
) -> Iterator[list[tuple[ImageRef, np.ndarray]]]:
    """The Ray engine's :func:`clipsort.run.pipeline.embedded_photos`: chunks of (photo, vector),
    those the cache holds first, then the cluster's, in the order of ``refs``."""
    from clipsort.model.model_files import image_size_hint
    from clipsort.photos.decode import max_pixels
    from clipsort.run.engine_local import default_workers
    from clipsort.run.events import fail

    ray = connect(run.address)
    size = run.batch_size or settings.DEFAULT_BATCH_SIZE
    todo: list[Resolved] = []
    known: list[Resolved] = []
    # Photos the cache holds at their path: a few queries for many (Embedder.cached); the others
    # are looked up further (same content elsewhere) by a pool of threads, which fingerprint them.
    by_path = embedder.cached(refs)
    with ThreadPoolExecutor(default_workers()) as pool:
        further = pool.map(_lookup(embedder), [ref for ref, hit in zip(refs, by_path, strict=True) if hit is None])
        for hit in by_path:
            outcome = hit if hit is not None else next(further)
            if isinstance(outcome, FileFailure):
                fail(report, events, outcome)
            elif outcome.vector is not None:
                known.append(outcome)
            else:
                todo.append(outcome)
    try:
        for start in range(0, len(known), size):
            chunk = known[start : start + size]
            vectors = embedder.commit(chunk, 0)
            yield [(r.ref, v) for r, v in zip(chunk, vectors, strict=True)]
        if not todo:
            return
        where = plan(ray, embedder, run.ray_device)
        min_side = image_size_hint(embedder.spec) or embedder.model().min_side
        env = {
            name: value
            for name, value in os.environ.items()
            if name in _WORKER_ENV or name.startswith(("CLIPSORT_", "AWS_", "FSSPEC_"))
        }
        dataset = ray.data.from_items([{"path": str(r.ref.path)} for r in todo], override_num_blocks=_blocks(todo))
        with warnings.catch_warnings():  # max_retries has no named parameter in Ray < 2.64 (pinned below it)
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = dataset.map_batches(
                decode_batch,
                batch_size=8,
                fn_kwargs={"min_side": min_side, "max_pixels": max_pixels(), "env": env},
                # Half a CPU each: a decode waits on storage as much as it computes. Being unlike
                # the actors' CPU slot also keeps Ray from fusing decoding into the model's actors,
                # which would leave the other CPUs idle.
                num_cpus=0.5,
                # A worker that died decoding is retried, three times, not forever (Ray Data's
                # default): a file that crashes its decoder must not stop the run for good.
                max_retries=3,
            )
        dataset = dataset.map_batches(
            embed_actor(embedder.spec, where.device, where.precision, env),
            batch_size=size,
            compute=ray.data.ActorPoolStrategy(size=where.actors),
            num_gpus=where.gpus_per_actor or None,
            num_cpus=where.cpus_per_actor,
        )  # Ray Data restarts a pool's actor that died, and retries its batches, without limit
        cluster = ray.cluster_resources()
        report.notes.append(
            f"embedded on Ray: {where.actors} model actor{'s' if where.actors != 1 else ''} on {where.device}"
            f" ({where.precision}); the cluster has {int(cluster.get('CPU', 0))} CPUs,"
            f" {int(cluster.get('GPU', 0))} GPUs"
        )
        position = clips = 0
        for batch in dataset.iter_batches(batch_size=size, batch_format="numpy"):
            done: list[Resolved] = []
            for path, vector, fingerprint, phash, error in zip(
                batch["path"], batch["vector"], batch["fingerprint"], batch["phash"], batch["error"], strict=True
            ):
                resolved = todo[position]
                position += 1
                if str(resolved.ref.path) != str(path):  # preserve_order is set: a mismatch is a bug
                    raise EngineError(f"the cluster returned {path} where {resolved.ref.path} was expected")
                if error:
                    fail(report, events, FileFailure(resolved.ref.path, str(error)))
                    continue
                resolved.vector = np.asarray(vector, dtype=np.float16)
                resolved.fingerprint = bytes(fingerprint)
                resolved.phash = int(phash)
                if is_video(resolved.ref.path.name):
                    # judged by its middle frame here (decode_batch's one picture), and not cached:
                    # the local engine's vector of a clip is its frames' mean, and it keeps them
                    resolved.source = "middle frame"
                    clips += 1
                done.append(resolved)
            if done:
                vectors = embedder.commit(done, len(done))
                yield [(r.ref, v) for r, v in zip(done, vectors, strict=True)]
        if clips:
            report.notes.append(
                f"{clips} video clip(s) judged by their middle frame on Ray, and not cached:"
                " the local engine judges a clip by its frames"
            )
    except ClipsortError:
        raise
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except Exception as exc:  # noqa: BLE001 - Ray's own errors (a task failed past its retries, ...)
        raise EngineError(f"the Ray run stopped: {type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        report.embedded = embedder.embedded
        report.cached = embedder.from_cache


def _lookup(embedder: Embedder) -> Any:
    def lookup(ref: ImageRef) -> Resolved | FileFailure:
        try:
            return embedder.lookup(ref)
        except FileFailure as failure:
            return failure

    return lookup


def _blocks(todo: Sequence[Any]) -> int:
    """Blocks of the input: small enough that every worker has work, large enough to be cheap."""
    return max(1, min(len(todo) // 8, 1000))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
