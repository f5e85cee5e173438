"""The CLIP model: the only module that imports torch and open_clip.

Model specifiers, as open_clip takes them:

* ``ViT-B-32`` with a pretrained tag (``laion2b_s34b_b79k``) or a checkpoint file;
* ``hf-hub:org/repo``;
* ``local-dir:PATH`` or a plain folder in that layout (``open_clip_config.json``
  holding ``model_cfg``, plus the weights, e.g. ``open_clip_model.safetensors``).

Weights are cached under :func:`clipsort.settings.hf_cache_dir`. Loading looks in
the cache *before* touching the network, so a cached model loads offline at once,
and a missing one fails fast with a message saying where to put it
(:class:`~clipsort.errors.ModelUnavailableError`) instead of retrying for a minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from clipsort import settings
from clipsort.errors import DeviceError, ModelError, ModelUnavailableError, UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

# torch's CPU kernels run on GNU OpenMP, whose threads spin at every barrier by default.
# Beside clipsort's decode threads that spinning takes the cores the decoders need;
# passive waiting measured +14% images/s end to end on 2 cores (docs/performance.md).
# It only takes effect if set before torch is first imported, and a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
CONFIG_NAME = "open_clip_config.json"
HF_HOST = "huggingface.co"
#: ``--pretrained none``: random weights, for speed measurements only.
RANDOM = "none"


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for, parsed. ``kind`` is ``builtin``, ``hf-hub`` or ``local-dir``."""

    kind: str
    name: str
    pretrained: str | None = None

    @property
    def display(self) -> str:
        if self.kind == "builtin":
            return f"{self.name} ({'random weights' if self.pretrained == RANDOM else self.pretrained})"
        if self.kind == "hf-hub":
            return HF_PREFIX + self.name
        return LOCAL_PREFIX + self.name

    @property
    def folder_name(self) -> str:
        """Name of the folder under :func:`settings.models_dir` that holds this model for offline use."""
        if self.kind == "builtin":
            return f"{self.name}__{Path(self.pretrained or RANDOM).name}"
        return self.name.replace("/", "__")


def parse_spec(model: str, pretrained: str | None = None) -> ModelSpec:
    """Parse a ``--model`` value (and ``--pretrained``) without importing torch."""
    model = model.strip()
    if not model:
        raise UsageError("--model is empty")
    if model.startswith(HF_PREFIX):
        repo = model[len(HF_PREFIX) :].strip("/")
        if repo.count("/") != 1:
            raise UsageError(f"{model!r}: expected hf-hub:ORG/REPO")
        return ModelSpec("hf-hub", repo)
    if model.startswith(LOCAL_PREFIX):
        folder = Path(model[len(LOCAL_PREFIX) :]).expanduser()
        return ModelSpec("local-dir", str(folder.resolve()))
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return ModelSpec("local-dir", str(candidate.resolve()))
    if pretrained and pretrained.lower() == RANDOM:
        pretrained = RANDOM
    elif pretrained and ("/" in pretrained or os.sep in pretrained or Path(pretrained).suffix):
        pretrained = str(Path(pretrained).expanduser().resolve())
    return ModelSpec("builtin", model.replace("/", "-"), pretrained)


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """Arguments for open_clip.create_model_and_transforms."""

    model_name: str
    pretrained: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Describes where the weights come from (shown to the user).
    origin: str = ""


def _check_local_dir(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise ModelError(
            f"{folder} is not an open_clip model folder: {CONFIG_NAME} is missing "
            "(it needs open_clip_config.json with 'model_cfg', and the weights, e.g. open_clip_model.safetensors)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{config}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "model_cfg" not in data:
        raise ModelError(f"{config}: no 'model_cfg' entry")
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth", ".pt")]
    if not weights:
        raise ModelError(f"{folder}: no weights file (expected open_clip_model.safetensors)")


def _reachable(url: str, timeout: float = 4.0) -> bool:
    """Whether the host of ``url`` answers on 443: a quick test before a download that would retry for a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(url).hostname or HF_HOST
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hf_cached(repo: str, filenames: Sequence[str]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, cache_dir=str(settings.hf_cache_dir()))
        if isinstance(found, str):
            return found
    return None


def _unavailable(spec: ModelSpec, url: str, looked: Sequence[Path]) -> ModelUnavailableError:
    folder = settings.models_dir() / spec.folder_name
    places = " and ".join(str(p) for p in looked)
    return ModelUnavailableError(
        f"model {spec.display} is not cached and cannot be downloaded (no connection to {urlparse(url).hostname}). "
        f"Looked in {places}. For offline use, download {url} (open_clip_config.json and the weights file) on a "
        f"connected machine and copy that folder to {folder}, or pass --model local-dir:FOLDER."
    )


def _source_for(spec: ModelSpec) -> _Source:
    import open_clip

    hf_dir = settings.hf_cache_dir()
    offline_folder = settings.models_dir() / spec.folder_name
    if spec.kind == "local-dir":
        folder = Path(spec.name)
        _check_local_dir(folder)
        return _Source(LOCAL_PREFIX + str(folder), None, origin=str(folder))

    if spec.kind == "hf-hub":
        config = _hf_cached(spec.name, [CONFIG_NAME])
        if config is not None:
            snapshot = Path(config).parent
            if any(
                (snapshot / name).exists() for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
            ):
                return _Source(LOCAL_PREFIX + str(snapshot), None, origin=f"cache {snapshot}")
        if (offline_folder / CONFIG_NAME).is_file():
            _check_local_dir(offline_folder)
            return _Source(LOCAL_PREFIX + str(offline_folder), None, origin=str(offline_folder))
        url = f"https://{HF_HOST}/{spec.name}"
        if not _reachable(url):
            raise _unavailable(spec, url, [hf_dir, offline_folder])
        return _Source(HF_PREFIX + spec.name, None, origin=f"download from {url}")

    # built-in architecture
    if spec.name not in open_clip.list_models():
        raise ModelError(
            f"unknown model {spec.name!r}: run 'clipsort models' for the architectures and tags open_clip knows, "
            "or pass hf-hub:ORG/REPO or local-dir:FOLDER"
        )
    if spec.pretrained is None:
        raise UsageError(
            f"model {spec.name} needs --pretrained: a tag ({_tags(spec.name)}), a checkpoint file, "
            "or 'none' for random weights"
        )
    if spec.pretrained == RANDOM:
        return _Source(spec.name, None, origin="random weights")
    if os.path.isfile(spec.pretrained):
        return _Source(spec.name, spec.pretrained, origin=spec.pretrained)
    tag_cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if not tag_cfg:
        if os.sep in spec.pretrained or Path(spec.pretrained).suffix:
            raise ModelError(f"checkpoint file {spec.pretrained} does not exist")
        raise ModelError(f"unknown pretrained tag {spec.pretrained!r} for {spec.name} (known: {_tags(spec.name)})")
    if (offline_folder / CONFIG_NAME).is_file():
        _check_local_dir(offline_folder)
        return _Source(LOCAL_PREFIX + str(offline_folder), None, origin=str(offline_folder))
    cached, url = _cached_tag_weights(tag_cfg)
    if cached is not None:
        # Load the cached file directly: open_clip would otherwise ask the Hub first.
        return _Source(spec.name, cached, {"force_preprocess_cfg": dict(tag_cfg)}, origin=f"cache {cached}")
    if not _reachable(url):
        raise _unavailable(spec, url, [hf_dir, offline_folder])
    return _Source(spec.name, spec.pretrained, origin=f"download from {url}")


def _tags(arch: str) -> str:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    return ", ".join(tags) if tags else "none published"


def _cached_tag_weights(tag_cfg: dict[str, Any]) -> tuple[str | None, str]:
    """(path of the cached weights or None, where they would be downloaded from)."""
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives

    hub = tag_cfg.get("hf_hub") or ""
    if hub:
        repo, filename = os.path.split(hub)  # "org/repo/" means the default file name
        filename = filename or HF_WEIGHTS_NAME
        names = [*_get_safe_alternatives(filename), filename]
        return _hf_cached(repo, names), f"https://{HF_HOST}/{repo}"
    url = tag_cfg.get("url") or ""
    if url:
        target = settings.hf_cache_dir() / os.path.basename(urlparse(url).path)
        return (str(target) if target.is_file() else None), url
    return None, f"https://{HF_HOST}"


# ----------------------------------------------------------------------------- identity


def model_identity(spec: ModelSpec, decode_version: str) -> str | None:
    """What makes this model's vectors this model's, without importing torch.

    Architecture + pretrained tag; or a hash of the weights file (and of the config,
    which holds the preprocessing) for checkpoint files, local folders and Hub
    repos in the download cache. None when the model must be downloaded first.
    """
    from clipsort.cache import sample_hash

    if spec.kind == "builtin":
        if spec.pretrained and os.path.isfile(spec.pretrained):
            return f"{spec.name}|file:{sample_hash(Path(spec.pretrained))}|{decode_version}"
        return f"{spec.name}|{spec.pretrained}|{decode_version}"
    return _folder_identity(_config_folder(spec), decode_version)


def _config_folder(spec: ModelSpec) -> Path:
    """Where a Hub or folder model's ``open_clip_config.json`` is, or would be, on this machine.

    Hub models: the download cache's snapshot when it has the config, else the offline
    folder under :func:`settings.models_dir`.
    """
    if spec.kind == "hf-hub":
        cached = _hf_cached(spec.name, [CONFIG_NAME])
        return Path(cached).parent if cached else settings.models_dir() / spec.folder_name
    return Path(spec.name)


def image_size_hint(spec: ModelSpec) -> int | None:
    """The model's input size as its config files give it, without importing torch or open_clip.

    Lets photos be decoded at the right size while the model is still loading. None when
    the config cannot be found or read; a hint below the loaded model's real size only
    costs a second decode of the photos decoded early (see ``Embedder.resolve``).
    """
    try:
        if spec.kind == "builtin":
            import importlib.util

            found = importlib.util.find_spec("open_clip")  # finds the package without running it
            if found is None or not found.submodule_search_locations:
                return None
            config_file = Path(next(iter(found.submodule_search_locations))) / "model_configs" / f"{spec.name}.json"
            model_cfg = json.loads(config_file.read_text(encoding="utf-8"))
            preprocess_cfg: dict[str, Any] = {}
        else:
            config = json.loads((_config_folder(spec) / CONFIG_NAME).read_text(encoding="utf-8"))
            model_cfg = config["model_cfg"]
            preprocess_cfg = config.get("preprocess_cfg") or {}
        sizes = [model_cfg["vision_cfg"]["image_size"], preprocess_cfg.get("size", 0)]
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None
    flat = [int(v) for size in sizes for v in (size if isinstance(size, (list, tuple)) else [size])]
    return max(flat) if flat and max(flat) > 0 else None


def _folder_identity(folder: Path, decode_version: str) -> str | None:
    import hashlib

    config = folder / CONFIG_NAME
    weights = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
    if not config.is_file() or not weights:
        return None
    from clipsort.cache import sample_hash

    config_hash = hashlib.blake2b(config.read_bytes(), digest_size=8).hexdigest()
    return f"folder|config:{config_hash}|weights:{sample_hash(weights[0])}|{decode_version}"


# ----------------------------------------------------------------------------- device


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda, then mps, then cpu. An explicit device that is missing is an error."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {requested}: CUDA is not available (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto"
            )
        return requested
    if requested == "mps" and not mps_ok:
        raise DeviceError("--device mps: Apple Metal (MPS) is not available on this machine; use --device cpu or auto")
    return requested


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


def default_batch_size(device: str) -> int:
    """Images per model call for ``device``: 32 on CPUs (larger batches were no faster on the
    2-core reference machine), 256 on GPUs with 8 GiB or more, 64 on smaller GPUs and MPS."""
    if device.startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return 256 if total >= 8 << 30 else 64
    if device == "mps":
        return 64
    return settings.DEFAULT_BATCH_SIZE


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matrix work runs natively (a bf16 ViT-B-32 ran 2.5x faster than fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: fp16 on CUDA and MPS, bf16 on CPUs with native bf16, fp32 otherwise."""
    settings.check_precision(precision, device)
    if precision != "auto":
        return precision
    if device.startswith(("cuda", "mps")):
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


# ----------------------------------------------------------------------------- the model


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
        #: ONNX Runtime session of the int8 image encoder, for ``--precision int8``.
        self._int8: Any = None
        #: Counts of work done, for reports and tests.
        self.images_encoded = 0

    @property
    def name(self) -> str:
        return self.spec.display

    def use_int8_images(self, on_step: Callable[[str], None] | None = None) -> None:
        """Embed images with the int8 ONNX Runtime encoder (see :mod:`clipsort.int8`), built on first use.

        ``on_step`` hears about the build, which takes a while (about 20 s for ViT-B-32 on 2 cores).
        """
        from clipsort import int8

        identity = model_identity(self.spec, "visual")
        if identity is None:
            raise ModelError(f"cannot identify model {self.spec.display} for its int8 encoder")
        path = int8.quantized_path(identity)
        if not path.is_file():
            if on_step is not None:
                on_step(
                    f"building the int8 image encoder of {self.spec.display}"
                    f" (once per model; it is kept in {path.parent})"
                )
            int8.build(self._model, self.image_size, path)
        import torch

        # The float image tower is not used any more: its memory (350 MB for ViT-B-32) goes back
        # before ONNX Runtime takes its own, which keeps the peak down.
        self._model.visual = torch.nn.Identity()
        self._int8 = int8.session(path, self.threads)
        self.precision = "int8"

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
            pixels = torch.stack(list(batch))
            if self.device.startswith("cuda"):
                pixels = pixels.pin_memory()
            pixels = pixels.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8:
                assert self._shift is not None and self._scale is not None  # prepare() made uint8
                pixels = torch.addcmul(self._shift, pixels.float(), self._scale)
            if self._int8 is not None:
                output = self._int8.run(None, {"input": pixels.float().numpy()})[0]
                features = torch.from_numpy(output)
            else:
                features = self._model.encode_image(pixels.to(self.dtype))
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        self.images_encoded += len(batch)
        return features.cpu().numpy()

    def encode_images(self, pictures: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_prepared([self.prepare(p) for p in pictures])

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


def load_model(
    spec: ModelSpec,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ClipModel:
    """Load ``spec`` on ``device`` at ``precision`` (see :func:`resolve_precision`).

    ``threads`` sets torch's CPU threads (process-wide); None chooses from the CPUs this
    process may use (see :func:`default_threads`). ``on_step`` hears about slow one-off
    steps (building the int8 encoder), for the user.

    Raises :class:`ModelUnavailableError` when the weights are neither cached nor downloadable,
    :class:`ModelError` for anything else that stops the model from loading.
    """
    resolved = resolve_device(device)
    source = _source_for(spec)
    import open_clip

    chosen = resolve_precision(precision, resolved)
    cache = str(settings.hf_cache_dir())
    import torch

    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    default = default_threads()  # first call: remembers torch's own choice before it is changed
    torch.set_num_threads(threads or default)
    if spec.pretrained == RANDOM:
        torch.manual_seed(0)  # the same "random" weights every run, so cached vectors stay valid
    try:
        with contextlib.nullcontext() if spec.pretrained == RANDOM else _no_random_init():
            model, _, preprocess = open_clip.create_model_and_transforms(
                source.model_name,
                pretrained=source.pretrained,
                precision="fp32" if chosen == "int8" else chosen,
                device=resolved,
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
    clip = ClipModel(spec, model, preprocess, tokenizer, resolved, source.origin, chosen)
    if chosen == "int8":
        clip.use_int8_images(on_step)
    return clip


# ----------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ModelListing:
    architecture: str
    tags: tuple[str, ...]
    cached_tags: tuple[str, ...]


def list_models() -> list[ModelListing]:
    """Every architecture open_clip knows, its pretrained tags, and which are cached here."""
    import open_clip

    rows = []
    for arch in open_clip.list_models():
        tags = tuple(open_clip.list_pretrained_tags_by_model(arch))
        cached = []
        for tag in tags:
            if (settings.models_dir() / f"{arch}__{tag}" / CONFIG_NAME).is_file():
                cached.append(tag)
                continue
            path, _ = _cached_tag_weights(open_clip.get_pretrained_cfg(arch, tag))
            if path is not None:
                cached.append(tag)
        rows.append(ModelListing(arch, tags, tuple(cached)))
    return rows


def cached_folders() -> list[Path]:
    """Model folders placed under :func:`settings.models_dir` and Hub repos in the download cache."""
    found = []
    models = settings.models_dir()
    if models.is_dir():
        found += sorted(p for p in models.iterdir() if (p / CONFIG_NAME).is_file())
    hub = settings.hf_cache_dir()
    if hub.is_dir():
        found += sorted(p for p in hub.iterdir() if p.name.startswith("models--"))
    return found
