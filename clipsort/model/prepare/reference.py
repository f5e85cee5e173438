"""open_clip's arithmetic of a standard CLIP (:class:`clipsort.model.prepare.weights.Shape`) in numpy,
for a few inputs: what the towers written from a weights file (:mod:`.graphs`) are checked
against when they are built, there being no torch to ask.

Written from open_clip's modules (``VisionTransformer``, ``CLIP.encode_text``,
``ResidualAttentionBlock``) plainly: whole sequences, every token through every block, none of
the graphs' rewrites, so a mistake in those shows. tests/test_graphs.py holds this to open_clip too.
"""

from __future__ import annotations

import numpy as np

from clipsort.model.prepare.weights import EPSILON, Shape, Tensors


def image_vectors(tensors: Tensors, shape: Shape, pixels: np.ndarray) -> np.ndarray:
    """``encode_image`` of normalised pixels (batch, 3, size, size)."""
    with np.errstate(over="ignore", under="ignore"):  # exp's overflow in QuickGELU and softmax: 0, as wanted
        return _image(tensors, shape, pixels)


def _image(tensors: Tensors, shape: Shape, pixels: np.ndarray) -> np.ndarray:
    batch, patch, width = len(pixels), shape.patch, shape.vision_width
    grid = shape.image_size // patch
    # the patch embedding (a convolution with stride = kernel) as one product
    patches = pixels.reshape(batch, 3, grid, patch, grid, patch).transpose(0, 2, 4, 1, 3, 5)
    x = _product(patches.reshape(batch, grid * grid, -1), tensors["visual.conv1.weight"].reshape(width, -1).T)
    cls = np.broadcast_to(tensors["visual.class_embedding"], (batch, 1, width))
    x = np.concatenate([cls, x], axis=1) + tensors["visual.positional_embedding"]
    x = _norm(x, tensors, "visual.ln_pre")
    for i in range(shape.vision_layers):
        x = _block(x, tensors, f"visual.transformer.resblocks.{i}", shape.vision_heads, None, shape)
    return _norm(x[:, 0], tensors, "visual.ln_post") @ tensors["visual.proj"]


def text_vectors(tensors: Tensors, shape: Shape, tokens: np.ndarray) -> np.ndarray:
    """``encode_text`` of token rows (batch, length <= the context length), zeros after the end token."""
    with np.errstate(over="ignore", under="ignore"):
        return _text(tensors, shape, tokens)


def _text(tensors: Tensors, shape: Shape, tokens: np.ndarray) -> np.ndarray:
    length = tokens.shape[1]
    x = tensors["token_embedding.weight"][tokens] + tensors["positional_embedding"][:length]
    causal = np.triu(np.full((length, length), -np.inf, dtype=np.float32), 1)
    for i in range(shape.text_layers):
        x = _block(x, tensors, f"transformer.resblocks.{i}", shape.text_heads, causal, shape)
    x = _norm(x, tensors, "ln_final")
    return x[np.arange(len(tokens)), tokens.argmax(axis=-1)] @ tensors["text_projection"]


def _norm(x: np.ndarray, tensors: Tensors, prefix: str) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + EPSILON) * tensors[f"{prefix}.weight"] + tensors[f"{prefix}.bias"]


def _linear(x: np.ndarray, tensors: Tensors, prefix: str) -> np.ndarray:
    return _product(x, tensors[f"{prefix}.weight"].T) + tensors[f"{prefix}.bias"]


def _product(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``x @ weight`` with ``x``'s rows as one matrix (numpy multiplies a stack of them 5x slower)."""
    return (x.reshape(-1, x.shape[-1]) @ weight).reshape(*x.shape[:-1], weight.shape[-1])


def _block(x: np.ndarray, t: Tensors, block: str, heads: int, mask: np.ndarray | None, shape: Shape) -> np.ndarray:
    batch, length, width = x.shape
    qkv = _product(_norm(x, t, f"{block}.ln_1"), t[f"{block}.attn.in_proj_weight"].T) + t[f"{block}.attn.in_proj_bias"]
    q, k, v = qkv.reshape(batch, length, 3, heads, width // heads).transpose(2, 0, 3, 1, 4)
    scores = (q * (width // heads) ** -0.5) @ k.transpose(0, 1, 3, 2)
    if mask is not None:
        scores = scores + mask
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    attended = (scores / scores.sum(axis=-1, keepdims=True)) @ v
    out = _linear(attended.transpose(0, 2, 1, 3).reshape(batch, length, width), t, f"{block}.attn.out_proj")
    scaled = shape.vision_scale if block.startswith("visual.") else shape.text_scale
    x = x + (out * t[f"{block}.ls_1.gamma"] if scaled else out)
    h = _linear(_norm(x, t, f"{block}.ln_2"), t, f"{block}.mlp.c_fc")
    h = h / (1 + np.exp(-1.702 * h)) if shape.quick_gelu else 0.5 * h * (1 + _erf(h * 0.7071067811865476))
    h = _linear(h, t, f"{block}.mlp.c_proj")
    return x + (h * t[f"{block}.ls_2.gamma"] if scaled else h)


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function to within 1.5e-7 (Abramowitz and Stegun, 7.1.26): numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))
