"""Rules shared by the primitive ops: dtypes, broadcasting, axes, gradient reduction.

Dtypes (as ``keras.ops``): float inputs give float32 unless a float input is float64;
int and float together give that float; ints alone follow ``np.promote_types``; bool
stays bool where NumPy keeps it. Shapes: NumPy broadcasting where a static ``None``
(unknown until run time) broadcast with 1 stays ``None`` and with ``n`` becomes ``n``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphmask.ops.base import IGNORES_MASK, Op, OpError, Spec

#: dtypes a primitive accepts (``cast`` may produce any of them).
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")


class Prim(Op):
    """Base of every ``prim.*`` op: masks are ignored, errors name the op."""

    def mask_rule(self, attrs):
        return IGNORES_MASK

    def error(self, message: str) -> OpError:
        """An :class:`OpError` whose message starts with the op name."""
        return OpError(f"{self.name}: {message}")

    def check_dtype(self, port: str, dtype: str) -> str:
        if dtype not in DTYPES:
            raise self.error(f"input {port} has unsupported dtype {dtype!r}; "
                             f"supported: {', '.join(DTYPES)}")
        return dtype


def kind(dtype) -> str:
    """``'b'`` (bool), ``'i'``/``'u'`` (ints) or ``'f'`` (floats)."""
    return np.dtype(dtype).kind


def float_of(*dtypes: str) -> str:
    """The float result of float-valued math: float64 if any input is float64, else float32."""
    return "float64" if "float64" in (str(d) for d in dtypes) else "float32"


def promote(*dtypes: str) -> str:
    """Result dtype of arithmetic on ``dtypes`` (see the module docstring)."""
    floats = [str(d) for d in dtypes if kind(d) == "f"]
    if floats:
        return float_of(*floats)
    out = np.dtype(dtypes[0])
    for d in dtypes[1:]:
        out = np.promote_types(out, d)
    return str(out)


def broadcast_static(op: Prim, shapes: Sequence[tuple], ports: Sequence[str]) -> tuple:
    """NumPy broadcasting of static shapes holding ``None`` (unknown) dimensions."""
    rank = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            desc = ", ".join(f"{p} {tuple(s)}" for p, s in zip(ports, shapes))
            raise op.error(f"cannot broadcast the shapes of {desc}")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


def broadcast_run(op: Prim, arrays: Sequence[np.ndarray], ports: Sequence[str]) -> tuple:
    """The broadcast shape of concrete arrays, or an :class:`OpError` naming them."""
    try:
        return tuple(np.broadcast_shapes(*(a.shape for a in arrays)))
    except ValueError:
        desc = ", ".join(f"{p} {a.shape}" for p, a in zip(ports, arrays))
        raise op.error(f"cannot broadcast the shapes of {desc}") from None


def norm_axis(op: Prim, axis, rank: int, arg: str = "axis") -> int:
    """``axis`` as a non-negative int below ``rank`` (negative counts from the end)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise op.error(f"{arg} must be an int, got {axis!r}")
    if not -rank <= axis < rank:
        raise op.error(f"{arg}={axis} is out of range for rank {rank}")
    return int(axis) % rank


def norm_axes(op: Prim, axis, rank: int, arg: str = "axis") -> tuple:
    """``None`` (every axis), an int or a list of ints, as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(rank))
    items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    axes = [norm_axis(op, a, rank, arg) for a in items]
    if len(set(axes)) != len(axes):
        raise op.error(f"{arg}={axis!r} repeats an axis")
    return tuple(sorted(axes))


def int_list(op: Prim, value, arg: str, allow_none: bool = False) -> list:
    """A list of ints (``None`` entries allowed if asked), or an OpError naming ``arg``."""
    items = value if isinstance(value, (list, tuple)) else None
    if items is None or not all(
            (v is None and allow_none) or
            (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) for v in items):
        raise op.error(f"{arg} must be a list of ints, got {value!r}")
    return [None if v is None else int(v) for v in items]


def sum_to_shape(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` over the axes broadcasting added to an input of ``shape``."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + i] != 1)
    return np.sum(g, axis=axes).reshape(shape)


def reference_unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Reference twin of :func:`sum_to_shape`: one axis at a time."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def zeros_or(g, shape, dtype) -> np.ndarray:
    """The cotangent ``g`` as ``dtype``, or zeros where no gradient flows (``None``)."""
    if g is None:
        return np.zeros(shape, dtype=dtype)
    return np.asarray(g, dtype=dtype)


def spec(shape, dtype) -> Spec:
    return Spec(tuple(shape), str(dtype))
