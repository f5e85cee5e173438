"""The open_clip model on torch: the reference path, and the GPU path.

Used on CUDA and MPS, for ``--precision bf16`` on CPUs, to build the fast runtime's
artifact (:mod:`clipsort.model.prepare.export`) and for a model part that the fast runtime cannot run.
The only module besides :mod:`clipsort.model.prepare.export` that imports torch and open_clip.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort import settings
from clipsort.errors import ModelError, UsageError
from clipsort.model.devices import default_batch_size
from clipsort.model.model_files import read_model_config, source_for
from clipsort.model.model_spec import RANDOM, ModelSpec
from clipsort.privacy import hub_offline

if TYPE_CHECKING:
    import torch
    from PIL import Image


class ClipModel:
    """A loaded CLIP model: preprocessing, image and text encoders, all on one device.

    Encoders return L2-normalised float32 numpy arrays, whatever the device and precision.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        preprocess: Callable,
        tokenizer: Callable,
        device: str,
        origin: str,
        precision: str = "fp32",
    ):
        import torch

        self.spec = spec
        self.device = device
        self.origin = origin
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        # open_clip keeps norms and embeddings in float32 and casts the matrix weights; the
        # pixels must match the matrix weights.
        self.precision = precision
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        self.logit_scale = float(model.logit_scale.detach().float().exp().item())
        self._pil_steps, mean, std = _split_transform(preprocess, device)
        # Normalize((x / 255 - mean) / std) as one multiply-add on the uint8 pixels: 5x faster than
        # the three broadcast operations on a CPU, and the same to within float32 rounding.
        self._scale = None if std is None else 1.0 / (255.0 * std)
        self._shift = None if std is None else -mean / std
        size = model.visual.image_size
        self.image_size: int = int(max(size) if isinstance(size, (tuple, list)) else size)
        #: Fewest pixels on the short side a decoded picture needs for this model's preprocessing.
        self.min_side = self.image_size
        #: Images per model call when the user did not choose (see :func:`default_batch_size`).
        self.batch_size = default_batch_size(device)
        #: torch's CPU threads (process-wide) when the model was loaded.
        self.threads = torch.get_num_threads()
        #: Counts of work done, for reports and tests.
        self.images_encoded = 0

    @property
    def name(self) -> str:
        return self.spec.display

    @property
    def torch_module(self) -> Any:
        """open_clip's model itself (for exporting it)."""
        return self._model

    @property
    def tokenizer_object(self) -> Any:
        return self._tokenizer

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """open_clip's tokens of ``texts`` (int64, one row per text)."""
        return self._tokenizer(list(texts)).numpy()

    def describe(self) -> str:
        """Where and how it runs, for the run's first line: ``cpu (bf16, 2 threads)``."""
        if self.device == "cpu":
            return f"{self.device} ({self.precision}, {self.threads} thread{'s' if self.threads != 1 else ''})"
        return f"{self.device} ({self.precision})"

    def prepare(self, picture: Image.Image) -> torch.Tensor:
        """The model's own preprocessing of an RGB picture, up to 8-bit pixels. Thread-safe.

        open_clip's eval transform is PIL steps (resize, crop) then ToTensor and
        Normalize. The PIL steps run here, in the decode threads; the conversion to
        float and the normalisation run on the model's device in
        :meth:`encode_prepared`, so batches wait and travel as uint8 (4x smaller).
        The result is the same as open_clip's transform.
        """
        if self._pil_steps is None:
            return self._preprocess(picture)
        import torch

        pixels = np.asarray(self._pil_steps(picture).convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)

    def encode_prepared(self, batch: Sequence[torch.Tensor]) -> np.ndarray:
        """Embed prepared pictures; returns (N, D) normalised float32."""
        import torch

        with torch.inference_mode():
            pixels = self._on_device(batch)
            if pixels.dtype == torch.uint8:
                assert self._shift is not None and self._scale is not None  # prepare() made uint8
                pixels = torch.addcmul(self._shift, pixels.float(), self._scale)
            features = self._model.encode_image(pixels.to(self.dtype))
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        self.images_encoded += len(batch)
        return features.cpu().numpy()

    def _on_device(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """One tensor of the batch on the model's device; pictures prepared on the host travel
        pinned, those the JPEG decoder prepared on the device stay there."""
        import torch

        target = torch.device(self.device)
        on_host = [t.device.type == "cpu" for t in batch]
        if target.type == "cpu" or not any(on_host):
            return torch.stack(list(batch)).to(target)
        if all(on_host):
            pixels = torch.stack(list(batch))
            if target.type == "cuda":
                pixels = pixels.pin_memory()
            return pixels.to(target, non_blocking=True)
        return torch.stack([t.to(target, non_blocking=True) for t in batch])

    def encode_images(self, pictures: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare(p) for p in pictures])

    def jpeg_decoder(self) -> Any:
        """A :class:`clipsort.photos.decode_tensor.JpegDecoder` on this model's device, with its preprocessing;
        a string saying why not when the preprocessing has no tensor form."""
        from clipsort.photos.decode_tensor import JpegDecoder, TensorPreprocess

        if self._pil_steps is None:
            return "the model's preprocessing does not end in ToTensor and Normalize"
        preprocess = TensorPreprocess.of(self._pil_steps, self.min_side)
        if isinstance(preprocess, str):
            return preprocess
        return JpegDecoder(preprocess, self.device)

    def warm_up(self) -> None:
        """One small batch through the image tower: on a GPU the first call sets up its libraries
        (a second or more), which the model's loading thread can pay while photos are decoded."""
        import torch

        self.encode_prepared([torch.zeros((3, self.image_size, self.image_size), dtype=torch.uint8)])
        self.images_encoded = 0

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts; returns (N, D) normalised float32."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self._tokenizer(list(texts[start : start + batch_size])).to(self.device)
                features = self._model.encode_text(tokens)
                chunks.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks, axis=0)


def _split_transform(preprocess: Any, device: str) -> tuple[Any, Any, Any]:
    """(PIL steps, mean, std) when ``preprocess`` ends with ToTensor + Normalize, else (None, None, None)."""
    import torch
    from torchvision import transforms

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], transforms.ToTensor):
        return None, None, None
    normalize = steps[-1]
    if not isinstance(normalize, transforms.Normalize):
        return None, None, None
    mean = torch.tensor(normalize.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(normalize.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return transforms.Compose(steps[:-2]), mean, std


@contextlib.contextmanager
def _weights_taken_as_loaded() -> Iterator[None]:
    """Let the model take the loaded weights' tensors as its own (``load_state_dict(assign=True)``)
    instead of copying them into its own: for float32 on the CPU, where every loaded tensor is of
    its weight's type (a checkpoint kept in float16 is copied, and so converted, as before). The copy
    held every weight twice at once, 1.9 GB at the peak of ViT-B-32's first preparation (the
    model's own tensors, never initialised, are never touched: they take no memory)."""
    import torch

    original = torch.nn.Module.load_state_dict

    def assigning(self: Any, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        own = self.state_dict()
        alike = all(name in own and getattr(t, "dtype", None) == own[name].dtype for name, t in state_dict.items())
        return original(self, state_dict, strict=strict, assign=assign or alike)

    torch.nn.Module.load_state_dict = assigning  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.load_state_dict = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _no_random_init() -> Iterator[None]:
    """Skip the random initialisation of a model whose every weight is about to be loaded.

    open_clip loads checkpoints strictly (a missing weight is an error), so the random
    values would all be overwritten; drawing them took 1.3 s of a ViT-B-32 load on two
    cores. The ``torch.nn.init`` functions become no-ops while the model is built.
    """
    import torch

    names = [name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(torch.nn.init, name) for name in names}

    def keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    try:
        for name in names:
            setattr(torch.nn.init, name, keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


@contextlib.contextmanager
def _without_unused_packages(spec: ModelSpec) -> Iterator[None]:
    """Import open_clip without the packages this model does not use.

    open_clip imports transformers (for Hugging Face text towers and CoCa) and timm (for
    timm image towers) whenever they are installed; on a machine with both that cost 7-12 s
    of ``import open_clip``. When the model's config names neither, they are hidden while
    open_clip is first imported (it then treats them as absent), and shown again after.
    """
    if "open_clip" in sys.modules:
        yield
        return
    config = read_model_config(spec)
    text_cfg = (config or {}).get("text_cfg") or {}
    vision_cfg = (config or {}).get("vision_cfg") or {}
    hidden = []
    if config is not None and not text_cfg.get("hf_model_name") and not text_cfg.get("hf_tokenizer_name"):
        hidden.append("transformers")
    if config is not None and not vision_cfg.get("timm_model_name"):
        hidden.append("timm")
    hidden = [name for name in hidden if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import transformers" now raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def default_threads() -> int:
    """torch's CPU threads: its own choice (physical cores), but no more than the CPUs this process may use.

    torch counts the machine's cores; a process limited by ``taskset`` or a container's
    cpuset would otherwise run more threads than it has CPUs.
    """
    global _TORCH_THREADS
    if _TORCH_THREADS is None:  # torch's own choice, read before clipsort first changes it
        import torch

        _TORCH_THREADS = torch.get_num_threads()
    return max(1, min(_TORCH_THREADS, settings.usable_cpus()))


_TORCH_THREADS: int | None = None


def check_available(spec: ModelSpec) -> None:
    """Raise what :func:`load` would raise for a model that is unknown, or neither cached nor downloadable."""
    with _without_unused_packages(spec):
        source_for(spec)


def load(spec: ModelSpec, device: str, precision: str, threads: int | None = None) -> ClipModel:
    """open_clip's model ``spec`` on ``device`` (resolved) at ``precision`` (resolved; fp32, bf16 or fp16)."""
    with _without_unused_packages(spec):
        source = source_for(spec)
        if not source.downloads:
            hub_offline()  # cached: open_clip, its tokenizer and the hub never ask online
        import open_clip
    cache = str(settings.hf_cache_dir())
    import torch

    default = default_threads()  # first call: remembers torch's own choice before it is changed
    torch.set_num_threads(threads or default)
    if spec.pretrained == RANDOM:
        torch.manual_seed(0)  # the same "random" weights every run, so cached vectors stay valid
    frugal = spec.pretrained != RANDOM and device == "cpu" and precision == "fp32"
    try:
        with (
            contextlib.nullcontext() if spec.pretrained == RANDOM else _no_random_init(),
            _weights_taken_as_loaded() if frugal else contextlib.nullcontext(),
        ):
            model, _, preprocess = open_clip.create_model_and_transforms(
                source.model_name,
                pretrained=source.pretrained,
                precision=precision,
                device=device,
                cache_dir=cache,
                require_pretrained=spec.pretrained != RANDOM,
                **source.kwargs,
            )
        tokenizer = open_clip.get_tokenizer(source.model_name, cache_dir=cache)
    except (ModelError, UsageError):
        raise
    except Exception as exc:  # open_clip raises RuntimeError, ValueError, OSError, KeyError...
        raise ModelError(f"cannot load model {spec.display}: {exc}") from exc
    model.eval()
    loaded = ClipModel(spec, model, preprocess, tokenizer, device, source.origin, precision)
    if device.startswith("cuda"):
        loaded.warm_up()
    return loaded
