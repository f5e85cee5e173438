"""Loading a model on the runtime that runs it; no torch is imported here.

The model runs on the fast runtime (:mod:`clipsort.model.runtime`, ONNX Runtime, CPUs) or on
open_clip and torch (:mod:`clipsort.model.torch_model`); :func:`load_model` chooses. Which model
(:mod:`clipsort.model.model_spec`), where its files are (:mod:`clipsort.model.model_files`), on which
device (:mod:`clipsort.model.devices`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clipsort import settings
from clipsort.errors import ModelError, UsageError
from clipsort.model.devices import resolve_device, resolve_precision, runs_fast
from clipsort.model.model_files import model_identity
from clipsort.model.model_spec import LoadedModel, ModelSpec

#: What the fast runtime's artifact of a model is named after (with the model's identity).
RUNTIME_IDENTITY = "runtime"


def load_model(
    spec: ModelSpec,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load ``spec`` on ``device`` at ``precision`` (see :func:`resolve_precision`).

    On CPUs in int8 or fp32 the model runs on the fast runtime (:mod:`clipsort.model.runtime`),
    prepared the first time (:mod:`clipsort.model.prepare`: from the weights file in seconds, or
    through open_clip; ``on_step`` hears about it; once per model and library versions);
    otherwise on open_clip and torch (:mod:`clipsort.model.torch_model`).
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
    from clipsort.model import torch_model

    return torch_model.load(spec, resolved, chosen, threads)


def _load_fast(spec: ModelSpec, precision: str, threads: int | None, on_step: Callable[[str], None] | None) -> Any:
    from clipsort.model import artifact as artifacts
    from clipsort.model.prepare import export
    from clipsort.model.runtime import OnnxClip, onnxruntime_module

    onnxruntime_module()  # not installed: say so now, not at the first photo

    def build() -> artifacts.Artifact:
        from clipsort.model import torch_model
        from clipsort.model.prepare import direct

        known = model_identity(spec, RUNTIME_IDENTITY)
        written = direct.preparer(spec, known, precision) if known is not None else "not downloaded yet"
        if isinstance(written, str):
            torch_model.check_available(spec)  # a missing model fails before the user is told of a build
        if on_step is not None:
            on_step(f"preparing {spec.display} for this CPU in {precision}, once (kept in {settings.runtime_dir()})")
        steps = (lambda message: on_step(f"preparing {spec.display}: {message}")) if on_step is not None else None
        if known is not None and not isinstance(written, str):  # a standard CLIP in a safetensors file: no torch
            return export.build(written, spec.display, known, precision, steps)
        if known is None:  # a Hub model not downloaded yet: loading it downloads it, then it is known
            first = [torch_model.load(spec, "cpu", "fp32", threads)]
            known = model_identity(spec, RUNTIME_IDENTITY)
            if known is None:
                raise ModelError(f"cannot identify model {spec.display} for its fast runtime")
            written = direct.preparer(spec, known, precision)  # downloaded as safetensors: still the faster way
            if not isinstance(written, str):
                first.clear()  # the torch model's memory, for the build
                return export.build(written, spec.display, known, precision, steps)
            prepare = export.through_open_clip(
                first.pop, known, precision, written
            )  # pop: the build holds the only one
        else:
            load = lambda: torch_model.load(spec, "cpu", "fp32", threads)  # noqa: E731
            prepare = export.through_open_clip(load, known, precision, str(written))
        return export.build(prepare, spec.display, known, precision, steps)

    identity = model_identity(spec, RUNTIME_IDENTITY)
    artifact = artifacts.find(identity, precision) if identity is not None else None
    if artifact is None:
        artifact = build()
    part = f"image-{precision}"
    if not artifact.has(part):
        if precision == "int8":
            raise ModelError(f"--precision int8 cannot run {spec.display}: {artifact.why_not(part)}; use fp32 or bf16")
        from clipsort.model import torch_model

        return torch_model.load(spec, "cpu", precision, threads)
    text_fallback = None
    if not artifact.has("text-fp32") and not artifact.has("text-int8"):

        def text_fallback() -> Any:
            from clipsort.model import torch_model

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
