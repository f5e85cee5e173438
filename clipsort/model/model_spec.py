"""Which model the user means, and what a loaded model offers; no torch is imported here.

Model specifiers, as open_clip takes them:

* ``ViT-B-32`` with a pretrained tag (``laion2b_s34b_b79k``) or a checkpoint file;
* ``hf-hub:org/repo``;
* ``local-dir:PATH`` or a plain folder in that layout (``open_clip_config.json``
  holding ``model_cfg``, plus the weights, e.g. ``open_clip_model.safetensors``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from clipsort.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

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


def spec_of_display(display: str) -> ModelSpec | None:
    """The model a :attr:`ModelSpec.display` names (a learned label file records it so), or None."""
    try:
        if display.startswith((HF_PREFIX, LOCAL_PREFIX)):
            return parse_spec(display)
        name, _, rest = display.partition(" (")
        pretrained = rest[:-1] if rest.endswith(")") else None
        return parse_spec(name, RANDOM if pretrained == "random weights" else pretrained)
    except (UsageError, OSError, ValueError):
        return None


class LoadedModel(Protocol):
    """A loaded model, whichever runtime runs it (:class:`clipsort.model.runtime.OnnxClip`,
    :class:`clipsort.model.torch_model.ClipModel`). Encoders return L2-normalised float32 arrays."""

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
