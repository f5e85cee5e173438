"""open_clip's towers as functions that export well: the torch side of :mod:`clipsort.model.prepare.export`.

Imports torch and open_clip (only when a fast-runtime artifact is built). Two rewrites make
the exported graphs faster, with the same arithmetic (each tower is checked against
open_clip before it is kept):

* **Attention written out, batch first.** torch's ``nn.MultiheadAttention`` works sequence
  first inside, exports as eight transposes a block and traces its sequence length into the
  graph as a constant. Written out (:func:`plain_attention`), a block has two transposes and
  lengths are read from the input: ViT-B-32's int8 image tower ran 8-12% faster on an AVX2
  CPU, its text tower about 10% faster.
* **Text with a shared prefix** (:func:`prefix_text_encoder`). A causal mask means a token's
  state depends only on the tokens before it, so prompts that begin alike ("a photo of a ...",
  the templates of every label) can compute their common beginning once: the tower takes the
  prefix's keys and values from an earlier call (``past``) and returns its own (``kv``).
"""

from __future__ import annotations

import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipsort.errors import ModelError


def attention_can_be_rewritten(transformer: Any) -> bool:
    """Every block of ``transformer`` is open_clip's plain block around a batch-first ``nn.MultiheadAttention``."""
    from open_clip.transformer import ResidualAttentionBlock

    blocks = list(getattr(transformer, "resblocks", []))
    return bool(blocks) and all(
        type(b) is ResidualAttentionBlock
        and isinstance(getattr(b, "attn", None), torch.nn.MultiheadAttention)
        and b.attn.batch_first
        and b.attn._qkv_same_embed_dim
        and not hasattr(b, "ln_1_kv")  # cross-attention
        for b in blocks
    )


def _qkv(block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of ``x`` (batch, length, width), each (batch, heads, length, head width)."""
    mha = block.attn
    batch, width = x.shape[0], x.shape[2]
    heads = mha.num_heads
    qkv = torch.nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias)
    qkv = qkv.reshape(batch, -1, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def _attend(block: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention of (batch, heads, length, head width) tensors, through the block's output projection."""
    batch, heads, length, head_width = q.shape
    scores = (q * head_width**-0.5) @ k.transpose(-1, -2)
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    out = torch.softmax(scores, dim=-1) @ v
    return block.attn.out_proj(out.transpose(1, 2).reshape(batch, length, heads * head_width))


def last_block(
    block: Any, x: torch.Tensor, index: torch.Tensor | None, mask: torch.Tensor | None, past: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last block for the one token a row that is pooled afterwards: (its state, (batch, width);
    the block's keys and values, (2, batch, heads, length, head width)).

    Keys and values come from every token, but the query, the attention's output and the MLP
    from the pooled token alone: the same numbers for a sixth of the block's arithmetic
    (ViT-B-32's image tower: 6% less in all). ``index`` (batch,): the pooled token of each row,
    None for the first; ``mask``: (batch, 1, length, keys) or None; ``past``: (2, batch, heads,
    prefix length, head width) or None.
    """
    mha = block.attn
    batch, width = x.shape[0], int(mha.embed_dim)  # a constant: the weights' slices are folded into the graph
    heads = mha.num_heads
    h = block.ln_1(x)
    kv = torch.nn.functional.linear(h, mha.in_proj_weight[width:], mha.in_proj_bias[width:])
    kv = kv.reshape(batch, -1, 2, heads, width // heads).permute(2, 0, 3, 1, 4)
    keys, values = (kv[0], kv[1]) if past is None else (torch.cat([past[0], kv[0]], 2), torch.cat([past[1], kv[1]], 2))
    if index is None:
        row_x, row_h, row_mask = x[:, 0], h[:, 0], None if mask is None else mask[:, :, :1]
    else:
        rows = torch.arange(batch)
        row_x, row_h = x[rows, index], h[rows, index]
        row_mask = None if mask is None else mask[rows, :, index].unsqueeze(2)
    q = torch.nn.functional.linear(row_h, mha.in_proj_weight[:width], mha.in_proj_bias[:width])
    q = q.reshape(batch, heads, 1, width // heads)
    pooled = row_x + block.ls_1(_attend(block, q, keys, values, row_mask)[:, 0])
    return pooled + block.ls_2(block.mlp(block.ln_2(pooled))), kv


def plain_attention(block: Any, q_x: Any, k_x: Any = None, v_x: Any = None, attn_mask: Any = None) -> Any:
    """A block's self-attention, ``nn.MultiheadAttention``'s arithmetic written out (see the module)."""
    q, k, v = _qkv(block, q_x)
    return _attend(block, q, k, v, attn_mask)


def rewrite_attention(transformer: Any) -> None:
    """Make every block of ``transformer`` run :func:`plain_attention` (bound to the block, so that
    a deep copy of the module keeps its own weights)."""
    for block in transformer.resblocks:
        block.attention = types.MethodType(plain_attention, block)


def text_shares_prefixes(model: Any) -> bool:
    """Whether a prompt's vector depends only on its own tokens, each on those before it: a causal
    mask, pooling at the end token, open_clip's plain blocks."""
    import open_clip

    return (
        type(model) is open_clip.CLIP
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "argmax") in ("argmax", "eos")
        and attention_can_be_rewritten(getattr(model, "transformer", None))
    )


def prefix_text_encoder(model: Any) -> Any:
    """open_clip's ``CLIP.encode_text`` for prompts whose first tokens were computed by an earlier call.

    ``forward(tokens, positions, past, past_mask) -> (vectors, kv)``:

    * ``tokens`` (batch, length): each prompt's tokens after its prefix, end token included,
      zeros after it; ``positions`` (batch, length): their positions in the whole prompt;
    * ``past`` (layers, 2, batch, heads, prefix length, head width): the prefix's keys and
      values, and ``past_mask`` (batch, prefix length): 0 where a row has a prefix token,
      -inf past its own prefix (prefixes differ in length);
    * ``vectors`` (batch, dim): open_clip's text features; ``kv``: these tokens' keys and
      values, the ``past`` of later calls.

    With a prefix length of 0 this is ``encode_text`` of prompts cut to their longest.
    """
    blocks = list(model.transformer.resblocks)
    cast = model.transformer.get_cast_dtype()

    def forward(
        tokens: torch.Tensor, positions: torch.Tensor, past: torch.Tensor, past_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length = tokens.shape
        x = model.token_embedding(tokens).to(cast) + model.positional_embedding[positions].to(cast)
        causal = model.attn_mask[:length, :length].to(cast).expand(batch, 1, length, length)
        earlier = past_mask.to(cast)[:, None, None, :].expand(batch, 1, length, past_mask.shape[1])
        mask = torch.cat([earlier, causal], dim=-1)
        kv = []
        for i, block in enumerate(blocks[:-1]):
            q, k, v = _qkv(block, block.ln_1(x))
            kv.append(torch.stack([k, v]))
            keys = torch.cat([past[i, 0], k], dim=2)
            values = torch.cat([past[i, 1], v], dim=2)
            x = x + block.ls_1(_attend(block, q, keys, values, mask))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        # open_clip's text_global_pool: the end token (the highest id, or the model's own)
        if model.text_pool_type == "eos":
            index = (tokens == model.text_eos_id).int().argmax(dim=-1)
        else:
            index = tokens.argmax(dim=-1)
        pooled, last = last_block(blocks[-1], x, index, mask, past[-1])
        kv.append(last)
        x = model.ln_final(pooled)
        projection = model.text_projection
        if projection is not None:
            x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
        return x, torch.stack(kv)

    return forward


def prefix_shape(model: Any) -> tuple[int, int, int]:
    """(layers, heads, head width) of the text tower's ``past``."""
    blocks = list(model.transformer.resblocks)
    heads = blocks[0].attn.num_heads
    return len(blocks), heads, blocks[0].attn.embed_dim // heads


def export_onnx(
    owner: Any,
    forward: Any,
    inputs: dict[str, tuple[Any, dict[int, str]]],
    outputs: dict[str, dict[int, str]],
    target: Path,
    opset: int,
) -> None:
    """Export ``forward`` (a function of the tensors of ``inputs``; ``owner`` the module whose weights
    it uses) to ONNX at ``target``. ``inputs``: name -> (example, dynamic axes); ``outputs``:
    name -> dynamic axes.

    The exporter is given no weights (``export_params=False``: it would hold the graph's weights
    twice more while it serialises them, 1 GB more for ViT-B-32's image tower); they are written
    here, each straight from its tensor, to ``<target>.weights``, which the graph names as its
    external data. Constants the weights fold into (transposes, slices) are folded by ONNX Runtime
    afterwards (:mod:`clipsort.model.prepare.export`)."""

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owner = owner  # its weights become the graph's weights, not constants

        def forward(self, *batch: torch.Tensor) -> Any:
            return forward(*batch)

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX export
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes
            torch.onnx.export(
                Tower().eval(),
                tuple(example for example, _ in inputs.values()),
                str(target),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes={**{name: axes for name, (_, axes) in inputs.items()}, **outputs},
                opset_version=opset,
                dynamo=False,
                export_params=False,
                do_constant_folding=False,  # with no weights given, folding would make inputs of its own
            )
        _attach_weights(target, set(inputs), Tower())
    except Exception as exc:  # the exporter raises whatever it meets
        raise ModelError(f"cannot export the model to ONNX: {exc}") from exc
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _attach_weights(target: Path, real_inputs: set[str], module: torch.nn.Module) -> None:
    """Make the graph's inputs that are ``module``'s weights its initializers, their numbers in
    ``<target>.weights`` (external data), each written from its tensor without a copy."""
    import onnx
    from onnx import helper

    model = onnx.load(str(target))
    tensors = {**dict(module.named_buffers()), **dict(module.named_parameters())}
    data = target.with_suffix(".weights")
    kept_inputs = []
    offset = 0
    with open(data, "wb") as handle:
        for graph_input in model.graph.input:
            tensor = tensors.get(graph_input.name)
            if graph_input.name in real_inputs or tensor is None:
                kept_inputs.append(graph_input)
                continue
            array = tensor.detach().contiguous().numpy()
            initializer = onnx.TensorProto(name=graph_input.name, dims=list(array.shape))
            initializer.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            initializer.data_location = onnx.TensorProto.EXTERNAL
            padding = -offset % 64  # aligned, as onnx writes external data
            handle.write(b"\0" * padding)
            offset += padding
            handle.write(array.reshape(-1).view(np.uint8).data)  # the tensor's own bytes, not a copy
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(array.nbytes))):
                entry = initializer.external_data.add()
                entry.key, entry.value = key, value
            offset += array.nbytes
            model.graph.initializer.append(initializer)
    del model.graph.input[:]
    model.graph.input.extend(kept_inputs)
    onnx.save(model, str(target))


def image_encoder(model: Any) -> Any:
    """open_clip's ``CLIP.encode_image`` with attention written out and the last block for the class
    token alone (:func:`last_block`), for plain ViTs pooled at their class token; else as it is."""
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    transformer: Any = getattr(visual, "transformer", None)
    if not attention_can_be_rewritten(transformer):
        return model.encode_image
    rewrite_attention(transformer)
    if not (
        type(visual) is VisionTransformer
        and visual.attn_pool is None
        and visual.pool_type == "tok"
        and not getattr(visual, "output_tokens", False)
    ):
        return model.encode_image
    blocks = list(transformer.resblocks)

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        x = visual._embeds(pixels)
        for block in blocks[:-1]:
            x = block(x)
        pooled = visual.ln_post(last_block(blocks[-1], x, None, None, None)[0])  # a norm of each token alone
        return pooled @ visual.proj if visual.proj is not None else pooled

    return forward


def export_image(model: Any, pixels: np.ndarray, target: Path, opset: int) -> None:
    """The image tower (input ``input``: normalised pixels, output ``output``), see :func:`image_encoder`."""
    example = torch.from_numpy(pixels[:2])
    forward = image_encoder(model)
    export_onnx(model, forward, {"input": (example, {0: "batch"})}, {"output": {0: "batch"}}, target, opset)


def export_text(model: Any, tokens: np.ndarray, target: Path, opset: int) -> bool:
    """The text tower; True when it takes a shared prefix (:func:`prefix_text_encoder`), False when it
    takes whole rows of the context length (input ``input``, output ``output``)."""
    if not text_shares_prefixes(model):
        example = torch.from_numpy(tokens[:2])
        forward = model.encode_text
        export_onnx(model, forward, {"input": (example, {0: "batch"})}, {"output": {0: "batch"}}, target, opset)
        return False
    layers, heads, width = prefix_shape(model)
    prefix, length = 3, 5
    example = torch.from_numpy(np.ascontiguousarray(tokens[:2, prefix : prefix + length]))
    positions = torch.arange(prefix, prefix + length).expand(2, length).contiguous()
    past = torch.zeros(layers, 2, 2, heads, prefix, width)
    past_mask = torch.zeros(2, prefix)
    past_mask[1, 2:] = float("-inf")
    rows, span = {0: "batch", 1: "length"}, {2: "batch", 4: "prefix"}
    export_onnx(
        model,
        prefix_text_encoder(model),
        {
            "input": (example, rows),
            "positions": (positions, rows),
            "past": (past, span),
            "past_mask": (past_mask, {0: "batch", 1: "prefix"}),
        },
        {"output": {0: "batch"}, "kv": {2: "batch", 4: "length"}},
        target,
        opset,
    )
    return True


def trace_bf16(model: Any, pixels: np.ndarray, target: Path) -> None:
    """The image tower in bf16 as a TorchScript file: it loads with torch alone (no open_clip,
    no torchvision) and holds bf16 weights only (175 MB for ViT-B-32, against 350 in fp32)."""
    import copy

    visual = copy.deepcopy(model.visual).to(torch.bfloat16).eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(visual, torch.from_numpy(pixels[:2]).to(torch.bfloat16), check_trace=False)
            torch.jit.save(traced, str(target))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def drop_text_tower(model: Any) -> None:
    """Let go of ``model``'s text tower (exported already), so that the image tower's export fits
    beside what is left (ViT-B-32: 250 MB, given back by :func:`clipsort.model.prepare.export.release_memory`).

    Weights loaded from a safetensors file are pages of the file mapped into memory: freeing their
    tensors leaves the pages resident while the mapping lives, so the pages wholly inside the text
    weights (and in no weight kept) are given back with ``madvise(MADV_DONTNEED)`` first."""
    kept = (
        {id(p) for p in model.visual.parameters()}
        if isinstance(getattr(model, "visual", None), torch.nn.Module)
        else set()
    )
    spans = [
        (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size())
        for t in [*model.parameters(), *model.buffers()]
        if id(t) in kept
    ]
    dropped = [
        (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size())
        for t in [*model.parameters(), *model.buffers()]
        if id(t) not in kept and t.device.type == "cpu"
    ]
    _give_back_pages(dropped, spans)
    for name in ("transformer", "token_embedding", "ln_final", "text"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            setattr(model, name, torch.nn.Identity())
    for name in ("positional_embedding", "text_projection"):
        if isinstance(getattr(model, name, None), torch.nn.Parameter):
            setattr(model, name, None)


def _give_back_pages(spans: list[tuple[int, int]], kept: list[tuple[int, int]]) -> None:
    """``madvise(MADV_DONTNEED)`` the whole pages inside ``spans`` that no span of ``kept`` touches
    (Linux; elsewhere nothing is done). Only for memory that is not read again."""
    import ctypes
    import mmap
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    page = mmap.PAGESIZE
    for start, end in spans:
        first, last = -(-start // page) * page, end // page * page
        if last <= first or any(a < last and first < b for a, b in kept):
            continue
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED
