"""A standard CLIP's weights file and config, read without torch: what :mod:`.graphs` writes the
towers from.

:func:`describe` says whether a model is open_clip's standard CLIP (a plain ViT image tower
pooled at its class token, CLIP's causal text transformer pooled at its end token, LayerNorm,
GELU or QuickGELU, optional layer scale) from its config and the names and shapes in its weights
file alone; :class:`Tensors` maps the file's numbers. Anything else (other towers, other
options, pickled weights) is exported through open_clip (:mod:`.towers`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from clipsort.model.model_spec import ModelSpec

#: The options of open_clip's blocks (both towers) that the graphs write as their defaults only.
_BLOCKS: dict[str, tuple[Any, ...]] = {
    "output_tokens": (False,),
    "act_kwargs": (None,),
    "norm_kwargs": (None,),
    "block_type": (None, "default"),
    "qk_norm": (False,),
    "scaled_cosine_attn": (False,),
    "scale_heads": (False,),
    "scale_attn_inner": (False,),
    "scale_attn": (False,),
    "scale_fc": (False,),
}
#: open_clip's defaults for what :func:`describe` accepts (CLIPVisionCfg, CLIPTextCfg): a key
#: whose value is not among these is another architecture, exported through open_clip.
_VISION_FIXED: dict[str, tuple[Any, ...]] = {
    "attentional_pool": (False,),
    "no_ln_pre": (False,),
    "pos_embed_type": ("learnable",),
    "final_ln_after_pool": (False,),
    "pool_type": ("tok",),
    **_BLOCKS,
    "timm_model_name": (None,),
}
#: Options taken whatever their value: sizes, and patch dropout (a training option: nothing at inference).
_VISION_ANY = {
    "image_size",
    "layers",
    "width",
    "head_width",
    "mlp_ratio",
    "patch_size",
    "ls_init_value",
    "patch_dropout",
}
_TEXT_FIXED: dict[str, tuple[Any, ...]] = {
    "vocab_size": (49408,),  # CLIP's tokenizer: the one clipsort runs without torch
    "hf_tokenizer_name": (None,),
    "tokenizer_mode": (None,),
    "tokenizer_kwargs": (None, {}),
    "embed_cls": (False,),
    "pad_id": (0,),
    "no_causal_mask": (False,),
    "final_ln_after_pool": (False,),
    "pool_type": ("argmax",),
    "proj_bias": (False,),
    "proj_type": ("linear",),
    **_BLOCKS,
    "hf_model_name": (None,),
}
_TEXT_ANY = {"context_length", "width", "heads", "layers", "mlp_ratio", "ls_init_value", "eos_id"}
_MODEL_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}
#: open_clip's LayerNorm.
EPSILON = 1e-5
_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}
_SIZES = {"F32": 4, "F16": 2, "BF16": 2}


# ----------------------------------------------------------------------------- the weights file


class Tensors(Mapping[str, np.ndarray]):
    """The tensors of a safetensors file, each read when asked for as float32 (float32 ones mapped,
    not read; float16 and bfloat16 ones widened exactly), so that only the tensor in hand takes
    memory. Their shapes are known from the header alone. Raises ValueError for a file that is
    not one."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                raise ValueError("too short for a safetensors file")
            length = struct.unpack("<Q", head)[0]
            if length > 100 << 20:
                raise ValueError("a safetensors header over 100 MB")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("a safetensors header that is not an object")
        start, size = 8 + length, path.stat().st_size
        self._mapped = np.memmap(path, dtype=np.uint8, mode="r")
        self._entries: dict[str, tuple[str, int, int]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            kind = entry.get("dtype")
            if kind not in _DTYPES:
                raise ValueError(f"{name}: dtype {kind} is not a float type clipsort reads")
            begin, end = (int(v) for v in entry["data_offsets"])
            shape = tuple(int(v) for v in entry["shape"])
            if not 0 <= begin <= end or start + end > size or end - begin != math.prod(shape) * _SIZES[kind]:
                raise ValueError(f"{name}: its numbers lie outside the file or do not fill its shape")
            self._entries[name] = (kind, start + begin, start + end)
            self.shapes[name] = shape

    def __getitem__(self, name: str) -> np.ndarray:
        kind, begin, end = self._entries[name]
        raw = self._mapped[begin:end].view(_DTYPES[kind]).reshape(self.shapes[name])
        if kind == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw if kind == "F32" else raw.astype(np.float32)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


# ----------------------------------------------------------------------------- what is supported


@dataclass(frozen=True)
class Shape:
    """The sizes of a standard CLIP, from its config and checked against its weights."""

    embed_dim: int
    image_size: int
    patch: int
    vision_width: int
    vision_heads: int
    vision_layers: int
    text_width: int
    text_heads: int
    text_layers: int
    context_length: int
    quick_gelu: bool
    vision_scale: bool
    text_scale: bool


def describe(model_cfg: dict[str, Any], tensors: Tensors) -> Shape | str:
    """The model's :class:`Shape` when its towers can be written here, or why not (a sentence)."""
    try:
        return _describe(model_cfg, tensors)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return f"not open_clip's standard CLIP ({exc})"


def _describe(cfg: dict[str, Any], tensors: Tensors) -> Shape | str:
    unknown = set(cfg) - _MODEL_KEYS
    if unknown:
        return f"model options {sorted(unknown)}"
    vision, text = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"])
    for part, fixed, sizes in (("vision", _VISION_FIXED, _VISION_ANY), ("text", _TEXT_FIXED, _TEXT_ANY)):
        given = vision if part == "vision" else text
        for key, value in given.items():
            if key not in sizes and not any(_same(value, v) for v in fixed.get(key, ("-",))):
                return f"{part} option {key}={value!r}"
    size = vision.get("image_size", 224)
    patch = vision.get("patch_size", 16)
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            return f"image size {size} (not square)"
        size = size[0]
    if not isinstance(size, int) or not isinstance(patch, int) or not isinstance(vision.get("layers", 12), int):
        return "vision sizes that are not plain numbers"
    width = int(vision.get("width", 768))
    shape = Shape(
        embed_dim=int(cfg["embed_dim"]),
        image_size=size,
        patch=patch,
        vision_width=width,
        vision_heads=width // int(vision.get("head_width", 64)),
        vision_layers=int(vision.get("layers", 12)),
        text_width=int(text.get("width", 512)),
        text_heads=int(text.get("heads", 8)),
        text_layers=int(text.get("layers", 12)),
        context_length=int(text.get("context_length", 77)),
        quick_gelu=bool(cfg.get("quick_gelu", False)),
        vision_scale=vision.get("ls_init_value") is not None,
        text_scale=text.get("ls_init_value") is not None,
    )
    expected = _expected(shape, float(vision.get("mlp_ratio", 4.0)), float(text.get("mlp_ratio", 4.0)))
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        return f"weights that differ from the config's (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, wanted in expected.items():
        if tensors.shapes[name] != wanted and not (name == "logit_scale" and tensors.shapes[name] == (1,)):
            return f"weight {name} of shape {tensors.shapes[name]}, not {wanted}"
    return shape


def _same(value: Any, allowed: Any) -> bool:
    return value is None if allowed is None else type(value) is type(allowed) and value == allowed


def _expected(s: Shape, vision_mlp: float, text_mlp: float) -> dict[str, tuple[int, ...]]:
    """Every tensor open_clip's CLIP of shape ``s`` saves, with its shape."""
    grid = s.image_size // s.patch
    if grid * s.patch != s.image_size:
        raise ValueError(f"image size {s.image_size} is not a multiple of the patch size {s.patch}")
    names: dict[str, tuple[int, ...]] = {
        "logit_scale": (),
        "visual.class_embedding": (s.vision_width,),
        "visual.positional_embedding": (grid * grid + 1, s.vision_width),
        "visual.conv1.weight": (s.vision_width, 3, s.patch, s.patch),
        "visual.proj": (s.vision_width, s.embed_dim),
        "token_embedding.weight": (49408, s.text_width),
        "positional_embedding": (s.context_length, s.text_width),
        "text_projection": (s.text_width, s.embed_dim),
    }
    for norm, width in (
        ("visual.ln_pre", s.vision_width),
        ("visual.ln_post", s.vision_width),
        ("ln_final", s.text_width),
    ):
        names[f"{norm}.weight"] = names[f"{norm}.bias"] = (width,)
    towers = (
        ("visual.transformer", s.vision_width, s.vision_layers, vision_mlp, s.vision_scale),
        ("transformer", s.text_width, s.text_layers, text_mlp, s.text_scale),
    )
    for prefix, width, layers, mlp, scale in towers:
        hidden = int(width * mlp)
        for i in range(layers):
            block = f"{prefix}.resblocks.{i}"
            names[f"{block}.attn.in_proj_weight"] = (3 * width, width)
            names[f"{block}.attn.in_proj_bias"] = (3 * width,)
            names[f"{block}.attn.out_proj.weight"] = (width, width)
            names[f"{block}.mlp.c_fc.weight"] = (hidden, width)
            names[f"{block}.mlp.c_fc.bias"] = (hidden,)
            names[f"{block}.mlp.c_proj.weight"] = (width, hidden)
            for bias in (
                "attn.out_proj.bias",
                "mlp.c_proj.bias",
                "ln_1.weight",
                "ln_1.bias",
                "ln_2.weight",
                "ln_2.bias",
            ):
                names[f"{block}.{bias}"] = (width,)
            if scale:
                names[f"{block}.ls_1.gamma"] = names[f"{block}.ls_2.gamma"] = (width,)
    return names


# ----------------------------------------------------------------------------- where they are


#: open_clip's PreprocessCfg defaults (OPENAI_DATASET_MEAN and _STD), which configs and tags amend.
PREPROCESS_DEFAULTS: dict[str, Any] = {
    "size": 224,
    "mode": "RGB",
    "mean": (0.48145466, 0.4578275, 0.40821073),
    "std": (0.26862954, 0.26130258, 0.27577711),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}
#: open_clip's order of preference among the weights files of a model folder.
_PREFERRED = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)


@dataclass(frozen=True)
class Source:
    """A model's safetensors weights, its ``model_cfg``, and its preprocessing as open_clip ends with it."""

    weights: Path
    model_cfg: dict[str, Any]
    preprocess: dict[str, Any] = field(default_factory=dict)

    def preprocess_for(self, image_size: int) -> dict[str, Any]:
        """open_clip's ``visual.preprocess_cfg``: the size is the image tower's."""
        return {**self.preprocess, "size": [image_size, image_size]}


def _merged(base: dict[str, Any], overlay: Any) -> dict[str, Any]:
    """open_clip's merge_preprocess_dict: the overlay's known keys that are not None win."""
    overlay = overlay if isinstance(overlay, dict) else {}
    return {**base, **{k: v for k, v in overlay.items() if k in PREPROCESS_DEFAULTS and v is not None}}


def source_of(spec: ModelSpec) -> Source | str:
    """Where ``spec``'s weights and configs are, as open_clip would load them, when the weights are a
    safetensors file already on this machine; else why not. Imports neither torch nor open_clip."""
    from clipsort import settings
    from clipsort.model import model_files
    from clipsort.model.model_spec import CONFIG_NAME, RANDOM, known_models

    offline = settings.models_dir() / spec.folder_name
    try:
        if spec.kind == "local-dir":
            return _in_folder(Path(spec.name))
        if spec.kind == "hf-hub":
            config = model_files.hf_cached(spec.name, [CONFIG_NAME])
            if config is not None and _checkpoint_in(Path(config).parent) is not None:
                return _in_folder(Path(config).parent)
            return _in_folder(offline) if (offline / CONFIG_NAME).is_file() else "not downloaded yet"
        if spec.pretrained in (None, RANDOM):
            return "random weights are made by open_clip"
        model_cfg = _builtin_config(spec.name)
        if os.path.isfile(spec.pretrained):
            return _safetensors(Path(spec.pretrained), model_cfg, dict(PREPROCESS_DEFAULTS))
        tag = known_models().module.get_pretrained_cfg(spec.name, spec.pretrained)
        if (offline / CONFIG_NAME).is_file():
            return _in_folder(offline)
        cached, _ = model_files.cached_tag_weights(tag)
        if cached is None:
            return "not downloaded yet"
        return _safetensors(Path(cached), model_cfg, _merged(PREPROCESS_DEFAULTS, tag))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"its files could not be read ({exc})"


def _builtin_config(name: str) -> dict[str, Any]:
    import importlib.util

    from clipsort.safe_files import read_json

    found = importlib.util.find_spec("open_clip")  # finds the package without running it
    if found is None or not found.submodule_search_locations:
        raise ValueError("open_clip is not installed")
    folder = Path(next(iter(found.submodule_search_locations)))
    config = read_json(folder / "model_configs" / f"{name}.json")
    if not isinstance(config, dict):
        raise ValueError(f"the config of {name} is not an object")
    return config


def _in_folder(folder: Path) -> Source | str:
    from clipsort.model.model_spec import CONFIG_NAME
    from clipsort.safe_files import read_json

    config = read_json(folder / CONFIG_NAME)
    weights = _checkpoint_in(folder)
    if weights is None:
        return "no weights file"
    return _safetensors(weights, config["model_cfg"], _merged(PREPROCESS_DEFAULTS, config.get("preprocess_cfg")))


def _checkpoint_in(folder: Path) -> Path | None:
    """The weights file open_clip chooses in ``folder`` (its ``_find_checkpoint_in_dir``)."""
    found = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth"))
    if not found:
        return None
    found.sort(key=lambda p: p.suffix == ".safetensors", reverse=True)
    preferred = sorted((p for p in found if p.name in _PREFERRED), key=lambda p: _PREFERRED.index(p.name))
    return (preferred or found)[0]


def _safetensors(weights: Path, model_cfg: Any, preprocess: dict[str, Any]) -> Source | str:
    if weights.suffix != ".safetensors":
        return f"its weights are a pickled {weights.suffix} file (torch reads those)"
    if not isinstance(model_cfg, dict):
        return "a model config that is not an object"
    return Source(weights, model_cfg, preprocess)
