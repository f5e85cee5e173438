"""Which model, where its weights are, and which runtime runs it; no torch is imported here.

The model runs on the fast runtime (:mod:`clipsort.runtime`, ONNX Runtime, CPUs) or on
open_clip and torch (:mod:`clipsort.torch_model`); :func:`load_model` chooses.

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

import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import numpy as np

from clipsort import settings
from clipsort.errors import DeviceError, ModelError, ModelUnavailableError, UsageError

if TYPE_CHECKING:
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
#: What the fast runtime's artifact of a model is named after (with the model's identity).
RUNTIME_IDENTITY = "runtime"


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


class LoadedModel(Protocol):
    """A loaded model, whichever runtime runs it (:class:`clipsort.runtime.OnnxClip`,
    :class:`clipsort.torch_model.ClipModel`). Encoders return L2-normalised float32 arrays."""

    spec: ModelSpec
    device: str
    precision: str
    threads: int
    origin: str
    logit_scale: float
    image_size: int
    #: Fewest pixels on the short side a decoded picture needs for this model's preprocessing.
    min_side: int
    #: Images per model call when the user did not choose.
    batch_size: int
    #: Photos embedded so far (for reports and tests).
    images_encoded: int

    @property
    def name(self) -> str: ...

    def describe(self) -> str:
        """Where and how it runs, for the run's first line: ``cpu (int8, 2 threads) with onnxruntime``."""
        ...

    def prepare(self, picture: Image.Image) -> Any:
        """The model's preprocessing of an RGB picture, up to 8-bit pixels. Thread-safe."""
        ...

    def encode_prepared(self, batch: Sequence[Any]) -> np.ndarray: ...

    def encode_images(self, pictures: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


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


def source_for(spec: ModelSpec) -> _Source:
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


def read_model_config(spec: ModelSpec) -> dict[str, Any] | None:
    """The model's ``model_cfg`` (plus ``preprocess_cfg``) from its config files, without importing
    torch or open_clip; None when it cannot be found or read."""
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
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None
    if not isinstance(model_cfg, dict):
        return None
    return {**model_cfg, "preprocess_cfg": preprocess_cfg if isinstance(preprocess_cfg, dict) else {}}


def image_size_hint(spec: ModelSpec) -> int | None:
    """The model's input size as its config files give it, without importing torch or open_clip.

    Lets photos be decoded at the right size while the model is still loading. None when
    the config cannot be found or read; a hint below the loaded model's real size only
    costs a second decode of the photos decoded early (see ``Embedder.resolve``).
    """
    config = read_model_config(spec)
    try:
        sizes = [config["vision_cfg"]["image_size"], config["preprocess_cfg"].get("size", 0)]  # type: ignore[index]
        flat = [int(v) for size in sizes for v in (size if isinstance(size, (list, tuple)) else [size])]
    except (KeyError, TypeError, ValueError):
        return None
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


def gpu_possible() -> bool:
    """Whether this machine could have a GPU torch can use; False means surely none, known without torch.

    ``import torch`` takes seconds; on a machine with no NVIDIA or AMD device node, not macOS
    and not WSL, ``--device auto`` is the CPU without asking torch.
    """
    if sys.platform == "darwin" or os.environ.get("CLIPSORT_ASSUME_GPU"):
        return True
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists() or (dev / "dxg").exists() or sys.platform == "win32"


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda, then mps, then cpu. An explicit device that is missing is an error."""
    if requested in ("auto", "cpu") and (requested == "cpu" or not gpu_possible()):
        return "cpu"
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


def fast_runtime_available() -> bool:
    """ONNX Runtime is installed (found without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: fp16 on CUDA and MPS; on CPUs int8 on ONNX Runtime (the fastest there, and it
    starts in a fraction of a second), or, without ONNX Runtime, bf16 where the CPU has it natively, else fp32."""
    settings.check_precision(precision, device)
    if precision != "auto":
        return precision
    if device.startswith(("cuda", "mps")):
        return "fp16"
    if fast_runtime_available():
        return "int8"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def runs_fast(device: str, precision: str) -> bool:
    """Whether ``device`` and ``precision`` (both resolved) run on the fast runtime (ONNX Runtime, no torch)."""
    return device == "cpu" and precision in ("int8", "fp32", "bf16") and fast_runtime_available()


# ----------------------------------------------------------------------------- loading


def load_model(
    spec: ModelSpec,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load ``spec`` on ``device`` at ``precision`` (see :func:`resolve_precision`).

    On CPUs in int8 or fp32 the model runs on the fast runtime (:mod:`clipsort.runtime`),
    built from open_clip the first time (``on_step`` hears about it: 20-40 s, once per model
    and library versions); otherwise on open_clip and torch (:mod:`clipsort.torch_model`).
    ``threads`` sets the model's CPU threads; None chooses from the CPUs this process may use.

    Raises :class:`ModelUnavailableError` when the weights are neither cached nor downloadable,
    :class:`ModelError` for anything else that stops the model from loading.
    """
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    resolved = resolve_device(device)
    chosen = resolve_precision(precision, resolved)
    if runs_fast(resolved, chosen):
        return _load_fast(spec, chosen, threads, on_step)
    from clipsort import torch_model

    return torch_model.load(spec, resolved, chosen, threads)


def _load_fast(spec: ModelSpec, precision: str, threads: int | None, on_step: Callable[[str], None] | None) -> Any:
    from clipsort import export
    from clipsort.runtime import OnnxClip, onnxruntime_module

    onnxruntime_module()  # not installed: say so now, not at the first photo

    def build() -> export.Artifact:
        from clipsort import torch_model

        torch_model.check_available(spec)  # a missing model fails before the user is told of a build
        if on_step is not None:
            on_step(
                f"building the fast runtime of {spec.display} (once per model and library versions;"
                f" kept in {settings.runtime_dir()})"
            )
        known = model_identity(spec, RUNTIME_IDENTITY)
        if known is None:  # a Hub model not downloaded yet: loading it downloads it, then it is known
            first = [torch_model.load(spec, "cpu", "fp32", threads)]
            known = model_identity(spec, RUNTIME_IDENTITY)
            if known is None:
                raise ModelError(f"cannot identify model {spec.display} for its fast runtime")
            return export.build(first.pop, known)  # pop: the build holds the only reference, and frees it
        return export.build(lambda: torch_model.load(spec, "cpu", "fp32", threads), known)

    identity = model_identity(spec, RUNTIME_IDENTITY)
    artifact = export.find(identity) if identity is not None else None
    if artifact is None:
        artifact = build()
    part = f"image-{precision}"
    if not artifact.has(part):
        if precision == "int8":
            raise ModelError(f"--precision int8 cannot run {spec.display}: {artifact.why_not(part)}; use fp32 or bf16")
        from clipsort import torch_model

        return torch_model.load(spec, "cpu", precision, threads)
    text_fallback = None
    if not artifact.has("text-fp32"):

        def text_fallback() -> Any:
            from clipsort import torch_model

            return torch_model.load(spec, "cpu", "fp32", threads)

    return OnnxClip(
        spec,
        artifact,
        precision,
        threads or settings.model_threads(),
        origin=f"{artifact.folder}",
        rebuild=build,
        text_fallback=text_fallback,
    )


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
