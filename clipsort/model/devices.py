"""Which device runs the model, at which precision, in batches of which size; torch is imported
only where a GPU may be present. Imported before anything imports torch (see below)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from clipsort import settings
from clipsort.errors import DeviceError

# torch's CPU kernels run on GNU OpenMP, whose threads spin at every barrier by default.
# Beside clipsort's decode threads that spinning takes the cores the decoders need;
# passive waiting measured +14% images/s end to end on 2 cores (docs/performance.md).
# It only takes effect if set before torch is first imported, and a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# torch keeps compiled kernels in /tmp/torchinductor_<user> (and Triton in ~/.triton) unless told:
# clipsort writes nothing outside its own folders (clipsort.privacy), so they go in its cache.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.cache_dir() / "torch-kernels"))
os.environ.setdefault("TRITON_CACHE_DIR", str(settings.cache_dir() / "triton"))


def gpu_possible() -> bool:
    """Whether this machine could have a GPU torch can use; False means surely none, known without torch.

    ``import torch`` takes seconds; on a machine with no NVIDIA or AMD device node, not macOS
    and not WSL, ``--device auto`` is the CPU without asking torch.
    """
    if sys.platform == "darwin" or os.environ.get("CLIPSORT_ASSUME_GPU"):
        return True
    dev = Path("/dev")
    return _nvidia_device_nodes() or (dev / "kfd").exists() or (dev / "dxg").exists() or sys.platform == "win32"


def _nvidia_device_nodes() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def torch_built_for_cuda() -> bool:
    """Whether the installed torch is a CUDA build, read from its ``version.py`` without importing torch."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch")  # finds the package without running it
        if found is None or not found.submodule_search_locations:
            return False
        text = (Path(next(iter(found.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
    except (OSError, ValueError, ImportError):
        return False
    for line in text.splitlines():
        if line.startswith("cuda"):  # "cuda: Optional[str] = '12.8'", or "= None" in CPU builds
            value = line.partition("=")[2].strip()
            return value not in ("", "None")
    return False


def likely_device(requested: str) -> str | None:
    """What :func:`resolve_device` will most likely answer, known without importing torch, or None
    where only torch can tell (macOS, AMD, WSL).

    ``import torch`` and CUDA's first query take seconds; on a Linux machine with an NVIDIA
    device node and a CUDA build of torch, ``auto`` (and ``cuda``) is taken to be CUDA at
    once, so that photos are found and decoded while torch loads with the model, which checks
    the guess (:meth:`clipsort.model.embed.Embedder`): ``auto`` falls back to the CPU, with a warning,
    where CUDA turns out unusable; ``cuda`` is then refused as :func:`resolve_device` refuses it.
    """
    if requested in ("auto", "cpu") and (requested == "cpu" or not gpu_possible()):
        return "cpu"
    if requested not in ("auto", "cuda") and not requested.startswith("cuda:"):
        return None
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1")  # GPUs hidden on purpose
    if sys.platform.startswith("linux") and not hidden and _nvidia_device_nodes() and torch_built_for_cuda():
        return "cuda" if requested == "auto" else requested
    return None


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


#: Images per model call on GPUs with 8 GiB or more, and on smaller GPUs and MPS.
GPU_BATCH_SIZE = 256
SMALL_GPU_BATCH_SIZE = 64


def confirm_device(requested: str, likely: str, precision: str) -> tuple[str, str, str]:
    """The device and precision a run taken for ``likely`` (a CUDA device, before torch was
    imported) really gets, and what it should be told ("" when all is as expected). ``cuda`` that
    is not usable is refused as :func:`resolve_device` refuses it; ``auto`` runs on what torch
    finds, in float vectors still (those the cache was asked for)."""
    actual = resolve_device(requested)
    if actual == likely:
        return likely, precision, ""
    import torch

    precision = precision if actual.startswith(("cuda", "mps")) or precision != "fp16" else "fp32"
    warning = (
        f"this machine has an NVIDIA device and torch {torch.__version__} is built for CUDA"
        f" {torch.version.cuda}, but torch cannot use it; the model runs on {actual} in {precision}"
        f"{' (--device cpu runs it in int8, faster)' if actual == 'cpu' else ''}"
    )
    return actual, precision, warning


def default_batch_size(device: str) -> int:
    """Images per model call for ``device``: 32 on CPUs (larger batches were no faster on the
    2-core reference machine), 256 on GPUs with 8 GiB or more, 64 on smaller GPUs and MPS."""
    if device.startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return GPU_BATCH_SIZE if total >= 8 << 30 else SMALL_GPU_BATCH_SIZE
    return likely_batch_size(device)


def likely_batch_size(device: str) -> int:
    """:func:`default_batch_size` as it is most likely to come out, known without torch: what the
    decoders plan by while the model loads (on a GPU torch is what is loading; asking it would
    wait for it)."""
    if device.startswith("cuda"):
        return GPU_BATCH_SIZE
    if device == "mps":
        return SMALL_GPU_BATCH_SIZE
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
