"""int8 weights for the fast runtime's towers, computed in numpy (part of :mod:`clipsort.model.prepare.export`).

Every ``MatMul`` by a constant weight and every ``Gather`` from a constant table (the text tower's
token embedding) gets 8-bit weights, as ``onnxruntime.quantization.quantize_dynamic`` gives them
for these graphs, but computed a whole matrix at a time: that function quantizes each output
channel in a Python loop, 6.4 s for ViT-B-32's image tower and 3.2 s for its text tower on two
cores, most of a model's first run; this takes about a second for both.

``MatMul(x, W)``, ``W`` (K, N): ``W`` becomes unsigned 8-bit with one scale and zero point per
output column (its least and greatest values, zero included, map to 0 and 255); ``x`` is
quantized when the tower runs::

    x_q, x_scale, x_zero = DynamicQuantizeLinear(x)
    y = Cast(MatMulInteger(x_q, W_q, x_zero, W_zero), float) * (x_scale * W_scale)

which ONNX Runtime fuses into one ``DynamicQuantizeMatMul`` when it optimises the graph.
Unsigned weights, as before: on x86 CPUs without VNNI the products of unsigned activations and
signed weights can saturate (ViT-B-32 on 47 photos, least cosine to fp32: signed per tensor
0.9875, unsigned per channel 0.9998, at the same speed). ``Gather(T, ids)``: the table
unsigned 8-bit per tensor, a ``DequantizeLinear`` after the gather.

The towers are checked against open_clip afterwards (:mod:`clipsort.model.prepare.export`): one that
loses too much is not kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipsort.model.prepare import protos

#: A Gather's table is quantized from this many numbers on (a token embedding; not a small constant).
GATHER_MIN = 1 << 16


def quantize_weights(source: Path, target: Path) -> int:
    """Write ``source``'s graph to ``target`` with 8-bit weights (see the module). Returns how many
    operations were quantized; 0 leaves ``target`` unwritten."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source), load_external_data=False)  # each weight is read when quantized
    graph = model.graph
    tables = {init.name: init for init in graph.initializer}
    added: list[Any] = []
    nodes: list[Any] = []
    quantized_inputs: dict[str, tuple[str, str, str]] = {}
    count = 0

    def constant(name: str) -> np.ndarray | None:
        init = tables.get(name)
        if init is None or init.data_type != TensorProto.FLOAT:
            return None
        if init.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(init)
        where = {entry.key: entry.value for entry in init.external_data}
        count = int(np.prod(init.dims)) if init.dims else 1
        offset = int(where.get("offset", 0))
        numbers = np.fromfile(source.parent / where["location"], dtype="<f4", count=count, offset=offset)
        return numbers.reshape(tuple(init.dims))

    def dynamic(x: str) -> tuple[str, str, str]:
        """``x`` quantized as it runs (once, however many MatMuls read it)."""
        if x not in quantized_inputs:
            names = (f"{x}__q", f"{x}__scale", f"{x}__zero")
            nodes.append(helper.make_node("DynamicQuantizeLinear", [x], list(names), name=f"{x}__quantize"))
            quantized_inputs[x] = names
        return quantized_inputs[x]

    def store(base: str, quantize: Any) -> None:
        """``base``'s 8-bit numbers, scale and zero point as initializers (once, however many nodes read it)."""
        names = [f"{base}__q", f"{base}__scale", f"{base}__zero"]
        if names[0] not in stored:
            stored.add(names[0])
            added.extend(numpy_helper.from_array(array, name) for array, name in zip(quantize(), names, strict=True))

    stored: set[str] = set()
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        weight, bias = _weight_of(node, constant, producers)
        table = constant(node.input[0]) if node.op_type == "Gather" else None
        if weight is not None:
            base = node.input[1]
            store(base, lambda weight=weight: per_column(weight.astype(np.float32)))
            out = node.output[0]
            product = out if bias is None else f"{out}__product"
            nodes += integer_matmul(dynamic(node.input[0]), base, product, node.name)
            if bias is not None:  # a Gemm's C
                nodes.append(helper.make_node("Add", [product, bias], [out], name=f"{node.name}__bias"))
            count += 1
        elif table is not None and table.size >= GATHER_MIN:
            base = node.input[0]
            store(base, lambda table=table: per_tensor(table.astype(np.float32)))
            out = node.output[0]
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes += dequantized_gather(base, node.input[1], out, node.name, **attributes)
            count += 1
        else:
            nodes.append(node)
    if not count:
        return 0
    nodes = _live(nodes, {output.name for output in graph.output})
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used] + added
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target))
    return count


def integer_matmul(x: tuple[str, str, str], base: str, out: str, name: str) -> list[Any]:
    """``out = x @ W`` in 8 bits: ``x``'s quantized numbers, scale and zero point (from a
    ``DynamicQuantizeLinear``), ``W``'s in the initializers ``<base>__q``, ``__scale``, ``__zero``."""
    x_q, x_scale, x_zero = x
    return [
        protos.make_node("MatMulInteger", [x_q, f"{base}__q", x_zero, f"{base}__zero"], [f"{out}__int"]),
        protos.make_node("Cast", [f"{out}__int"], [f"{out}__float"], to=protos.FLOAT),
        protos.make_node("Mul", [x_scale, f"{base}__scale"], [f"{out}__scales"]),
        protos.make_node("Mul", [f"{out}__float", f"{out}__scales"], [out], name=name),
    ]


def dequantized_gather(base: str, ids: str, out: str, name: str, **attributes: Any) -> list[Any]:
    """``out = T[ids]`` from the 8-bit table ``T`` in the initializers ``<base>__q``, ``__scale``, ``__zero``."""
    return [
        protos.make_node("Gather", [f"{base}__q", ids], [f"{out}__q"], **attributes),
        protos.make_node("DequantizeLinear", [f"{out}__q", f"{base}__scale", f"{base}__zero"], [out], name=name),
    ]


def _live(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """``nodes`` without those whose results nothing reads (a weight's transpose, now quantized)."""
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]


def _weight_of(node: Any, constant: Any, producers: dict[str, Any]) -> tuple[np.ndarray | None, str | None]:
    """The constant (K, N) weight a ``MatMul`` or plain ``Gemm`` multiplies by (a weight's 2-D
    transpose, as torch exports ``linear``, taken as the transposed weight), and a Gemm's bias input."""
    from onnx import helper

    if node.op_type == "MatMul" and len(node.input) == 2:
        weight = constant(node.input[1])
        source = producers.get(node.input[1])
        if weight is None and source is not None and source.op_type == "Transpose":
            perm = [helper.get_attribute_value(a) for a in source.attribute if a.name == "perm"]
            inner = constant(source.input[0])
            if inner is not None and inner.ndim == 2 and (not perm or list(perm[0]) == [1, 0]):
                weight = inner.T
        return (weight, None) if weight is not None and weight.ndim == 2 else (None, None)
    if node.op_type != "Gemm":
        return None, None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0 or attributes.get("transA", 0):
        return None, None
    weight = constant(node.input[1])
    if weight is None or weight.ndim != 2:
        return None, None
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    return (weight.T if attributes.get("transB", 0) else weight), bias


def per_column(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsigned 8-bit ``weight`` (K, N) with a scale and zero point per column (N,). Raises ValueError
    for a weight that holds values that are not numbers (NaN, infinite)."""
    low = np.minimum(weight.min(axis=0), 0.0)
    high = np.maximum(weight.max(axis=0), 0.0)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError("values that are not numbers")
    scale = ((high - low) / 255.0).astype(np.float32)
    scale[scale == 0] = 1.0
    zero = np.clip(np.round(-low / scale), 0, 255).astype(np.uint8)
    numbers = np.divide(weight, scale, dtype=np.float32)  # one array, worked in place
    np.round(numbers, out=numbers)
    numbers += zero
    np.clip(numbers, 0, 255, out=numbers)
    return numbers.astype(np.uint8), scale, zero


def per_tensor(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsigned 8-bit ``table`` with one scale and zero point (scalars). Raises ValueError for a table
    that holds values that are not numbers."""
    low, high = min(float(table.min()), 0.0), max(float(table.max()), 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("values that are not numbers")
    scale = np.float32((high - low) / 255.0 or 1.0)
    zero = np.uint8(np.clip(round(-low / float(scale)), 0, 255))
    numbers = np.divide(table, scale, dtype=np.float32)  # one array, worked in place (a token table: 100 MB)
    np.round(numbers, out=numbers)
    numbers += np.float32(zero)
    np.clip(numbers, 0, 255, out=numbers)
    quantized = numbers.astype(np.uint8)
    return quantized, np.array(scale, dtype=np.float32), np.array(zero, dtype=np.uint8)
