"""Embedding: ``W[ids]`` with checked ids; optionally creates the mask ``ids != 0``.

Semantics (Keras 3, see docs/masking semantics): the output has shape
``ids.shape + (output_dim,)`` and the float dtype of the table; row 0 is returned as it
is (``mask_zero`` does not zero it). Ids may have any integer dtype, or be floats that
hold whole numbers (they are cast). An id outside ``[0, input_dim)``, negative ones
included, raises :class:`~graphmask.errors.IdRangeError`; a float id that is not a
whole number raises :class:`~graphmask.errors.InputError`.

With ``mask_zero=True`` the mask pass inserts ``mask_not_equal(ids, value=0)``; the op
itself neither takes nor reads a mask. The gradient with respect to the table is the
dense ``(input_dim, output_dim)`` scatter-add of the output cotangent rows.
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import IdRangeError, InputError
from graphmask.kernels import embedding as K
from graphmask.kernels.util import as_rows, grad_or_zeros
from graphmask.ops.base import MaskRule, Op, OpError, Spec, is_float, is_int, register


def _where(shape, flat_index) -> str:
    idx = np.unravel_index(int(flat_index), shape)
    if len(idx) == 1:
        return f"sample {idx[0]}"
    pos = int(idx[1]) if len(idx) == 2 else tuple(int(i) for i in idx[1:])
    return f"sample {idx[0]}, position {pos}"


def as_int_ids(ids: np.ndarray) -> np.ndarray:
    """Ids as int64; float ids must hold whole numbers (else :class:`InputError`)."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False)
    if ids.dtype.kind != "f":
        raise InputError(f"Embedding ids must be integers, got dtype {ids.dtype}")
    # ids beyond 2**62 could not be cast faithfully (and are out of range anyway)
    bad = ~np.isfinite(ids) | (ids != np.floor(ids)) | (np.abs(ids) >= 2.0**62)
    if bad.any():
        k = int(np.argmax(bad.reshape(-1)))
        value = float(ids.reshape(-1)[k])
        what = "whole numbers" if abs(value) < 2.0**62 else "whole numbers below 2**62"
        raise InputError(f"Embedding ids must be {what}; got {value!r} "
                         f"at {_where(ids.shape, k)}")
    return ids.astype(np.int64)


def _raise_id_range(ids, flat_index, input_dim):
    value = int(ids.reshape(-1)[flat_index])
    raise IdRangeError(f"Embedding id {value} at {_where(ids.shape, flat_index)} is outside "
                       f"[0, {input_dim}) (input_dim={input_dim})")


def check_ids(ids: np.ndarray, input_dim: int) -> np.ndarray:
    """Vectorised id validation (the reference path); returns the ids as int64."""
    ids = as_int_ids(ids)
    bad = (ids < 0) | (ids >= input_dim)
    if bad.any():
        _raise_id_range(ids, int(np.argmax(bad.reshape(-1))), input_dim)
    return ids


@register
class EmbeddingOp(Op):
    name = "embedding"
    inputs = ("ids", "embeddings")
    diff_ports = ("embeddings",)

    def infer(self, attrs, specs):
        ids, w = specs["ids"], specs["embeddings"]
        v, e = attrs["input_dim"], attrs["output_dim"]
        if not (is_int(ids.dtype) or is_float(ids.dtype)):
            raise OpError(f"Embedding ids must be integers (or whole floats), got {ids.dtype}")
        if not is_float(w.dtype):
            raise OpError(f"embeddings must be float, got {w.dtype}")
        if w.rank != 2 or w.shape[0] not in (None, v) or w.shape[1] not in (None, e):
            raise OpError(f"embeddings must have shape (input_dim={v}, output_dim={e}), "
                          f"got {w.shape}")
        return [Spec(tuple(ids.shape) + (e,), w.dtype)]

    def mask_rule(self, attrs):
        if attrs.get("mask_zero", False):
            return MaskRule(takes=False, uses=False, out="create",
                            create=("mask_not_equal", {"value": 0}, "ids"))
        return MaskRule(takes=False, uses=False, out="none")

    def reference(self, attrs, inputs):
        ids = check_ids(inputs["ids"], attrs["input_dim"])
        return [inputs["embeddings"][ids]]

    def forward(self, attrs, inputs):
        ids = as_int_ids(inputs["ids"])
        w = np.ascontiguousarray(inputs["embeddings"])
        out = np.empty((ids.size, w.shape[1]), dtype=w.dtype)
        bad = K.embedding_gather(ids.reshape(-1), w, out)
        if bad >= 0:
            _raise_id_range(ids, bad, attrs["input_dim"])
        return [out.reshape(ids.shape + (w.shape[1],))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "embeddings" not in wrt:
            return {}
        w = inputs["embeddings"]
        ids = as_int_ids(inputs["ids"]).reshape(-1)
        dw = np.zeros(w.shape, dtype=w.dtype)
        if grads[0] is not None:
            K.embedding_scatter_add(ids, as_rows(grads[0], w.dtype), dw)
        return {"embeddings": dw}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "embeddings" not in wrt:
            return {}
        w = inputs["embeddings"]
        ids = check_ids(inputs["ids"], attrs["input_dim"])
        dy = grad_or_zeros(grads[0], ids.shape + (w.shape[1],), w.dtype)
        dw = np.zeros_like(w)
        np.add.at(dw, ids.reshape(-1), dy.reshape(-1, w.shape[1]))
        return {"embeddings": dw}
