"""Which model the user means, and what a loaded model offers; no torch is imported here.

Also what open_clip knows, its architectures and pretrained tags, read without importing it
(:func:`catalog`, below).

Model specifiers, as open_clip takes them:

* ``ViT-B-32`` with a pretrained tag (``laion2b_s34b_b79k``) or a checkpoint file;
* ``hf-hub:org/repo``;
* ``local-dir:PATH`` or a plain folder in that layout (``open_clip_config.json``
  holding ``model_cfg``, plus the weights, e.g. ``open_clip_model.safetensors``).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
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


# ----------------------------------------------------------------------------- open_clip's catalog
#
# What open_clip knows (its architectures and their pretrained tags), read without importing it.
#
# ``import open_clip`` imports torch and, on some machines, transformers: 3-12 s. Telling a person
# that ``ViT-B-33`` is no model, or listing the models, needs none of that: the architectures are
# the JSON files of open_clip's ``model_configs`` folder, and the tags the ``_PRETRAINED`` table of
# its ``pretrained.py``, a module of plain dictionaries. That module is run here on its own, under
# a private name, with torch, safetensors and huggingface_hub made unimportable for the moment (it
# guards each import), so the table is the installed open_clip's own. Where that fails (another
# layout in a future open_clip) :func:`catalog` returns None and callers ask open_clip itself.

_PRIVATE = "_clipsort_open_clip_catalog"
#: Imports the table's module guards with try/except: made to fail while it runs (they are slow).
_BLOCKED = ("torch", "safetensors.torch", "huggingface_hub")
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Catalog:
    #: Every architecture (open_clip.list_models()).
    architectures: tuple[str, ...]
    #: Each architecture's pretrained tags and their configs (open_clip.get_pretrained_cfg()).
    pretrained: dict[str, dict[str, dict[str, Any]]]
    #: open_clip.pretrained's module, for the names of its weight files.
    module: Any

    def tags(self, architecture: str) -> tuple[str, ...]:
        return tuple(self.pretrained.get(architecture, {}))


def catalog() -> Catalog | None:
    """The installed open_clip's catalog, or None when it cannot be read without importing it. Once
    open_clip is imported it is asked (models registered since, ``add_model_config``, included)."""
    if "open_clip" in sys.modules:
        return _from_open_clip()
    return _read_alone()


@lru_cache(maxsize=1)
def _read_alone() -> Catalog | None:
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    folder = list(found.submodule_search_locations)[0]
    try:
        configs = os.listdir(os.path.join(folder, "model_configs"))
        module = _run_alone(folder)
        pretrained = {arch: dict(tags) for arch, tags in module._PRETRAINED.items()}
    except Exception:  # noqa: BLE001 - another layout: open_clip is asked instead
        return None
    architectures = sorted((name[:-5] for name in configs if name.endswith(".json")), key=_natural)
    return Catalog(tuple(architectures), pretrained, module)


def known_models() -> Catalog:
    """:func:`catalog`, or open_clip's own where it cannot be read alone (imports open_clip: slow)."""
    return catalog() or _from_open_clip()


def _from_open_clip() -> Catalog:
    import open_clip
    import open_clip.pretrained as module

    pretrained = {arch: dict(tags) for arch, tags in module._PRETRAINED.items()}
    return Catalog(tuple(open_clip.list_models()), pretrained, module)


def _run_alone(folder: str) -> types.ModuleType:
    """open_clip's ``pretrained.py`` run as a module of a private package over the same folder
    (its relative imports, constants and version, are plain modules), slow imports blocked."""
    with _LOCK:
        saved = {name: sys.modules.get(name) for name in (_PRIVATE, *_BLOCKED)}
        package = types.ModuleType(_PRIVATE)
        package.__path__ = [folder]
        try:
            sys.modules[_PRIVATE] = package
            for name in _BLOCKED:
                if saved[name] is None:
                    sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
            spec = importlib.util.spec_from_file_location(
                f"{_PRIVATE}.pretrained", os.path.join(folder, "pretrained.py")
            )
            if spec is None or spec.loader is None:
                raise ImportError("no pretrained.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        finally:
            for name, value in saved.items():
                if value is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = value
            for name in [n for n in sys.modules if n.startswith(_PRIVATE + ".")]:
                del sys.modules[name]


def _natural(name: str) -> list[Any]:
    """open_clip's order of model names: numbers in them compared as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def nearest(name: str, choices: tuple[str, ...] | list[str], count: int = 3) -> list[str]:
    """The known names closest to ``name`` (case and separators aside), best first."""
    folded = {choice.lower().replace("_", "-"): choice for choice in choices}
    close = difflib.get_close_matches(name.lower().replace("_", "-").replace("/", "-"), list(folded), count, 0.5)
    return [folded[c] for c in close]
