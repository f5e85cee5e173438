"""Vectors for photos and prompts: from the cache when it has them, from the model when not.

The model is loaded only when something must really be embedded, so a run over
an unchanged library, or with a new label file whose prompts are cached, never
imports torch. Every vector goes through float16 (the cache's format) before it
is scored, so results are the same whether a vector was cached or not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort.errors import DecodeError, ModelError
from clipsort.model import clip_frames
from clipsort.model.calibration import UNRELATED_FACT, plain_vectors, unrelated_level_of
from clipsort.model.devices import confirm_device, likely_device, resolve_device
from clipsort.model.model_files import embed_dim, identity_version, model_identity, sticky_precision
from clipsort.model.model_spec import ModelSpec
from clipsort.photos.discover import ImageRef
from clipsort.photos.location import fingerprint_before_decoding
from clipsort.photos.phash import perceptual_hash
from clipsort.store.cache import EmbeddingCache, as_stored

if TYPE_CHECKING:
    from clipsort.model.model_spec import LoadedModel as ClipModel


@dataclass
class Resolved:
    """A photo on its way to a vector: known already (``vector``), or ``prepared`` pixels to embed."""

    ref: ImageRef
    source: str  #: "cache" (same path, size, mtime), "alias" (same content elsewhere), or "decode"
    fingerprint: bytes = b""
    vector: np.ndarray | None = None
    prepared: Any = None
    #: Decoded while the model was still loading (short side at least ``decoded_for``), prepared later.
    picture: Any = None
    decoded_for: int = 0
    #: The photo's perceptual hash (:mod:`clipsort.photos.phash`), when it was decoded or its content known.
    phash: int | None = None
    #: A clip's frames' times in seconds (empty for a photo); ``picture`` and ``prepared`` are then
    #: lists, one per frame, and its frames' vectors are kept (:mod:`clipsort.model.clip_frames`).
    times: tuple[float, ...] = ()
    frame_vectors: np.ndarray | None = None


class Embedder:
    """Gives vectors for photos and prompts, loading the model on first real need. Thread-safe :meth:`resolve`."""

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "auto",
        cache: EmbeddingCache | None = None,
        precision: str = "auto",
        on_load: Callable[[ClipModel], None] | None = None,
        loader: Callable[[ModelSpec, str, str], ClipModel] | None = None,
    ) -> None:
        self.spec = spec
        self.cache = cache
        # Device and precision are settled before anything is looked up: int8 vectors differ
        # slightly from float ones and are cached apart, so the cache must know which it serves.
        # Where CUDA is all but certain, torch confirms it only when it loads with the model
        # (devices.likely_device): photos are found and decoded meanwhile.
        likely = likely_device(device)
        self.device = likely if likely is not None else resolve_device(device)
        self._unconfirmed = device if likely is not None and likely != "cpu" else None
        self.precision = sticky_precision(spec, self.device, precision, cache)
        #: What the run should be told about where the model ended up (see :meth:`_confirm_device`).
        self.warnings: list[str] = []
        self._on_load = on_load or (lambda model: None)
        self._loader = loader
        self._model: ClipModel | None = None
        self._registered = False  # the cache knows the loaded model (see _register)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._version = identity_version(self.precision)
        self.identity = model_identity(spec, self._version)
        self._model_id: int | None = None
        if cache is not None and self.identity is not None:
            self._model_id = cache.model_id(self.identity, spec.display)
            cache.expect_dimension(self._model_id, embed_dim(spec))
        #: Photos whose vectors came from the cache (same file or same content), and photos embedded.
        self.from_cache = 0
        self.embedded = 0
        self._loading: threading.Thread | None = None
        self._load_error: BaseException | None = None
        self._size_hint: int | None = None
        self._size_hint_known = False
        self._unrelated: float | None = None
        self._pictures_known = False
        #: Given each photo decoded on the CPU, upright, as it was decoded (path, picture): a
        #: review page's thumbnails are made from it. Called in the decode threads.
        self.on_picture: Callable[[Path, Any], None] | None = None

    @property
    def name(self) -> str:
        return self.spec.display

    @property
    def loaded(self) -> ClipModel | None:
        return self._model

    @property
    def loading(self) -> bool:
        """The model is being loaded in the background (see :meth:`resolve`)."""
        return self._model is None and self._loading is not None and self._loading.is_alive()

    def cache_model_id(self) -> int:
        """The cache's number for this model's vectors (a Hub model not downloaded yet is loaded first:
        it cannot be named before). Needs a cache."""
        if self.cache is None:
            raise ModelError("no embedding cache")
        if self._model_id is None:
            self.model()
        assert self._model_id is not None
        return self._model_id

    def model(self) -> ClipModel:
        """The loaded model (loaded now if it was not)."""
        with self._lock:
            if self._model is None:
                if self._load_error is not None:  # the background load failed: the same error here
                    raise self._load_error
                try:
                    self._load()
                except BaseException as exc:
                    self._load_error = exc
                    raise
            assert self._model is not None
            if not self._registered and threading.current_thread() is not self._loading:
                self._register(self._model)
            return self._model

    def _load(self) -> None:
        if self._unconfirmed is not None:
            self._confirm_device(self._unconfirmed)
        if self._loader is not None:
            model = self._loader(self.spec, self.device, self.precision)
        else:
            from clipsort.model.loading import load_model

            model = load_model(self.spec, self.device, self.precision)
        self._model = model
        self._on_load(model)

    def _confirm_device(self, requested: str) -> None:
        """Ask torch about the device taken for CUDA before it was imported (:func:`confirm_device`)."""
        self._unconfirmed = None
        self.device, self.precision, warning = confirm_device(requested, self.device, self.precision)
        if warning:
            self.warnings.append(warning)

    def _register(self, model: ClipModel) -> None:
        """Tell the cache about the model just loaded. Never in the loading thread: a run that
        ends before the model has loaded (every photo failed) closes its cache meanwhile."""
        if self.cache is not None:
            if self.identity is None:  # a Hub model downloaded just now
                self.identity = model_identity(self.spec, self._version)
                if self.identity is None:
                    raise ModelError(f"cannot identify model {self.spec.display} for the cache")
                self._model_id = self.cache.model_id(self.identity, self.spec.display)
                self.cache.expect_dimension(self._model_id, embed_dim(self.spec))
            assert self._model_id is not None
            self.cache.set_logit_scale(self._model_id, model.logit_scale)
        self._registered = True

    def _start_loading(self) -> None:
        """Load the model in a thread of its own, so that decoding goes on meanwhile."""
        with self._start_lock:
            if self._loading is None and self._model is None:
                self._loading = threading.Thread(target=self._load_quietly, name="clipsort-model", daemon=True)
                self._loading.start()

    def _load_quietly(self) -> None:
        try:
            self.model()
        except BaseException:  # noqa: BLE001 - kept in _load_error; model() raises it in the run's thread
            pass

    def _decode_size_hint(self) -> int | None:
        """The model's input size read from its config files, before the model is loaded."""
        with self._start_lock:
            if not self._size_hint_known:
                from clipsort.model.model_files import image_size_hint

                self._size_hint = image_size_hint(self.spec)
                self._size_hint_known = True
            return self._size_hint

    def logit_scale(self) -> float:
        if self.cache is not None and self._model_id is not None:
            cached = self.cache.logit_scale(self._model_id)
            if cached is not None:
                return cached
        return self.model().logit_scale

    def unrelated_level(self) -> float:
        """The model's *unrelated level* (docs/scoring.md), measured once per model and kept in the
        cache, so that scoring from the cache needs no model.

        It compares plain pictures with everyday prompts. The pictures' vectors are embedded
        (and cached) beside the first photos a run embeds, so a later relabel measures it with
        the text tower alone.
        """
        if self._unrelated is not None:
            return self._unrelated
        if self.cache is not None and self._model_id is not None:
            cached = self.cache.model_fact(self._model_id, UNRELATED_FACT)
            if cached is not None and -1.0 <= cached <= 1.0:  # a cosine: anything else is damage
                self._unrelated = cached
                return cached
        level = unrelated_level_of(self._plain_vectors(), self.text_vectors)
        self._remember_unrelated(level)
        return level

    def _plain_vectors(self) -> np.ndarray:
        """Vectors of the plain pictures (:func:`clipsort.model.calibration.plain_pictures`), from the cache
        when it has them."""
        kept = (self.cache, self._model_id) if self.cache is not None and self._model_id is not None else None
        return plain_vectors(self.model, kept)

    def _remember_unrelated(self, level: float) -> None:
        self._unrelated = level
        if self.cache is not None and self._model_id is not None:
            self.cache.set_model_fact(self._model_id, UNRELATED_FACT, level)

    # -- texts ----------------------------------------------------------------------------------
    def text_vectors(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, D) vectors of ``prompts``, from the cache where possible."""
        found: dict[str, np.ndarray] = {}
        model_id = self._model_id
        if self.cache is not None and model_id is not None:
            found = self.cache.texts(model_id, prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            vectors = as_stored(self.model().encode_texts(missing))
            found.update(zip(missing, vectors, strict=True))
            if self.cache is not None and self._model_id is not None:
                self.cache.put_texts(self._model_id, missing, vectors)
        return np.stack([found[p] for p in prompts])

    # -- images ---------------------------------------------------------------------------------
    def resolve(self, ref: ImageRef) -> Resolved:
        """Find ``ref``'s vector in the cache, or decode and prepare it. Runs in worker threads.

        Raises :class:`DecodeError` for a file that cannot be read or decoded.
        """
        resolved = self.lookup(ref)
        return resolved if resolved.vector is not None else self.decode(resolved)

    def cached(self, refs: Sequence[ImageRef]) -> list[Resolved | None]:
        """Each photo the cache holds at its path with its size and mtime (a vector, nothing to
        decode), else None (:meth:`lookup` then looks further); a few queries for many photos."""
        cache = self.cache
        if cache is None or not refs:
            return [None] * len(refs)
        vectors = cache.lookup_paths(
            self.cache_model_id(), [(ref.path, ref.size, ref.mtime_ns) for ref in refs], cache.reader()
        )
        return [None if v is None else Resolved(ref, "cache", vector=v) for ref, v in zip(refs, vectors, strict=True)]

    def lookup(self, ref: ImageRef) -> Resolved:
        """``ref``'s vector from the cache (same file, or same content elsewhere), or a photo to decode."""
        cache = self.cache
        if cache is None:
            return Resolved(ref, "decode")
        model_id = self.cache_model_id()
        reader = cache.reader()
        vector = cache.lookup_path(model_id, ref.path, ref.size, ref.mtime_ns, reader)
        if vector is not None:
            return Resolved(ref, "cache", vector=vector)
        try:
            fingerprint = fingerprint_before_decoding(ref.path)
        except OSError as exc:
            raise DecodeError(ref.path, f"cannot read: {exc.strerror or exc}") from None
        if fingerprint is None:  # an object in a store: fingerprinted where it is read
            return Resolved(ref, "decode")
        known = cache.lookup_fingerprint(model_id, fingerprint, reader)
        if known is not None:
            return Resolved(ref, "alias", fingerprint, vector=known[0], phash=known[1])
        return Resolved(ref, "decode", fingerprint)

    def decode(self, resolved: Resolved) -> Resolved:
        """Decode a photo :meth:`lookup` did not find, on the CPU, and prepare it for the model."""
        model = self._model
        if model is None:
            if self._load_error is not None:  # no use decoding photos for a model that will not load
                raise self._load_error
            hint = self._decode_size_hint()
            if hint is not None:
                # The first photo to decode starts loading the model (seconds: torch, open_clip,
                # the weights) in the background; photos are decoded meanwhile at the size the
                # model's config gives, and prepared once it is there.
                self._start_loading()
                picture = self._read(resolved, hint)
                model = self._model
                if model is None:
                    resolved.picture, resolved.decoded_for = picture, hint
                    return resolved
                if model.min_side <= hint:
                    resolved.prepared = clip_frames.prepare(model.prepare, picture)
                    return resolved
            model = self.model()
        picture = self._read(resolved, model.min_side)
        resolved.prepared = clip_frames.prepare(model.prepare, picture)
        return resolved

    def _read(self, resolved: Resolved, min_side: int) -> Any:
        """Decode a photo (a picture) or a clip (its frames' pictures, their times kept), hash it and
        hand it to :attr:`on_picture`."""
        picture, resolved.times = clip_frames.read(resolved.ref.path, min_side)
        main = clip_frames.main_picture(picture)
        resolved.phash = perceptual_hash(main)
        self._seen(resolved.ref, main)
        return picture

    def _seen(self, ref: ImageRef, picture: Any) -> None:
        """Hand a decoded picture to :attr:`on_picture` (a review page's thumbnails), in the decode thread."""
        if self.on_picture is not None:
            self.on_picture(ref.path, picture)

    def jpeg_decoder(self) -> Any:
        """The loaded model's batch JPEG decoder on its device, or a string saying why it has none."""
        model = self._model
        if model is None:
            return "the model is not loaded yet"
        factory = getattr(model, "jpeg_decoder", None)
        if factory is None:
            return "the model runs on ONNX Runtime (CPU)"
        return factory()

    def prepare_late(self, resolved: Resolved) -> None:
        """Prepare a picture decoded while the model was loading (see :meth:`decode`). Thread-safe."""
        if resolved.prepared is not None or resolved.vector is not None:
            return
        model = self.model()
        picture = resolved.picture
        if resolved.decoded_for < model.min_side:  # the config's size was not the model's: decode again
            try:
                again, times = clip_frames.read(resolved.ref.path, model.min_side)
                if times == resolved.times:
                    picture = again
            except DecodeError:  # the file changed since: the early picture still serves
                pass
        resolved.prepared = clip_frames.prepare(model.prepare, picture)
        resolved.picture = None

    def finish(self, batch: Sequence[Resolved]) -> np.ndarray:
        """Vectors for a batch in order: cached ones as they are, the rest embedded now.

        New vectors (and new paths of known content) are committed to the cache in one
        transaction, so a run killed after this keeps them.
        """
        to_embed = [r for r in batch if r.vector is None]
        if to_embed:
            model = self.model()
            for resolved in to_embed:
                self.prepare_late(resolved)
            clip_frames.spread(to_embed, as_stored(model.encode_prepared(clip_frames.flattened(to_embed))))
            for resolved in to_embed:
                resolved.prepared = None
            if (
                not self._pictures_known and self.cache is not None
            ):  # the image tower is open now: the plain pictures cost little
                self._pictures_known = True
                self._plain_vectors()
        return self.commit(batch, len(to_embed))

    def commit(self, batch: Sequence[Resolved], embedded: int) -> np.ndarray:
        """Count a batch whose every photo has its vector (``embedded`` of them new) and keep the new
        vectors, and new paths of known content, in the cache in one transaction; their vectors in order.
        The Ray engine embeds elsewhere and commits here."""
        self.embedded += embedded
        self.from_cache += len(batch) - embedded
        if self.cache is not None and self._model_id is not None:
            rows = [
                (r.ref.path, r.ref.size, r.ref.mtime_ns, r.fingerprint, r.vector, r.phash)
                for r in batch
                if r.source in ("alias", "decode") and r.vector is not None
            ]
            frames = [(r.fingerprint, r.times, r.frame_vectors) for r in batch if r.frame_vectors is not None]
            if rows:
                self.cache.put_images(self._model_id, rows, frames)
        return np.stack([r.vector for r in batch if r.vector is not None])
