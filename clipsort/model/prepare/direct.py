"""The fast runtime prepared without torch: a standard CLIP whose weights are a safetensors file
(:mod:`.weights` says which) gets its towers written by :mod:`.graphs`, each checked against
open_clip's arithmetic in numpy (:mod:`.reference`) before it is kept; 12 s of a first run
through torch's exporter became under 3 (ViT-B-32, two cores). :func:`preparer` hands
:func:`clipsort.model.prepare.export.build` what it builds, or says why not (then open_clip
exports the towers, :func:`clipsort.model.prepare.export.through_open_clip`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort.errors import ModelError
from clipsort.labels.score import normalise
from clipsort.model.artifact import ARTIFACT_VERSION, artifact_key
from clipsort.model.prepare import export
from clipsort.model.prepare.export import Pending, Preparer
from clipsort.model.prepare.graphs import write_image_tower, write_text_tower
from clipsort.model.prepare.weights import Shape, Tensors

if TYPE_CHECKING:
    from clipsort.model.model_spec import ModelSpec


def preparer(spec: ModelSpec, identity: str, precision: str) -> Preparer | str:
    """The preparer (:func:`clipsort.model.prepare.export.build`) that writes ``spec``'s towers from its
    weights file at ``precision`` (int8 or fp32), or why it cannot (then open_clip exports them)."""
    from clipsort.model.prepare import weights

    if precision not in ("int8", "fp32"):
        return f"{precision} runs the image tower on torch"
    source = weights.source_of(spec)
    if isinstance(source, str):
        return source
    try:
        tensors = weights.Tensors(source.weights)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{source.weights.name} could not be read ({exc})"
    shape = weights.describe(source.model_cfg, tensors)
    if isinstance(shape, str):
        return shape
    if not np.isfinite(tensors["logit_scale"]).all():
        return "a logit scale that is not a number"
    preprocess = source.preprocess_for(shape.image_size)
    if (
        preprocess.get("mode") != "RGB"
        or preprocess.get("interpolation") not in ("bicubic", "bilinear")
        or preprocess.get("resize_mode") not in ("shortest", "squash")
    ):
        return f"preprocessing {preprocess} (open_clip's own transform is checked against Pillow's)"
    return _Build(spec.display, tensors, shape, preprocess, identity, precision).prepare


class _Build:
    """One build from the weights file: the raw towers, then for each the steps of
    :func:`clipsort.model.prepare.export.keep`, each tower checked against open_clip's arithmetic
    in numpy with the thresholds of a torch export (:data:`clipsort.model.prepare.export.CHECKS`)."""

    def __init__(
        self,
        name: str,
        tensors: Tensors,
        shape: Shape,
        preprocess: dict[str, Any],
        identity: str,
        precision: str,
    ) -> None:
        self.name, self.tensors, self.shape, self.precision = name, tensors, shape, precision
        self.manifest: dict[str, Any] = {
            "version": ARTIFACT_VERSION,
            "key": artifact_key(identity, precision),
            "precision": precision,
            "model": name,
            "image_size": shape.image_size,
            "logit_scale": float(np.exp(tensors["logit_scale"].reshape(-1)[0])),
            "parts": {},
            "unsupported": {},
            "checks": {},
            "preprocess": preprocess,
            "dim": shape.embed_dim,
            "tokenizer": {
                "vocabulary": str(_vocabulary()),
                "context_length": shape.context_length,
                "clean": "lower",
                "end": 49407,
            },
            "text_prefix": [shape.text_layers, shape.text_heads, shape.text_width // shape.text_heads],
            "written": "from the weights file (tests/test_graphs.py holds these graphs to open_clip)",
        }

    def prepare(self, work: Path, pending: Pending, say: Callable[[str], None]) -> dict[str, Any]:
        int8 = self.precision == "int8"
        for tower, write in (("text", write_text_tower), ("image", write_image_tower)):
            say(f"writing the {tower} tower" + (" in 8 bits" if int8 else ""))
            raw = work / f"raw-{tower}.onnx"
            write(self.tensors, self.shape, raw, int8)
            keep = partial(self._keep, work, f"{tower}-{self.precision}", raw)
            pending.append((f"optimising and checking the {tower} tower", keep))
        return self.manifest

    def _keep(self, work: Path, part: str, raw: Path) -> None:
        """Optimise and keep ``part`` (written to ``raw``), checked against open_clip's arithmetic in numpy
        (:mod:`clipsort.model.prepare.reference`) on test pictures and prompts. A text tower that fails
        in int8 is written again in fp32."""
        from clipsort import settings
        from clipsort.model.prepare import reference
        from clipsort.model.runtime import Preprocess, onnx_tower, text_tower

        threads = settings.usable_cpus()
        if part.startswith("text"):
            from clipsort.model.texts import ClipTokenizer

            described = self.manifest["tokenizer"]
            tokenizer = ClipTokenizer(Path(described["vocabulary"]), described["context_length"], described["clean"])
            tokens = tokenizer(_check_texts())
            expected = _in_batches(tokens, lambda rows: reference.text_vectors(self.tensors, self.shape, rows))

            def vectors(tower_file: Path) -> np.ndarray:
                tower = text_tower(tower_file, threads, self.manifest)
                alone = tower(tokens, export.CHECK_BATCH, share=False)  # and every prompt on its own
                return np.concatenate([tower(tokens, export.CHECK_BATCH), alone])

            expected = np.concatenate([expected, expected])
        else:
            preprocess = Preprocess(self.manifest["preprocess"])
            pictures = export.test_pictures(self.shape.image_size)[3:5]  # a gradient and noise with shapes
            pixels = preprocess.normalise([preprocess(p) for p in pictures])
            expected = reference.image_vectors(self.tensors, self.shape, pixels)

            def vectors(tower_file: Path) -> np.ndarray:
                return onnx_tower(tower_file, threads)(pixels)

        expected = normalise(expected)

        def check(kept: Path) -> float:
            return export.worst_cosine(vectors(kept), expected)

        export.keep(work, self.manifest, part, raw, check)
        if part == "text-int8" and part not in self.manifest["parts"]:
            write_text_tower(self.tensors, self.shape, raw, False)
            export.keep(work, self.manifest, "text-fp32", raw, check)


#: Prompts of at most this many tokens are checked together (see :func:`_in_batches`).
SHORT = 32


def _check_texts() -> list[str]:
    """The prompts a text tower written here is checked on: three templates of each label of
    :func:`clipsort.model.prepare.export.check_texts` (prompts that begin alike) and its tokenizer
    samples (the longest fills the whole context). numpy computes each at its own length."""
    from clipsort.labels.label_set import DEFAULT_TEMPLATES
    from clipsort.model.texts import SAMPLES

    labels = ("dog", "red circle", "Eiffel Tower")
    return [t.format(label) for label in labels for t in DEFAULT_TEMPLATES[:3]] + list(SAMPLES)


def _in_batches(tokens: np.ndarray, vectors: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``vectors`` of token rows: the rows of at most :data:`SHORT` tokens together, cut to the longest
    of them (the causal mask keeps the zeros after a row's end out of its end token's state), each
    longer row alone at its own length."""
    lengths = tokens.argmax(axis=1) + 1  # through the end token, the highest id
    short = np.flatnonzero(lengths <= SHORT)
    batches = [short] if len(short) else []
    batches += [np.array([row]) for row in np.flatnonzero(lengths > SHORT)]
    parts = [vectors(tokens[rows, : lengths[rows].max()]) for rows in batches]
    out = np.zeros((len(tokens), parts[0].shape[1]), dtype=np.float32)
    for rows, part in zip(batches, parts, strict=True):
        out[rows] = part
    return out


def _vocabulary() -> Path:
    """CLIP's BPE vocabulary, in open_clip's folder (open_clip.tokenizer.default_bpe())."""
    import importlib.util

    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        raise ModelError("open_clip is not installed")
    return Path(next(iter(found.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
