"""The fast runtime's artifact of a model, as found on disk: where it is, what its manifest says,
and whether its files are still the ones built. Building it: :mod:`clipsort.model.prepare.export`.

An artifact is a folder under :func:`clipsort.settings.runtime_dir` (``<cache dir>/runtime/``),
named by a hash of the model's identity, the precision it serves and the versions of everything
that shaped it (torch, open_clip, onnx, ONNX Runtime, the CPU architecture,
:data:`ARTIFACT_VERSION`), so an upgrade builds a new one and never trusts an old one. Each
precision's artifact holds only the towers that precision runs (:data:`PARTS`): the default CPU
run (int8) builds the int8 towers alone, in a third of the time and memory of all of them, and
``--precision fp32`` or ``bf16`` builds theirs the first time it is asked for. The files:

* ``image-bf16.pt``: the image tower in bf16 as TorchScript, for ``--precision bf16``
  (torch without open_clip);
* ``image-fp32.onnx`` and ``image-int8.onnx`` (weights quantized per channel to 8 bits by
  ``onnxruntime.quantization.quantize_dynamic``), ``text-fp32.onnx``, each with its weights
  in a ``.data`` file beside it (ONNX Runtime maps it instead of parsing it: 0.15 s to open
  ViT-B-32's int8 image tower instead of 0.5 s), optimised once here, not at every start;
* ``manifest.json``, written last: preprocessing, tokenizer, logit scale, and each file's
  size and sampled hash. A folder without it is an interrupted build; a file whose size or
  hash differs, or that ONNX Runtime cannot open, makes the whole artifact be removed and
  built again.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from clipsort import settings
from clipsort.errors import ModelError
from clipsort.safe_files import read_json

#: Bump when what is exported, or how, changes: every artifact is then built again.
ARTIFACT_VERSION = 6
#: The towers each CPU precision runs, built into its artifact (the text tower in fp32 stands in
#: for an int8 one that fails its check).
PARTS: dict[str, tuple[str, ...]] = {
    "int8": ("image-int8", "text-int8"),
    "fp32": ("image-fp32", "text-fp32"),
    "bf16": ("image-bf16", "text-fp32"),
}
OPSET = 17
MANIFEST = "manifest.json"


@lru_cache(maxsize=1)
def library_versions() -> str:
    """Versions of what shapes an artifact, read without importing any of it."""
    parts = [f"artifact-{ARTIFACT_VERSION}", f"opset-{OPSET}", platform.machine()]
    for name in ("torch", "open_clip_torch", "onnx", "onnxruntime"):
        parts.append(f"{name}-{_installed_version(name) or 'none'}")
    return "|".join(parts)


def _installed_version(name: str) -> str | None:
    """The version of the distribution ``name`` that imports would find, as importlib.metadata gives it.

    Wheels install a ``<name>-<version>.dist-info`` folder: one listing of each folder on the
    path finds it (importlib.metadata took 37 ms of every start here, it reads more than names).
    """
    import sys

    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            stem, dot, kind = folder.rpartition(".")
            project, dash, version = stem.partition("-")
            if kind == "dist-info" and dash and project.lower() == name and "-" not in version:
                return version
    from importlib import metadata

    try:
        return metadata.version(name)  # an egg, or another layout
    except metadata.PackageNotFoundError:
        return None


def artifact_key(identity: str, precision: str) -> str:
    """What an artifact is the artifact of: the model, the precision it serves, the libraries that built it."""
    return f"{identity}|{precision}|{library_versions()}"


def folder_for(identity: str, precision: str) -> Path:
    key = artifact_key(identity, precision)
    return settings.runtime_dir() / hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


class DamagedArtifact(ModelError):
    """A runtime file that changed since it was built, or that ONNX Runtime cannot open: the artifact
    is rebuilt."""


@dataclass
class Artifact:
    folder: Path
    manifest: dict[str, Any]
    _checked: set[str] = field(default_factory=set)

    @property
    def logit_scale(self) -> float:
        return float(self.manifest["logit_scale"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def preprocess(self) -> dict[str, Any]:
        return dict(self.manifest["preprocess"])

    @property
    def tokenizer(self) -> dict[str, Any]:
        return dict(self.manifest["tokenizer"])

    @property
    def text_prefix(self) -> tuple[int, int, int] | None:
        """(layers, heads, head width) of the prefix states the text tower takes, None for whole rows
        (see :mod:`clipsort.model.texts`)."""
        shape = self.manifest.get("text_prefix")
        return (int(shape[0]), int(shape[1]), int(shape[2])) if shape else None

    def has(self, part: str) -> bool:
        return part in self.manifest["parts"]

    def why_not(self, part: str) -> str:
        return str(self.manifest.get("unsupported", {}).get(part, "not built"))

    def file(self, part: str) -> Path:
        """The file to open for ``part``, its files checked first (size and sampled hash: a file that
        changed since the build raises :class:`DamagedArtifact`). Only the parts a run opens are
        read: :func:`find` checks sizes alone."""
        if part not in self._checked:
            for name, facts in self.manifest["parts"][part]["files"].items():
                try:
                    same = file_facts(self.folder / name) == facts
                except OSError:
                    same = False
                if not same:
                    raise DamagedArtifact(f"{self.folder / name} changed since it was built")
            self._checked.add(part)
        return self.folder / self.manifest["parts"][part]["file"]

    def discard(self) -> None:
        """Remove the artifact (damaged): the next use builds it again."""
        shutil.rmtree(self.folder, ignore_errors=True)


def file_facts(path: Path) -> dict[str, Any]:
    from clipsort.model.model_files import sample_hash

    return {"size": path.stat().st_size, "sample": sample_hash(path)}


def find(identity: str, precision: str) -> Artifact | None:
    """The artifact of ``identity`` at ``precision`` for these library versions, or None (never built, or
    damaged: removed)."""
    folder = folder_for(identity, precision)
    try:
        manifest = read_json(folder / MANIFEST)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    artifact = Artifact(folder, manifest)
    try:
        if manifest.get("key") != artifact_key(identity, precision):
            raise ValueError("stale")
        for part in manifest["parts"].values():
            for name, facts in part["files"].items():
                if (folder / name).stat().st_size != facts["size"]:  # the samples: when opened
                    raise ValueError(f"{name} changed")
    except (OSError, ValueError, KeyError, TypeError):
        artifact.discard()
        return None
    return artifact
