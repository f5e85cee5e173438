"""onnx's protobuf messages (``onnx.onnx_ml_pb2``) and the few helpers :mod:`.graphs` writes with,
without importing the onnx package: its ``__init__`` pulls in ml_dtypes, whose extension took
0.55 s of a first run's 2.7 s of preparation here. The generated module is plain protobuf code;
it is run alone under a private name (as :mod:`clipsort.model.model_spec` runs open_clip's
catalog). Once onnx itself is imported its own classes are used, so that messages made here
and there mix.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

_PRIVATE = "_clipsort_onnx_ml_pb2"
_LOCK = threading.Lock()
#: ONNX's TensorProto.DataType numbers of the arrays the graphs hold.
DATA_TYPES = {np.dtype(np.float32): 1, np.dtype(np.uint8): 2, np.dtype(np.int8): 3, np.dtype(np.int64): 7}
FLOAT, INT64 = 1, 7
_ATTRIBUTE_FLOAT, _ATTRIBUTE_INT, _ATTRIBUTE_STRING, _ATTRIBUTE_INTS = 1, 2, 3, 7


def messages() -> Any:
    """The module of ONNX's message classes: onnx's own once onnx is imported, else the private copy."""
    real = sys.modules.get("onnx.onnx_ml_pb2")
    if real is not None:
        return real
    with _LOCK:
        private = sys.modules.get(_PRIVATE)
        if private is None:
            found = importlib.util.find_spec("onnx")
            if found is None or not found.submodule_search_locations:
                raise ImportError("onnx is not installed")
            path = Path(next(iter(found.submodule_search_locations))) / "onnx_ml_pb2.py"
            spec = importlib.util.spec_from_file_location(_PRIVATE, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot read {path}")
            private = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(private)
            sys.modules[_PRIVATE] = private
        return private


def make_node(
    op_type: str, inputs: Iterable[str], outputs: Iterable[str], name: str | None = None, **attributes: Any
) -> Any:
    """onnx.helper.make_node for the attributes the graphs use (ints, floats, strings, lists of ints)."""
    node = messages().NodeProto(op_type=op_type, input=list(inputs), output=list(outputs), name=name or "")
    for key, value in sorted(attributes.items()):
        attribute = node.attribute.add()
        attribute.name = key
        if isinstance(value, bool | int | np.integer):
            attribute.type, attribute.i = _ATTRIBUTE_INT, int(value)
        elif isinstance(value, float | np.floating):
            attribute.type, attribute.f = _ATTRIBUTE_FLOAT, float(value)
        elif isinstance(value, str):
            attribute.type, attribute.s = _ATTRIBUTE_STRING, value.encode()
        elif isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
            attribute.type = _ATTRIBUTE_INTS
            attribute.ints.extend(value)
        else:
            raise TypeError(f"attribute {key}={value!r}: not one the graphs write")
    return node


def tensor(name: str, array: np.ndarray) -> Any:
    """onnx.numpy_helper.from_array: ``array``'s numbers kept in the message."""
    array = np.asarray(array, order="C")  # (ascontiguousarray would make a scalar a 1-D array)
    return messages().TensorProto(
        name=name, dims=list(array.shape), data_type=DATA_TYPES[array.dtype], raw_data=array.tobytes()
    )


def value_info(name: str, data_type: int, dims: Iterable[int | str]) -> Any:
    """onnx.helper.make_tensor_value_info: a graph's input or output, its sizes numbers or names."""
    info = messages().ValueInfoProto(name=name)
    info.type.tensor_type.elem_type = data_type
    for dim in dims:
        entry = info.type.tensor_type.shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = int(dim)
    return info
