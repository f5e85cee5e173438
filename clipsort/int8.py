"""``--precision int8``: the image encoder quantized to int8 and run by ONNX Runtime (CPU only).

On the 2-core reference CPU (AVX-512 VNNI), ViT-B-32's image encoder ran 42.7 images/s
this way against 32-39 with torch bf16 and 13-18 fp32 (docs/performance.md); CPUs
without native bf16 gain the most. Text prompts stay on torch in fp32: they are few and
cached.

The first run exports the loaded torch model's image encoder to ONNX, quantizes its
weights to int8 (``onnxruntime.quantization.quantize_dynamic``) and keeps the result under
the cache dir, named by the model's identity, so later runs only load it. Needs the
``int8`` extra: ``pip install 'clipsort[int8]'`` (onnxruntime and onnx).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from clipsort import settings
from clipsort.errors import ModelError, UsageError

OPSET = 17
INSTALL_HINT = "--precision int8 needs ONNX Runtime and onnx: pip install 'clipsort[int8]'"


def _modules() -> tuple[Any, Any]:
    try:
        import onnxruntime
        from onnxruntime import quantization
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return onnxruntime, quantization


def quantized_path(identity: str) -> Path:
    """Where the int8 image encoder of the model ``identity`` is kept."""
    onnxruntime, _ = _modules()
    key = f"{identity}|onnxruntime-{onnxruntime.__version__}|opset-{OPSET}"
    return settings.cache_dir() / "int8" / f"visual-{hashlib.blake2b(key.encode(), digest_size=10).hexdigest()}.onnx"


def export(model: Any, encoder: str, example: Any, target: Path) -> None:
    """Export an open_clip model's ``encode_image`` or ``encode_text`` (``encoder``) to ONNX.

    Input ``input``, output ``output``, batch axis dynamic; ``example`` is a batch of two.
    """
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return getattr(self.clip, f"encode_{encoder}")(batch)

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX export
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes: ours are fixed but the batch
            torch.onnx.export(
                Encoder().eval(),
                (example,),
                str(target),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def build(model: Any, image_size: int, target: Path) -> None:
    """Export ``model``'s image encoder (an fp32 open_clip model) to ONNX and quantize it into ``target``."""
    import torch

    _, quantization = _modules()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clipsort-int8-", dir=target.parent) as tmp:
        exported = Path(tmp) / "visual-fp32.onnx"
        quantized = Path(tmp) / "visual-int8.onnx"
        try:
            export(model, "image", torch.zeros(2, 3, image_size, image_size), exported)
            quantization.quantize_dynamic(str(exported), str(quantized), weight_type=quantization.QuantType.QInt8)
        except Exception as exc:  # export and quantization raise whatever their libraries raise
            raise ModelError(f"cannot build the int8 image encoder: {exc}") from exc
        os.replace(quantized, target)  # whole or not at all: a run killed here leaves no half file


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session for ``path`` with ``threads`` threads that sleep when idle.

    ONNX Runtime's threads spin while waiting by default, which takes the cores that the
    decode threads need.
    """
    onnxruntime, _ = _modules()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Without its arena, ONNX Runtime ran as fast here and its memory stopped growing with each
    # new batch shape (a last, smaller batch); with it, peak RSS reached 2.6 GB on 200 photos.
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a damaged file: rebuild it next time
        path.unlink(missing_ok=True)
        raise ModelError(f"cannot load the int8 image encoder {path} (removed; it is rebuilt next run): {exc}") from exc
