"""A model's towers written as ONNX graphs straight from its weights file: the fast runtime's first
run without torch (part of :mod:`clipsort.model.prepare.export`).

For open_clip's standard CLIP (a plain ViT image tower pooled at its class token, CLIP's causal
text transformer pooled at its end token, LayerNorm, GELU or QuickGELU, optional layer scale)
whose weights are a safetensors file, the graphs are the arithmetic open_clip runs, written
here node by node, with the same rewrites as the torch export (:mod:`clipsort.model.prepare.towers`:
attention written out, the last block for the pooled token alone, the text tower taking a shared
prefix's keys and values). No torch and no open_clip are imported: a first run took 12 s to
prepare ViT-B-32 through torch's exporter, most of it importing torch and tracing.

:func:`clipsort.model.prepare.weights.describe` says whether a model is one of these; anything else
is exported through open_clip as before. The graphs are checked against open_clip by the test suite
for every option they accept (tests/test_graphs.py), not at each build: there is no torch here to
check them against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsort.errors import ModelError
from clipsort.model.prepare import protos
from clipsort.model.prepare.weights import EPSILON, Shape, Tensors

if TYPE_CHECKING:
    pass


# ----------------------------------------------------------------------------- writing graphs


class _Graph:
    """Nodes and weights of one ONNX graph; the weights written as they come to ``data`` (external
    data, 64-byte aligned as onnx writes it), small constants kept in the graph."""

    def __init__(self, data: Path, int8: bool) -> None:
        self.int8 = int8
        self._dynamic: dict[str, tuple[str, str, str]] = {}
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.data = data
        self._handle = open(data, "wb")  # noqa: SIM115 - closed by finish()
        self._offset = 0
        self._count = 0
        self._constants: dict[tuple[Any, ...], str] = {}

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes: Any) -> Any:
        """Add a node; returns its output's name (a list of them for ``outputs`` > 1)."""
        self._count += 1
        names = [f"{op_type.lower()}_{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(protos.make_node(op_type, list(inputs), names, name=f"{op_type}_{self._count}", **attributes))
        return names[0] if outputs == 1 else names

    def weight(self, name: str, array: np.ndarray) -> str:
        """``array`` as the initializer ``name``, its numbers in the data file."""
        array = np.ascontiguousarray(array)
        initializer = protos.messages().TensorProto(name=name, dims=list(array.shape))
        initializer.data_type = protos.DATA_TYPES[array.dtype]
        initializer.data_location = 1  # EXTERNAL
        padding = -self._offset % 64
        self._handle.write(b"\0" * padding)
        self._offset += padding
        self._handle.write(array.reshape(-1).view(np.uint8).data)
        for key, value in (("location", self.data.name), ("offset", str(self._offset)), ("length", str(array.nbytes))):
            entry = initializer.external_data.add()
            entry.key, entry.value = key, value
        self._offset += array.nbytes
        self.initializers.append(initializer)
        return name

    def matmul(self, x: str, name: str, weight: np.ndarray, quantized: bool = True) -> str:
        """``x @ weight`` ((K, N), float32); in int8 graphs with 8-bit weights (unless not ``quantized``),
        quantized here as :mod:`clipsort.model.prepare.quantize` quantizes an exported graph."""
        from clipsort.model.prepare.quantize import integer_matmul, per_column

        if not (self.int8 and quantized):
            return self.op("MatMul", x, self.weight(name, weight))
        self._quantized(name, per_column, weight)
        if x not in self._dynamic:
            self._dynamic[x] = self.op("DynamicQuantizeLinear", x, outputs=3)
        self._count += 1
        out = f"matmul_{self._count}"
        self.nodes.extend(integer_matmul(self._dynamic[x], name, out, f"MatMul_{self._count}"))
        return out

    def table(self, name: str, table: np.ndarray, ids: str) -> str:
        """``table[ids]``; a big table (a token embedding) in 8 bits in int8 graphs."""
        from clipsort.model.prepare.quantize import GATHER_MIN, dequantized_gather, per_tensor

        if not self.int8 or table.size < GATHER_MIN:
            return self.op("Gather", self.weight(name, table), ids)
        self._quantized(name, per_tensor, table)
        self._count += 1
        out = f"gather_{self._count}"
        self.nodes.extend(dequantized_gather(name, ids, out, f"Gather_{self._count}"))
        return out

    def _quantized(self, name: str, quantize: Callable[[np.ndarray], Any], weight: np.ndarray) -> None:
        try:
            numbers, scale, zero = quantize(weight)
        except ValueError as exc:
            raise ModelError(f"weight {name} holds {exc}: the model cannot run") from None
        self.weight(f"{name}__q", numbers)
        self.initializers += [
            protos.tensor(f"{name}__scale", scale),
            protos.tensor(f"{name}__zero", zero),
        ]

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        """A small constant (shapes, indices, scalars), kept once."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = f"const_{len(self._constants)}"
            self.initializers.append(protos.tensor(name, array))
            self._constants[key] = name
        return self._constants[key]

    def __enter__(self) -> _Graph:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def finish(self, target: Path, inputs: list[Any], outputs: list[Any]) -> None:
        from clipsort.model.artifact import OPSET

        self._handle.close()
        pb = protos.messages()
        graph = pb.GraphProto(
            name="tower", node=self.nodes, input=inputs, output=outputs, initializer=self.initializers
        )
        model = pb.ModelProto(ir_version=8, graph=graph, producer_name="clipsort")
        model.opset_import.add(domain="", version=OPSET)
        target.write_bytes(model.SerializeToString())


class _Towers:
    """The arithmetic of open_clip's blocks on a :class:`_Graph`, weights taken from ``tensors``."""

    def __init__(self, graph: _Graph, tensors: Tensors, shape: Shape) -> None:
        self.g = graph
        self.t = tensors
        self.s = shape

    def w(self, name: str, transform: Any = None) -> str:
        array = self.t[name]
        return self.g.weight(name, array if transform is None else transform(array))

    def norm(self, x: str, prefix: str) -> str:
        return self.g.op(
            "LayerNormalization", x, self.w(f"{prefix}.weight"), self.w(f"{prefix}.bias"), axis=-1, epsilon=EPSILON
        )

    def linear(self, x: str, weight: str, bias: str | None, rows: slice | None = None) -> str:
        """``x @ W.T + b`` (torch's ``linear``), ``W`` stored transposed; ``rows``: a slice of W's rows.

        A slice stays in float32 in int8 graphs, as in those exported through open_clip (whose
        quantizer sees a slice of a weight, not a weight): the same model gets the same int8
        vectors either way."""
        part = (lambda a: a[rows]) if rows is not None else (lambda a: a)
        suffix = "" if rows is None else f".{rows.start or 0}-{rows.stop}"
        out = self.g.matmul(x, f"{weight}{suffix}", part(self.t[weight]).T, quantized=rows is None)
        if bias is None:
            return out
        return self.g.op("Add", out, self.g.weight(f"{bias}{suffix}", part(self.t[bias])))

    def scaled(self, x: str, block: str, which: str, scale: bool) -> str:
        return self.g.op("Mul", x, self.w(f"{block}.{which}.gamma")) if scale else x

    def mlp(self, x: str, block: str, scale: bool) -> str:
        g = self.g
        h = self.linear(self.norm(x, f"{block}.ln_2"), f"{block}.mlp.c_fc.weight", f"{block}.mlp.c_fc.bias")
        if self.s.quick_gelu:  # x * sigmoid(1.702 x)
            h = g.op("Mul", h, g.op("Sigmoid", g.op("Mul", h, g.const(1.702, np.float32))))
        else:  # GELU as torch exports it: x * (1 + erf(x / sqrt 2)) * 0.5
            erf = g.op("Erf", g.op("Div", h, g.const(math.sqrt(2.0), np.float32)))
            h = g.op("Mul", g.op("Mul", h, g.op("Add", erf, g.const(1.0, np.float32))), g.const(0.5, np.float32))
        h = self.linear(h, f"{block}.mlp.c_proj.weight", f"{block}.mlp.c_proj.bias")
        return g.op("Add", x, self.scaled(h, block, "ls_2", scale))

    def heads(self, x: str, parts: int, width: int, heads: int) -> str:
        """(batch, length, parts * width) -> (parts, batch, heads, length, head width)."""
        split = self.g.op("Reshape", x, self.g.const([0, -1, parts, heads, width // heads]))
        return self.g.op("Transpose", split, perm=[2, 0, 3, 1, 4])

    def take(self, x: str, index: int, axis: int = 0) -> str:
        return self.g.op("Gather", x, self.g.const(index), axis=axis)

    def attend(self, q: str, k: str, v: str, mask: str | None, width: int, heads: int, rows: list[int]) -> str:
        """Softmax attention of (batch, heads, length, head width) queries and values and (batch, heads,
        head width, length) keys, reshaped to ``rows`` + [width]."""
        g = self.g
        scores = g.op("MatMul", g.op("Mul", q, g.const((width // heads) ** -0.5, np.float32)), k)
        if mask is not None:
            scores = g.op("Add", scores, mask)
        out = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        return g.op("Reshape", g.op("Transpose", out, perm=[0, 2, 1, 3]), g.const([*rows, width]))

    def block(
        self,
        x: str,
        block: str,
        width: int,
        heads: int,
        scale: bool,
        past: tuple[str, str] | None = None,
        mask: str | None = None,
    ) -> tuple[str, str | None]:
        """A whole block; returns (its output, its keys and values stacked: (2, batch, heads, length, head
        width), for a block given ``past``, else None)."""
        g = self.g
        qkv = self.linear(self.norm(x, f"{block}.ln_1"), f"{block}.attn.in_proj_weight", f"{block}.attn.in_proj_bias")
        kv = None
        if past is None:  # each of q, k, v taken, then laid out as attention reads it (keys transposed)
            split = g.op("Reshape", qkv, g.const([0, -1, 3, heads, width // heads]))
            q, k, v = (
                g.op("Transpose", self.take(split, i, axis=2), perm=order)
                for i, order in enumerate(([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]))
            )
        else:
            q, k, v = (self.take(self.heads(qkv, 3, width, heads), i) for i in range(3))
            kv = g.op("Concat", g.op("Unsqueeze", k, g.const([0])), g.op("Unsqueeze", v, g.const([0])), axis=0)
            k, v = g.op("Concat", past[0], k, axis=2), g.op("Concat", past[1], v, axis=2)
            k = g.op("Transpose", k, perm=[0, 1, 3, 2])
        out = self.attend(q, k, v, mask, width, heads, [0, -1])
        out = self.linear(out, f"{block}.attn.out_proj.weight", f"{block}.attn.out_proj.bias")
        x = g.op("Add", x, self.scaled(out, block, "ls_1", scale))
        return self.mlp(x, block, scale), kv

    def last_block(
        self,
        x: str,
        block: str,
        width: int,
        heads: int,
        scale: bool,
        index: str | None,
        past: tuple[str, str] | None = None,
        mask: str | None = None,
    ) -> tuple[str, str]:
        """The last block for the pooled token of each row alone (:func:`clipsort.model.prepare.towers.last_block`):
        (its state (batch, width), the block's keys and values). ``index`` (batch, 1): the pooled
        token of each row, None for the first."""
        g = self.g
        weight, bias = f"{block}.attn.in_proj_weight", f"{block}.attn.in_proj_bias"
        h = self.norm(x, f"{block}.ln_1")
        kv = self.heads(self.linear(h, weight, bias, slice(width, 3 * width)), 2, width, heads)
        k, v = self.take(kv, 0), self.take(kv, 1)
        if past is not None:
            k, v = g.op("Concat", past[0], k, axis=2), g.op("Concat", past[1], v, axis=2)
        k = g.op("Transpose", k, perm=[0, 1, 3, 2])
        if index is None:
            row_x, row_h = self.take(x, 0, axis=1), self.take(h, 0, axis=1)
        else:
            assert mask is not None, "a pooled token of each row comes with the rows' mask"
            row_x, row_h = (g.op("GatherND", t, index, batch_dims=1) for t in (x, h))
            # mask (batch, 1, length, keys) -> the pooled token's row, (batch, 1, 1, keys)
            rows = g.op("GatherND", g.op("Transpose", mask, perm=[0, 2, 1, 3]), index, batch_dims=1)
            mask = g.op("Unsqueeze", rows, g.const([2]))
        q = self.linear(row_h, weight, bias, slice(0, width))
        q = g.op("Reshape", q, g.const([0, heads, 1, width // heads]))
        out = self.linear(
            self.attend(q, k, v, mask, width, heads, [0]),
            f"{block}.attn.out_proj.weight",
            f"{block}.attn.out_proj.bias",
        )
        pooled = g.op("Add", row_x, self.scaled(out, block, "ls_1", scale))
        return self.mlp(pooled, block, scale), kv


def write_image_tower(tensors: Tensors, shape: Shape, target: Path, int8: bool) -> None:
    """open_clip's ``encode_image`` of a plain ViT (input ``input``: normalised pixels, output
    ``output``), its weights in ``<target stem>.weights``."""
    with _Graph(target.with_suffix(".weights"), int8) as graph:
        _image_tower(graph, tensors, shape, target)


def _image_tower(graph: _Graph, tensors: Tensors, shape: Shape, target: Path) -> None:
    towers, g, s = _Towers(graph, tensors, shape), graph, shape
    width, heads = s.vision_width, s.vision_heads
    x = g.op(
        "Conv", "input", towers.w("visual.conv1.weight"), kernel_shape=[s.patch, s.patch], strides=[s.patch, s.patch]
    )
    x = g.op("Transpose", g.op("Reshape", x, g.const([0, width, -1])), perm=[0, 2, 1])  # (batch, patches, width)
    batch = g.op("Slice", g.op("Shape", x), g.const([0]), g.const([1]))
    cls = g.weight("visual.class_embedding", tensors["visual.class_embedding"].reshape(1, 1, width))
    cls = g.op("Expand", cls, g.op("Concat", batch, g.const([1, width]), axis=0))
    x = g.op("Add", g.op("Concat", cls, x, axis=1), towers.w("visual.positional_embedding"))
    x = towers.norm(x, "visual.ln_pre")
    for i in range(s.vision_layers - 1):
        x, _ = towers.block(x, f"visual.transformer.resblocks.{i}", width, heads, s.vision_scale)
    x, _ = towers.last_block(
        x, f"visual.transformer.resblocks.{s.vision_layers - 1}", width, heads, s.vision_scale, None
    )
    x = g.matmul(towers.norm(x, "visual.ln_post"), "visual.proj", tensors["visual.proj"])
    inputs = [protos.value_info("input", protos.FLOAT, ["batch", 3, s.image_size, s.image_size])]
    g.nodes[-1].output[0] = "output"
    outputs = [protos.value_info("output", protos.FLOAT, ["batch", s.embed_dim])]
    g.finish(target, inputs, outputs)


def write_text_tower(tensors: Tensors, shape: Shape, target: Path, int8: bool) -> None:
    """open_clip's ``encode_text`` taking a shared prefix (:func:`clipsort.model.prepare.towers.prefix_text_encoder`
    says what goes in and out), its weights in ``<target stem>.weights``."""
    with _Graph(target.with_suffix(".weights"), int8) as graph:
        _text_tower(graph, tensors, shape, target)


def _text_tower(graph: _Graph, tensors: Tensors, shape: Shape, target: Path) -> None:
    towers, g, s = _Towers(graph, tensors, shape), graph, shape
    width, heads, layers = s.text_width, s.text_heads, s.text_layers
    tokens = g.table("token_embedding.weight", tensors["token_embedding.weight"], "input")
    x = g.op("Add", tokens, g.table("positional_embedding", tensors["positional_embedding"], "positions"))
    dims = g.op("Shape", "input")
    batch = g.op("Slice", dims, g.const([0]), g.const([1]))
    length = g.op("Slice", dims, g.const([1]), g.const([2]))
    causal = np.triu(np.full((s.context_length, s.context_length), -np.inf, dtype=np.float32), 1)
    causal_name = g.weight("attn_mask", causal)
    causal_now = g.op("Slice", causal_name, g.const([0, 0]), g.op("Concat", length, length, axis=0), g.const([0, 1]))
    causal_now = g.op("Unsqueeze", causal_now, g.const([0, 1]))  # (1, 1, length, length)
    one = g.const([1])
    causal_now = g.op("Expand", causal_now, g.op("Concat", batch, one, one, one, axis=0))
    earlier = g.op("Unsqueeze", "past_mask", g.const([1, 2]))  # (batch, 1, 1, prefix)
    earlier = g.op("Expand", earlier, g.op("Concat", one, one, length, one, axis=0))
    mask = g.op("Concat", earlier, causal_now, axis=-1)
    kv = []
    for i in range(layers - 1):
        layer_past = towers.take("past", i)
        past = (towers.take(layer_past, 0), towers.take(layer_past, 1))
        x, states = towers.block(x, f"transformer.resblocks.{i}", width, heads, s.text_scale, past, mask)
        assert states is not None  # a block given past returns its own
        kv.append(states)
    index = g.op(
        "Unsqueeze", g.op("ArgMax", "input", axis=-1, keepdims=0), g.const([1])
    )  # the end token: the highest id
    layer_past = towers.take("past", layers - 1)
    past = (towers.take(layer_past, 0), towers.take(layer_past, 1))
    x, states = towers.last_block(
        x, f"transformer.resblocks.{layers - 1}", width, heads, s.text_scale, index, past, mask
    )
    kv.append(states)
    g.matmul(towers.norm(x, "ln_final"), "text_projection", tensors["text_projection"])
    g.nodes[-1].output[0] = "output"
    g.op("Concat", *(g.op("Unsqueeze", states, g.const([0])) for states in kv), axis=0)
    g.nodes[-1].output[0] = "kv"
    rows = ["batch", "length"]
    inputs = [
        protos.value_info("input", protos.INT64, rows),
        protos.value_info("positions", protos.INT64, rows),
        protos.value_info("past", protos.FLOAT, [layers, 2, "batch", heads, "prefix", width // heads]),
        protos.value_info("past_mask", protos.FLOAT, ["batch", "prefix"]),
    ]
    outputs = [
        protos.value_info("output", protos.FLOAT, ["batch", s.embed_dim]),
        protos.value_info("kv", protos.FLOAT, [layers, 2, "batch", heads, "length", width // heads]),
    ]
    g.finish(target, inputs, outputs)
