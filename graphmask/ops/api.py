"""The public ``graphmask.ops`` functions, named and behaving as ``keras.ops``.

Each function applies one primitive op (``prim.*``, declared in ``ops/primitives/``):

* on symbolic tensors (or, inside a traced ``call``, on a layer's weights) it records
  the op: inside a layer it joins that layer's group; outside any layer it is a
  functional op, which takes no mask (a masked operand is a :class:`MaskError`, where
  Keras 3 drops the mask silently);
* on NumPy arrays and numbers it computes at once with the op's kernels and returns a
  NumPy array.

Python numbers are *weak*, as in Keras: ``x * 2`` keeps ``x``'s dtype; a float number
with an integer tensor gives float32. NumPy float64 arrays mixed with float32 tensors are
taken as float32 (Keras's default float type).
"""
from __future__ import annotations

import builtins

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.ops.base import OpError, get_op

# ---- dispatch ------------------------------------------------------------------------


def _tensors():
    from graphmask.layers import tensors
    return tensors


def _is_graph_value(v) -> bool:
    t = _tensors()
    return isinstance(v, (t.SymbolicTensor, t.Variable))


def _weak_dtype(value, others) -> str:
    """The dtype of a Python number or array next to the tensors ``others``."""
    kinds = [np.dtype(o.dtype) for o in others]
    floats = [d for d in kinds if d.kind == "f"]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.ndarray):
        if floats:
            return str(floats[0])
        ints = [d for d in kinds if d.kind in "iu"]
        return str(ints[0]) if ints else "int32"
    if isinstance(value, (float, np.floating)):
        return str(floats[0]) if floats else "float32"
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        return "float64" if builtins.any(d == np.float64 for d in floats) else "float32"
    if arr.dtype.kind == "i" and arr.dtype.itemsize == 8 and not builtins.any(
            d.itemsize == 8 for d in kinds if d.kind == "i"):
        return "int32" if arr.size == 0 or builtins.abs(arr).max() < 2 ** 31 else "int64"
    return str(arr.dtype)


def _literal(layer, value, others):
    dtype = _weak_dtype(value, others)
    arr = np.asarray(value, dtype=dtype)
    if arr.dtype.kind not in "fiub":
        raise ConfigError(f"graphmask.ops: cannot use {value!r} (dtype {arr.dtype}) as a "
                          f"tensor")
    attrs = {"value": arr.tolist(), "shape": list(arr.shape), "dtype": dtype}
    return _tensors().record(layer, "literal", attrs, {}, keep=False)


def _apply(op: str, attrs: dict, **ports):
    """Apply primitive ``op``: record it on symbolic operands, else compute at once."""
    t = _tensors()
    values = [v for v in ports.values() if v is not None]
    symbolic = builtins.any(isinstance(v, t.SymbolicTensor) for v in values) or (
        t.scope_stack() and builtins.any(isinstance(v, t.Variable) for v in values))
    if symbolic:
        return _record(op, attrs, ports)
    return _eager(op, attrs, ports)


def _record(op, attrs, ports):
    t = _tensors()
    stack = t.scope_stack()
    graph_values = [v for v in ports.values() if _is_graph_value(v)]
    if stack:
        layer = stack[-1]
    else:
        masked = [v for v in graph_values
                  if isinstance(v, t.SymbolicTensor) and v.keras_mask is not None]
        if masked:
            from graphmask.errors import MaskError
            raise MaskError(
                f"graphmask.ops.{op.split('.')[-1]}: its operand carries the mask created by "
                f"{t.mask_creator(masked[0].keras_mask)}, and an op outside a layer drops "
                f"masks (Keras 3 drops it silently: the layers after it would see no mask). "
                f"Compute inside a custom layer or Lambda(fn, mask=...), or drop the mask on "
                f"purpose with Lambda(fn, mask=lambda inputs, mask: None)")
        from graphmask.layers.base import OpLayer
        layer = OpLayer(op)
    resolved = {}
    for p, v in ports.items():
        if v is None or _is_graph_value(v):
            resolved[p] = v
        else:
            resolved[p] = _literal(layer, v, graph_values)
    return t.record(layer, op, attrs, resolved, keep=not stack)


def _eager(op, attrs, ports):
    from graphmask.ops.base import Spec
    t = _tensors()
    present = {p: v for p, v in ports.items() if v is not None}
    arrays = {p: v.value for p, v in present.items() if isinstance(v, t.Variable)}
    typed = [np.asarray(a) for a in arrays.values()] + [
        v for v in present.values() if isinstance(v, np.ndarray)]
    for p, v in present.items():
        if p not in arrays:
            if isinstance(v, np.ndarray):
                arrays[p] = v
            else:
                arrays[p] = np.asarray(v, dtype=_weak_dtype(v, typed)) if typed else \
                    np.asarray(v, dtype=_weak_dtype(v, []))
    for p, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise ConfigError(f"graphmask.ops.{op.split('.')[-1]}: {p} must hold numbers, got "
                              f"dtype {a.dtype}")
    definition = get_op(op)
    specs = {p: Spec(tuple(a.shape), str(a.dtype)) for p, a in arrays.items()}
    try:
        out_specs = definition.infer(attrs, specs)
        outs = definition.forward(attrs, arrays)
    except OpError as e:
        raise ShapeError(f"graphmask.ops.{op.split('.')[-1]}: {e}") from None
    outs = [np.asarray(o) for o in outs[:len(out_specs)]]
    return outs[0] if len(outs) == 1 else outs


# ---- argument normalisation ----------------------------------------------------------
def _axis(axis, what="axis"):
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return [_axis(a, what) for a in axis]
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ConfigError(f"graphmask.ops: {what} must be an int (or a list of ints), got "
                          f"{axis!r}")
    return int(axis)


def _dtype(dtype) -> str:
    try:
        dt = np.dtype("float32" if dtype == "float" else dtype)
    except TypeError:
        raise ConfigError(f"graphmask.ops.cast: unknown dtype {dtype!r}") from None
    if dt.kind not in "fiub":
        raise ConfigError(f"graphmask.ops.cast: dtype must be numeric or bool, got {dtype!r}")
    return str(dt)


# ---- elementwise ---------------------------------------------------------------------
def _binary(name):
    def fn(x1, x2):
        return _apply(f"prim.{name}", {}, x=x1, y=x2)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``{name}`` with NumPy broadcasting (as ``keras.ops.{name}``)."
    return fn


def _unary(name):
    def fn(x):
        return _apply(f"prim.{name}", {}, x=x)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``{name}`` (as ``keras.ops.{name}``)."
    return fn


add = _binary("add")
subtract = _binary("subtract")
multiply = _binary("multiply")
divide = _binary("divide")
true_divide = divide
power = _binary("power")
maximum = _binary("maximum")
minimum = _binary("minimum")
equal = _binary("equal")
not_equal = _binary("not_equal")
greater = _binary("greater")
greater_equal = _binary("greater_equal")
less = _binary("less")
less_equal = _binary("less_equal")
logical_and = _binary("logical_and")
logical_or = _binary("logical_or")

negative = _unary("negative")
abs = _unary("abs")  # noqa: A001 (keras.ops.abs)
absolute = abs
square = _unary("square")
sqrt = _unary("sqrt")
exp = _unary("exp")
log = _unary("log")
log1p = _unary("log1p")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
relu = _unary("relu")
softplus = _unary("softplus")
logical_not = _unary("logical_not")


def clip(x, x_min, x_max):
    """``min(max(x, x_min), x_max)`` (as ``keras.ops.clip``)."""
    try:  # int bounds keep an int tensor int, as in Keras
        lo, hi = (int(b) if isinstance(b, (int, np.integer)) and not isinstance(b, bool)
                  else float(b) for b in (x_min, x_max))
    except (TypeError, ValueError):
        raise ConfigError(f"graphmask.ops.clip: x_min and x_max must be numbers, got "
                          f"{x_min!r}, {x_max!r}") from None
    return _apply("prim.clip", {"min": lo, "max": hi}, x=x)


def where(condition, x1=None, x2=None):
    """``x1`` where ``condition`` holds, else ``x2`` (as ``keras.ops.where``)."""
    if x1 is None or x2 is None:
        raise ConfigError("graphmask.ops.where: give both x1 and x2 (the one-argument form "
                          "returns indices, whose number is not known while tracing)")
    return _apply("prim.where", {}, condition=condition, x=x1, y=x2)


def cast(x, dtype):
    """``x`` converted to ``dtype`` (as ``keras.ops.cast``)."""
    return _apply("prim.cast", {"dtype": _dtype(dtype)}, x=x)


def stop_gradient(variable):
    """``variable`` unchanged, but no gradient flows through it."""
    return _apply("prim.stop_gradient", {}, x=variable)


def softmax(x, axis=-1):
    return _apply("prim.softmax", {"axis": _axis(axis)}, x=x)


def log_softmax(x, axis=-1):
    return _apply("prim.log_softmax", {"axis": _axis(axis)}, x=x)


# ---- linear algebra ------------------------------------------------------------------
def matmul(x1, x2):
    """Matrix product with NumPy's rules (batched, broadcasting)."""
    return _apply("prim.matmul", {}, x=x1, y=x2)


def einsum(subscripts, *operands):
    """Einstein summation of two operands (as ``keras.ops.einsum``)."""
    if not isinstance(subscripts, str):
        raise ConfigError(f"graphmask.ops.einsum: subscripts must be a str, got "
                          f"{subscripts!r}")
    if len(operands) != 2:
        raise ConfigError(f"graphmask.ops.einsum: takes exactly two operands, got "
                          f"{len(operands)}")
    return _apply("prim.einsum", {"subscripts": subscripts.replace(" ", "")},
                  x=operands[0], y=operands[1])


# ---- reductions ----------------------------------------------------------------------
def _reduction(name):
    def fn(x, axis=None, keepdims=False):
        return _apply(f"prim.{name}", {"axis": _axis(axis), "keepdims": bool(keepdims)}, x=x)
    fn.__name__ = name
    fn.__doc__ = f"``{name}`` over ``axis`` (as ``keras.ops.{name}``)."
    return fn


sum = _reduction("sum")  # noqa: A001
mean = _reduction("mean")
logsumexp = _reduction("logsumexp")
any = _reduction("any")  # noqa: A001
all = _reduction("all")  # noqa: A001


def max(x, axis=None, keepdims=False, initial=None):  # noqa: A001
    if initial is not None:
        raise ConfigError("graphmask.ops.max: initial is not supported")
    return _apply("prim.max", {"axis": _axis(axis), "keepdims": bool(keepdims)}, x=x)


def min(x, axis=None, keepdims=False, initial=None):  # noqa: A001
    if initial is not None:
        raise ConfigError("graphmask.ops.min: initial is not supported")
    return _apply("prim.min", {"axis": _axis(axis), "keepdims": bool(keepdims)}, x=x)


amax, amin = max, min


def argmax(x, axis=None, keepdims=False):
    return _apply("prim.argmax", {"axis": _axis(axis), "keepdims": bool(keepdims)}, x=x)


# ---- shapes --------------------------------------------------------------------------
def _ints(values, what):
    try:
        return [int(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    except (TypeError, ValueError):
        raise ConfigError(f"graphmask.ops: {what} must be ints, got {values!r}") from None


def reshape(x, newshape):
    """``x`` with shape ``newshape`` (batch axis included; one ``-1`` or ``None`` entry
    takes what is left, as ``keras.ops.reshape``)."""
    dims = list(newshape) if isinstance(newshape, (list, tuple)) else [newshape]
    dims = [-1 if d is None else d for d in dims]
    return _apply("prim.reshape", {"shape": _ints(dims, "reshape's newshape")}, x=x)


def transpose(x, axes=None):
    return _apply("prim.transpose", {"axes": None if axes is None else _ints(axes, "axes")},
                  x=x)


def expand_dims(x, axis):
    return _apply("prim.expand_dims", {"axis": _axis(axis)}, x=x)


def squeeze(x, axis=None):
    return _apply("prim.squeeze", {"axis": _axis(axis)}, x=x)


def _variadic(op, xs, axis):
    if not isinstance(xs, (list, tuple)) or not xs:
        raise ConfigError(f"graphmask.ops.{op}: needs a non-empty list of tensors, got {xs!r}")
    ports = {f"x{i}": v for i, v in enumerate(xs)}
    return _apply(f"prim.{op}", {"n": len(xs), "axis": _axis(axis)}, **ports)


def concatenate(xs, axis=0):
    return _variadic("concatenate", xs, axis)


def stack(x, axis=0):
    return _variadic("stack", x, axis)


def split(x, indices_or_sections, axis=0):
    ios = indices_or_sections
    ios = int(ios) if isinstance(ios, (int, np.integer)) else _ints(ios, "indices_or_sections")
    out = _apply("prim.split", {"indices_or_sections": ios, "axis": _axis(axis)}, x=x)
    return out if isinstance(out, list) else [out]


def repeat(x, repeats, axis=None):
    return _apply("prim.repeat", {"repeats": _ints(repeats, "repeats")[0],
                                  "axis": _axis(axis)}, x=x)


def tile(x, repeats):
    return _apply("prim.tile", {"repeats": _ints(repeats, "repeats")}, x=x)


def broadcast_to(x, shape):
    return _apply("prim.broadcast_to", {"shape": _ints(shape, "shape")}, x=x)


def take(x, indices, axis=None):
    return _apply("prim.take", {"axis": _axis(axis)}, x=x, indices=indices)


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    if sparse:
        raise ConfigError("graphmask.ops.one_hot: sparse=True is not supported")
    out = _apply("prim.one_hot", {"num_classes": _ints(num_classes, "num_classes")[0],
                                  "axis": _axis(axis)}, x=x)
    return out if dtype is None or _dtype(dtype) == "float32" else cast(out, dtype)


def _key_item(k):
    if k is None:
        return {"kind": "newaxis"}
    if k is Ellipsis:
        return {"kind": "ellipsis"}
    if isinstance(k, slice):
        parts = [None if v is None else _ints(v, "slice bounds")[0]
                 for v in (k.start, k.stop, k.step)]
        return {"kind": "slice", "start": parts[0], "stop": parts[1], "step": parts[2]}
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        return {"kind": "int", "value": int(k)}
    raise ConfigError(f"graphmask.ops: indexing supports ints, slices, None and ..., got "
                      f"{k!r} (use ops.take or ops.where for tensor indices)")


def getitem(x, key):
    """``x[key]`` with basic indexing: ints, slices (with steps), ``None``, ``...``."""
    items = key if isinstance(key, tuple) else (key,)
    return _apply("prim.getitem", {"key": [_key_item(k) for k in items]}, x=x)


# ---- conveniences --------------------------------------------------------------------
def shape(x) -> tuple:
    """The static shape (``None`` where unknown until run time)."""
    return tuple(x.shape)


def convert_to_tensor(x, dtype=None):
    if _is_graph_value(x):
        return x if dtype is None else cast(x, dtype)
    arr = np.asarray(x)
    return arr if dtype is None else arr.astype(_dtype(dtype))


def convert_to_numpy(x):
    t = _tensors()
    if isinstance(x, t.Variable):
        return x.value.copy()
    if isinstance(x, t.SymbolicTensor):
        raise ConfigError(f"graphmask.ops.convert_to_numpy: {x!r} is symbolic and has no "
                          f"values until the model runs")
    return np.asarray(x)


__all__ = [name for name in dir() if not name.startswith("_") and name not in (
    "annotations", "builtins", "np", "get_op", "OpError", "ConfigError", "ShapeError")]
