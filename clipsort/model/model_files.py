"""Where a model's files are: its weights (cached, in a folder, or to download), its config
and what identifies its vectors; no torch is imported here.

Weights are cached under :func:`clipsort.settings.hf_cache_dir`. Loading looks in
the cache *before* touching the network, so a cached model loads offline at once,
and a missing one fails fast with a message saying where to put it
(:class:`~clipsort.errors.ModelUnavailableError`) instead of retrying for a minute.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from clipsort import settings
from clipsort.errors import LabelFileError, ModelError, ModelUnavailableError, UsageError
from clipsort.labels.label_set import LabelSet, check_dimension
from clipsort.model.devices import resolve_precision
from clipsort.model.model_spec import (
    CONFIG_NAME,
    HF_HOST,
    HF_PREFIX,
    LOCAL_PREFIX,
    RANDOM,
    ModelSpec,
    known_models,
    nearest,
)
from clipsort.safe_files import MODEL_CONFIG_LIMIT, read_json, read_regular

if TYPE_CHECKING:
    from clipsort.store.cache import EmbeddingCache

# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """Arguments for open_clip.create_model_and_transforms."""

    model_name: str
    pretrained: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Describes where the weights come from (shown to the user).
    origin: str = ""

    @property
    def downloads(self) -> bool:
        """Whether loading it downloads the weights (asked for by the user's choice of model)."""
        return self.origin.startswith("download")


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
        data = read_json(config)
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


def hf_cached(repo: str, filenames: Sequence[str]) -> str | None:
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
        config = hf_cached(spec.name, [CONFIG_NAME])
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

    check_known(spec)  # built-in architecture
    if spec.pretrained is None:  # check_known refused it; kept for the type checker
        raise UsageError(f"model {spec.name} needs --pretrained")
    if spec.pretrained == RANDOM:
        return _Source(spec.name, None, origin="random weights")
    if os.path.isfile(spec.pretrained):
        return _Source(spec.name, spec.pretrained, origin=spec.pretrained)
    tag_cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if not tag_cfg:  # check_known read another catalog than open_clip's own
        raise ModelError(f"unknown pretrained tag {spec.pretrained!r} for {spec.name} ('clipsort models' lists them)")
    if (offline_folder / CONFIG_NAME).is_file():
        _check_local_dir(offline_folder)
        return _Source(LOCAL_PREFIX + str(offline_folder), None, origin=str(offline_folder))
    cached, url = cached_tag_weights(tag_cfg)
    if cached is not None:
        # Load the cached file directly: open_clip would otherwise ask the Hub first.
        # open_clip takes the tag's preprocessing from the tag, not from a file: it is given here
        given = {f"image_{key}": tag_cfg.get(key) for key in ("mean", "std", "interpolation", "resize_mode")}
        kwargs = {key: value for key, value in given.items() if value is not None}
        return _Source(spec.name, cached, kwargs, origin=f"cache {cached}")
    if not _reachable(url):
        raise _unavailable(spec, url, [hf_dir, offline_folder])
    return _Source(spec.name, spec.pretrained, origin=f"download from {url}")


def check_known(spec: ModelSpec, given: str | None = None) -> None:
    """Refuse, in a moment and before anything is cached for it, a model that does not exist: an
    architecture open_clip does not know (``given``: the name as the person wrote it; the nearest
    known names are told), a tag it has not for that architecture, a folder or checkpoint file that
    is not there. Reads open_clip's catalog without importing it (:func:`clipsort.model.model_spec.catalog`)."""
    given = given or spec.name
    if spec.kind == "local-dir":
        _check_local_dir(Path(spec.name))
        return
    if spec.kind != "builtin":
        return
    known = known_models()
    if spec.name not in known.architectures:
        close = nearest(given, known.architectures)
        hint = f"; nearest: {', '.join(close)}" if close else ""
        path_like = given.startswith((".", "~")) or os.sep in given or "/" in given
        what = f"no model folder {given!r} and no model of that name" if path_like else f"unknown model {given!r}"
        raise ModelError(f"{what}{hint} ('clipsort models' lists them; or hf-hub:ORG/REPO, local-dir:FOLDER)")
    tags = known.tags(spec.name)
    listed = ", ".join(tags) if tags else "none published"
    if spec.pretrained is None:
        raise UsageError(
            f"model {spec.name} needs --pretrained: a tag ({listed}), a checkpoint file, or 'none' for random weights"
        )
    if spec.pretrained == RANDOM or os.path.isfile(spec.pretrained):
        return
    if spec.pretrained.lower().replace("-", "_") in tags:  # open_clip's own reading of a tag
        return
    if os.sep in spec.pretrained or Path(spec.pretrained).suffix:
        raise ModelError(f"checkpoint file {spec.pretrained} does not exist")
    close = nearest(spec.pretrained, tags)
    hint = f"; nearest: {', '.join(close)}" if close else ""
    listed = listed if len(tags) <= 6 or not close else "'clipsort models' lists them"
    raise ModelError(f"unknown pretrained tag {spec.pretrained!r} for {spec.name}{hint} ({listed})")


def cached_tag_weights(tag_cfg: dict[str, Any]) -> tuple[str | None, str]:
    """(path of the cached weights or None, where they would be downloaded from)."""
    module = known_models().module
    hub = tag_cfg.get("hf_hub") or ""
    if hub:
        repo, filename = os.path.split(hub)  # "org/repo/" means the default file name
        filename = filename or module.HF_WEIGHTS_NAME
        names = [*module._get_safe_alternatives(filename), filename]
        return hf_cached(repo, names), f"https://{HF_HOST}/{repo}"
    url = tag_cfg.get("url") or ""
    if url:
        target = settings.hf_cache_dir() / os.path.basename(urlparse(url).path)
        return (str(target) if target.is_file() else None), url
    return None, f"https://{HF_HOST}"


# ----------------------------------------------------------------------------- identity


def sample_hash(path: Path, chunk: int = 1 << 20) -> str:
    """Size + hash of the first and last MiB of a weights file."""
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=12)
    digest.update(size.to_bytes(8, "little"))
    with open(path, "rb") as handle:
        digest.update(handle.read(chunk))
        if size > chunk:
            handle.seek(max(size - chunk, chunk))
            digest.update(handle.read(chunk))
    return digest.hexdigest()


def model_identity(spec: ModelSpec, decode_version: str) -> str | None:
    """What makes this model's vectors this model's, without importing torch.

    Architecture + pretrained tag; or a hash of the weights file (and of the config,
    which holds the preprocessing) for checkpoint files, local folders and Hub
    repos in the download cache. None when the model must be downloaded first.
    """
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
        cached = hf_cached(spec.name, [CONFIG_NAME])
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
            model_cfg = read_json(config_file)
            preprocess_cfg: dict[str, Any] = {}
        else:
            config = read_json(_config_folder(spec) / CONFIG_NAME)
            model_cfg = config["model_cfg"]
            preprocess_cfg = config.get("preprocess_cfg") or {}
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None
    if not isinstance(model_cfg, dict):
        return None
    return {**model_cfg, "preprocess_cfg": preprocess_cfg if isinstance(preprocess_cfg, dict) else {}}


def identity_version(precision: str) -> str:
    """What the cache adds to a model's identity for vectors of ``precision``: int8 vectors are cached apart."""
    from clipsort.store.cache import DECODE_VERSION

    return DECODE_VERSION + ("|int8" if precision == "int8" else "")


def sticky_precision(spec: ModelSpec, device: str, precision: str, cache: EmbeddingCache | None) -> str:
    """``precision`` resolved for ``device``; ``auto`` on a CPU keeps float vectors where the cache has them.

    Before the fast runtime, ``auto`` on CPUs meant bf16 or fp32; a library indexed then keeps
    its float vectors (the fp32 runtime, same start-up) rather than being embedded again in int8.
    """
    chosen = resolve_precision(precision, device)
    if precision != "auto" or chosen != "int8" or cache is None:
        return chosen
    floats = model_identity(spec, identity_version("fp32"))
    ints = model_identity(spec, identity_version("int8"))
    if floats is not None and ints is not None and cache.holds_images(floats) and not cache.holds_images(ints):
        return "fp32"
    return chosen


def model_key(spec: ModelSpec) -> str | None:
    """What a learned label file records of its model (:class:`clipsort.labels.label_set.ModelRecord`):
    its identity, without the decoder's version."""
    return model_identity(spec, "")


def check_learned_labels(labels: LabelSet, spec: ModelSpec) -> None:
    """Refuse a learned label file under another model than the one it was learned with, or whose
    vectors are not of the model's size (read from its config files: no model is loaded)."""
    if labels.model is None:
        return
    key = model_key(spec)
    if key is not None and key != labels.model.identity:
        raise LabelFileError(
            labels.source,
            f"learned with model {labels.model.display}, but this run uses {spec.display}: "
            f"use --model {labels.model.display} or learn again with this model",
        )
    check_dimension(labels, embed_dim(spec), spec.display)


def embed_dim(spec: ModelSpec) -> int | None:
    """How many numbers the model's vectors hold, as its config files say (without torch); None
    when they cannot be read."""
    value = (read_model_config(spec) or {}).get("embed_dim")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


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
    try:
        data = read_regular(config, MODEL_CONFIG_LIMIT, "model config")
    except OSError:
        return None
    config_hash = hashlib.blake2b(data, digest_size=8).hexdigest()
    return f"folder|config:{config_hash}|weights:{sample_hash(weights[0])}|{decode_version}"


# ----------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ModelListing:
    architecture: str
    tags: tuple[str, ...]
    cached_tags: tuple[str, ...]


def list_models() -> list[ModelListing]:
    """Every architecture open_clip knows, its pretrained tags, and which are cached here."""
    known = known_models()
    rows = []
    for arch in known.architectures:
        tags = known.tags(arch)
        cached = []
        for tag in tags:
            if (settings.models_dir() / f"{arch}__{tag}" / CONFIG_NAME).is_file():
                cached.append(tag)
                continue
            path, _ = cached_tag_weights(known.pretrained[arch][tag])
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
