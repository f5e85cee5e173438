"""Building the fast runtime's artifact (:mod:`clipsort.model.artifact`): a model's towers exported from
open_clip to ONNX, once.

Each part is checked against open_clip (the reference) before the manifest is written: the
fp32 towers must give open_clip's vectors (cosine >= 0.9999), the int8 tower cosine >= 0.99
on test pictures, the Pillow preprocessing open_clip's pixels exactly, and the tokenizer
open_clip's tokens. A part that fails is marked unsupported with the reason, and clipsort
runs that part through open_clip (torch) instead.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort import settings
from clipsort.errors import ModelError
from clipsort.model.artifact import (
    ARTIFACT_VERSION,
    MANIFEST,
    OPSET,
    PARTS,
    Artifact,
    artifact_key,
    file_facts,
    find,
    folder_for,
)

if TYPE_CHECKING:
    from clipsort.model.torch_model import ClipModel

#: Prompts a text tower is checked on at a time (all 56 at once took 400 MB of ONNX Runtime's memory).
CHECK_BATCH = 8
#: Smallest cosine to open_clip's vectors that each part must reach to be used.
CHECKS = {"image-fp32": 0.9999, "image-int8": 0.99, "image-bf16": 0.99, "text-fp32": 0.9999, "text-int8": 0.99}


# ----------------------------------------------------------------------------- building


Pending = list[tuple[str, Callable[[], None]]]
#: Writes a build's raw towers into the folder it is given and returns the manifest that the
#: steps it adds to the list (optimise, quantize, check: ONNX Runtime only) complete.
Preparer = Callable[[Path, Pending, Callable[[str], None]], dict[str, Any]]


def build(
    prepare: Preparer, name: str, identity: str, precision: str, on_step: Callable[[str], None] | None = None
) -> Artifact:
    """Build the artifact of ``identity`` (the model ``name``) at ``precision`` that ``prepare`` writes:
    through open_clip (:func:`through_open_clip`) or from the weights file
    (:func:`clipsort.model.prepare.direct.preparer`).
    ``on_step`` hears how far along it is.

    Slow (ViT-B-32 on two cores: seconds per tower). Concurrent builds are harmless: each works
    in a folder of its own and the first to finish is kept.
    """
    say = on_step or (lambda message: None)
    pending: Pending = []
    target = folder_for(identity, precision)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide a shared CLIPSORT_RUNTIME_DIR from other users
    try:
        manifest = prepare(work, pending, say)
        for number, (what, step) in enumerate(pending, 1):
            say(f"{what} ({number} of {len(pending)})")
            step()
        for leftover in {*work.glob("raw-*"), *work.glob("*.weights")}:
            leftover.unlink()
        (work / (MANIFEST + ".tmp")).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        os.replace(work / (MANIFEST + ".tmp"), work / MANIFEST)
        try:
            os.replace(work, target)
        except OSError:  # another process built it meanwhile (a non-empty folder is not replaced)
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = find(identity, precision)
    if found is None:
        raise ModelError(f"the fast runtime of {name} could not be kept in {target}")
    return found


def through_open_clip(load: Callable[[], ClipModel], identity: str, precision: str, why: str) -> Preparer:
    """Export the model ``load`` gives (open_clip, fp32, on the CPU): the towers ``precision`` runs
    (:data:`~clipsort.model.artifact.PARTS`). The torch model is let go once its towers are
    exported, before ONNX Runtime optimises and quantizes them, so the two never take memory at
    the same time. ``why``: why the towers could not be written from the weights file (kept in the
    manifest)."""

    def prepare(work: Path, pending: Pending, say: Callable[[str], None]) -> dict[str, Any]:
        say("loading the model with open_clip")
        clip = load()
        manifest = _export_all(work, clip, identity, precision, pending, say)
        manifest["written"] = f"through open_clip ({why})"
        del clip
        release_memory()  # the torch model's memory, for ONNX Runtime's steps
        return manifest

    return prepare


def _export_all(
    work: Path, clip: ClipModel, identity: str, precision: str, pending: Pending, say: Callable[[str], None]
) -> dict[str, Any]:
    """Export ``clip``'s towers that ``precision`` runs to raw ONNX files in ``work``; the steps that need
    ONNX Runtime only (optimise, quantize, check) are added to ``pending``. Returns the manifest they
    complete."""
    from clipsort.model.prepare import towers
    from clipsort.model.runtime import Preprocess, onnx_tower

    model = clip.torch_module
    wanted = PARTS[precision]

    manifest: dict[str, Any] = {
        "version": ARTIFACT_VERSION,
        "key": artifact_key(identity, precision),
        "precision": precision,
        "model": clip.spec.display,
        "image_size": clip.image_size,
        "logit_scale": clip.logit_scale,
        "parts": {},
        "unsupported": {},
        "checks": {},
    }
    unsupported: dict[str, str] = manifest["unsupported"]
    config = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    manifest["preprocess"] = config
    say("exporting the text tower")
    _export_text(work, clip, manifest, pending, wanted)
    towers.drop_text_tower(model)  # in its file now: the image tower's export has its memory
    release_memory()
    pictures = test_pictures(clip.image_size)
    reference = clip.encode_images(pictures)
    manifest["dim"] = int(reference.shape[1])
    try:
        preprocess = Preprocess(config)
        odd = [_odd_picture(size) for size in ((300, 200), (200, 301), (640, 427), (224, 224))]
        if not all(np.array_equal(preprocess(p), clip.prepare(p).numpy()) for p in odd):
            raise ModelError("Pillow preprocessing differs from open_clip's")
        pixels = preprocess.normalise([preprocess(p) for p in pictures])
    except (ModelError, KeyError, TypeError, AttributeError) as exc:
        unsupported["image-fp32"] = unsupported["image-int8"] = f"preprocessing: {exc}"
    else:
        if "image-bf16" in wanted:
            say("tracing the image tower in bf16")
            traced = work / "image-bf16.pt"
            try:
                towers.trace_bf16(model, pixels, traced)
            except Exception as exc:  # noqa: BLE001 - tracing raises whatever it meets
                unsupported["image-bf16"] = f"cannot trace the image tower in bf16: {exc}"
            else:
                pending.append(
                    (
                        "checking the image tower",
                        lambda: _keep_traced(manifest, "image-bf16", traced, pixels, reference),
                    )
                )
        if "image-fp32" in wanted or "image-int8" in wanted:
            say("exporting the image tower")
            raw = work / "raw-image.onnx"
            towers.export_image(model, pixels, raw, OPSET)

            def check_image(path: Path) -> float:
                return worst_cosine(onnx_tower(path, settings.usable_cpus())(pixels), reference)

            if "image-fp32" in wanted:
                pending.append(
                    ("optimising the image tower", lambda: keep(work, manifest, "image-fp32", raw, check_image))
                )
            if "image-int8" in wanted:
                quantized = work / "raw-image-int8.onnx"
                pending.append(("quantizing the image tower", lambda: quantize_file(raw, quantized)))
                pending.append(
                    ("optimising the image tower", lambda: keep(work, manifest, "image-int8", quantized, check_image))
                )
    return manifest


def _export_text(
    work: Path, clip: ClipModel, manifest: dict[str, Any], pending: Pending, wanted: tuple[str, ...]
) -> None:
    from clipsort.model.prepare import towers
    from clipsort.model.texts import SAMPLES, ClipTokenizer

    described = _describe_tokenizer(clip)
    if isinstance(described, str):
        manifest["unsupported"]["text-fp32"] = described
        return
    tokenizer = ClipTokenizer(Path(described["vocabulary"]), described["context_length"], described["clean"])
    theirs = clip.tokenize(list(SAMPLES))
    if not np.array_equal(tokenizer(list(SAMPLES)), theirs):
        manifest["unsupported"]["text-fp32"] = "clipsort's tokenizer does not give open_clip's tokens"
        return
    manifest["tokenizer"] = described
    model = clip.torch_module
    texts = check_texts()
    tokens = tokenizer(texts)
    # a few at a time: open_clip's activations for all at once took 200 MB more than the export (ViT-B-32)
    reference = np.concatenate([clip.encode_texts(texts[i : i + 8]) for i in range(0, len(texts), 8)])
    raw = work / "raw-text.onnx"
    shares = towers.export_text(model, tokens, raw, OPSET)
    if shares:
        manifest["text_prefix"] = list(towers.prefix_shape(model))

    def check_text(path: Path) -> float:
        from clipsort.model.runtime import text_tower

        tower = text_tower(path, settings.usable_cpus(), manifest)
        worst = worst_cosine(tower(tokens, CHECK_BATCH), reference)
        if shares:  # and without shared prefixes: every prompt on its own
            worst = min(worst, worst_cosine(tower(tokens, CHECK_BATCH, share=False), reference))
        return worst

    if "text-int8" in wanted:
        quantized = work / "raw-text-int8.onnx"

        def keep_int8_or_fp32() -> None:  # a text tower that fails its check in int8 runs in fp32
            keep(work, manifest, "text-int8", quantized, check_text)
            if "text-int8" not in manifest["parts"]:
                keep(work, manifest, "text-fp32", raw, check_text)

        pending.append(("quantizing the text tower", lambda: quantize_file(raw, quantized)))
        pending.append(("optimising the text tower", keep_int8_or_fp32))
    else:
        pending.append(("optimising the text tower", lambda: keep(work, manifest, "text-fp32", raw, check_text)))


def check_texts() -> list[str]:
    """The prompts a text tower is checked on: those of label files (templates, labels of one and
    several words, some beginning alike) and the tokenizer's samples, the longest of which fills
    the whole context."""
    from clipsort.labels.label_set import DEFAULT_TEMPLATES
    from clipsort.model.texts import SAMPLES

    labels = ("dog", "red circle", "red square", "Eiffel Tower")
    return [t.format(label) for label in labels for t in DEFAULT_TEMPLATES] + list(SAMPLES)


def worst_cosine(vectors: np.ndarray, reference: np.ndarray) -> float:
    from clipsort.labels.score import normalise

    return float((normalise(vectors) * reference).sum(axis=1).min())


def _describe_tokenizer(clip: ClipModel) -> dict[str, Any] | str:
    """The tokenizer as :class:`clipsort.model.texts.ClipTokenizer` takes it, or why it cannot."""
    from open_clip import tokenizer as oct

    theirs = clip.tokenizer_object
    if type(theirs) is not oct.SimpleTokenizer:
        return f"tokenizer {type(theirs).__name__} (only CLIP's BPE tokenizer runs without torch)"
    clean = {id(oct._clean_lower): "lower", id(oct._clean_whitespace): "whitespace"}.get(id(theirs.clean_fn))
    if clean is None or theirs.reduction_fn is not None or len(theirs.encoder) != 49408:
        return "tokenizer options (cleaning, reduction or extra tokens) that only open_clip runs"
    return {
        "vocabulary": str(oct.default_bpe()),
        "context_length": int(theirs.context_length),
        "clean": clean,
        "end": int(theirs.eot_token_id),
    }


def quantize_file(source: Path, target: Path) -> None:
    """8-bit weights (:mod:`clipsort.model.prepare.quantize`) of ``source``; a graph with none to quantize is
    kept as it is."""
    from clipsort.model.prepare.quantize import quantize_weights

    try:
        if not quantize_weights(source, target):
            shutil.copyfile(source, target)
    except Exception as exc:  # noqa: BLE001 - onnx raises whatever it meets
        raise ModelError(f"cannot quantize {source.name}: {exc}") from exc


def release_memory() -> None:
    """Collect what is no longer used and give the memory back to the system (glibc keeps freed memory
    for later unless asked; elsewhere there is nothing to do)."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _optimise(source: Path, target: Path) -> None:
    """ONNX Runtime's optimisation of ``source`` (constants folded, the CPU's fused operators) saved as
    ``target`` and ``<target stem>.data``, its weights."""
    from clipsort.model.runtime import onnxruntime_module

    onnxruntime = onnxruntime_module()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{target.stem}.data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    options.log_severity_level = 3
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def keep(work: Path, manifest: dict[str, Any], part: str, raw: Path, check: Callable[[Path], float]) -> None:
    """Optimise ``raw`` into ``<part>.onnx`` + ``<part>.data``, ``check`` it (the worst cosine of its
    vectors to open_clip's), and list it in the manifest."""
    target = work / f"{part}.onnx"
    data = f"{part}.data"
    _optimise(raw, target)
    worst = check(target)
    manifest["checks"][part] = round(worst, 6)
    if not worst >= CHECKS[part]:  # NaN (weights that are not numbers) fails too
        manifest["unsupported"][part] = f"vectors differ from open_clip's (cosine {worst:.4f} < {CHECKS[part]})"
        target.unlink()
        (work / data).unlink(missing_ok=True)
        return
    files = {p.name: file_facts(p) for p in (target, work / data) if p.exists()}
    manifest["parts"][part] = {"file": target.name, "files": files}


def _keep_traced(manifest: dict[str, Any], part: str, target: Path, pixels: np.ndarray, reference: np.ndarray) -> None:
    """Check the TorchScript tower on a batch of another size than it was traced with, and list it."""
    from clipsort.model.runtime import torchscript_tower

    worst = worst_cosine(torchscript_tower(target, settings.usable_cpus())(pixels[:5]), reference[:5])
    manifest["checks"][part] = round(worst, 6)
    if not worst >= CHECKS[part]:  # NaN (weights that are not numbers) fails too
        manifest["unsupported"][part] = f"vectors differ from open_clip's (cosine {worst:.4f} < {CHECKS[part]})"
        target.unlink()
        return
    manifest["parts"][part] = {"file": target.name, "files": {target.name: file_facts(target)}}


def test_pictures(size: int) -> list[Any]:
    """Pictures to check the exported towers on: plain, gradients, noise, shapes (fixed, so builds repeat)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(7)
    pictures = [Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(3)]
    pictures.append(Image.linear_gradient("L").resize((size, size)).convert("RGB"))
    for _ in range(4):
        picture = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
        draw = ImageDraw.Draw(picture)
        for _ in range(3):
            x, y = (int(v) for v in rng.integers(0, size // 2, 2))
            draw.ellipse((x, y, x + size // 2, y + size // 3), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pictures.append(picture)
    return pictures


def _odd_picture(size: tuple[int, int]) -> Any:
    from PIL import Image

    rng = np.random.default_rng(size[0] * 1000 + size[1])
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
