"""``matmul`` and two-operand ``einsum`` (ports ``x``, ``y``), on BLAS.

``matmul`` follows NumPy: 1-D operands are promoted (a row for ``x``, a column for
``y``) and the added axis removed again; batch axes broadcast. ``einsum`` takes
``attrs["subscripts"]`` such as ``"bij,bkj->bik"`` (an implicit output, without
``->``, lists the letters used once, sorted, as NumPy). A letter may appear once per
operand; letters of both operands missing from the output are summed (contracted),
letters of one operand only are summed first. Both reduce to one ``np.matmul`` over
(batch, rows, inner) x (batch, inner, cols) views, and so do their VJPs, which are
einsums themselves: ``dx = einsum(out, y -> x)``.
"""
from __future__ import annotations

import string

import numpy as np

from graphmask.ops.base import register
from graphmask.ops.primitives.common import (
    Prim,
    broadcast_static,
    float_of,
    promote,
    reference_unbroadcast,
    spec,
    sum_to_shape,
    zeros_or,
)


class Linalg(Prim):
    inputs = ("x", "y")
    diff_ports = ("x", "y")

    def _dtype(self, dx, dy):
        self.check_dtype("x", dx)
        self.check_dtype("y", dy)
        return promote(dx, dy)

    def _g(self, inputs, outputs, grads):
        x, y = inputs["x"], inputs["y"]
        dt = np.dtype(float_of(str(x.dtype), str(y.dtype)))
        g = zeros_or(grads[0], outputs[0].shape, dt)
        return x.astype(dt, copy=False), y.astype(dt, copy=False), g


@register
class MatmulOp(Linalg):
    name = "prim.matmul"

    def infer(self, attrs, specs):
        x, y = specs["x"], specs["y"]
        if x.rank == 0 or y.rank == 0:
            raise self.error(f"inputs must have rank >= 1, got x {x.shape} and y {y.shape}")
        xs = (1,) + x.shape if x.rank == 1 else x.shape
        ys = y.shape + (1,) if y.rank == 1 else y.shape
        if None not in (xs[-1], ys[-2]) and xs[-1] != ys[-2]:
            raise self.error(f"x {x.shape} and y {y.shape}: the last axis of x ({xs[-1]}) "
                             f"must match the {'only' if y.rank == 1 else 'second-to-last'} "
                             f"axis of y ({ys[-2]})")
        batch = broadcast_static(self, [xs[:-2], ys[:-2]], ["x batch axes", "y batch axes"])
        shape = batch + (xs[-2],) * (x.rank > 1) + (ys[-1],) * (y.rank > 1)
        return [spec(shape, self._dtype(x.dtype, y.dtype))]

    def _check(self, x, y):
        self.infer({}, {"x": spec(x.shape, x.dtype), "y": spec(y.shape, y.dtype)})
        return np.dtype(self._dtype(str(x.dtype), str(y.dtype)))

    def reference(self, attrs, inputs):
        x, y = inputs["x"], inputs["y"]
        dt = self._check(x, y)
        return [np.asarray(np.matmul(x.astype(dt), y.astype(dt)))]

    def forward(self, attrs, inputs):
        x, y = inputs["x"], inputs["y"]
        dt = self._check(x, y)
        x, y = x.astype(dt, copy=False), y.astype(dt, copy=False)
        if x.ndim >= 2 and y.ndim == 2:  # one GEMM over all rows of x
            k = x.shape[-1]
            out = np.dot(x.reshape(-1, k), y)
            return [out.reshape(x.shape[:-1] + (y.shape[1],))]
        return [np.asarray(np.matmul(x, y))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if not wrt:
            return {}
        x, y, g = self._g(inputs, outputs, grads)
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        g2 = g
        if x.ndim == 1:
            g2 = np.expand_dims(g2, -2 if y.ndim > 1 else -1)
        if y.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        out = {}
        if x2.ndim >= 2 and y2.ndim == 2 and g2.ndim == x2.ndim:
            n, k = y2.shape[1], y2.shape[0]
            gr = np.ascontiguousarray(g2).reshape(-1, n)
            if "x" in wrt:
                out["x"] = np.dot(gr, y2.T).reshape(x2.shape)
            if "y" in wrt:
                out["y"] = np.dot(np.ascontiguousarray(x2).reshape(-1, k).T, gr)
        else:
            if "x" in wrt:
                out["x"] = sum_to_shape(np.matmul(g2, np.swapaxes(y2, -1, -2)), x2.shape)
            if "y" in wrt:
                out["y"] = sum_to_shape(np.matmul(np.swapaxes(x2, -1, -2), g2), y2.shape)
        return {p: out[p].reshape(inputs[p].shape).astype(inputs[p].dtype, copy=False)
                for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        out = self.reference(attrs, inputs)
        x, y, g = self._g(inputs, out, grads)
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        batch = np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2])
        xb = np.broadcast_to(x2, batch + x2.shape[-2:])
        yb = np.broadcast_to(y2, batch + y2.shape[-2:])
        gb = g.reshape(batch + (x2.shape[-2], y2.shape[-1]))
        full = {"x": np.einsum("...mn,...kn->...mk", gb, yb),
                "y": np.einsum("...mk,...mn->...kn", xb, gb)}
        shapes = {"x": x2.shape, "y": y2.shape}
        return {p: reference_unbroadcast(full[p], shapes[p]).reshape(inputs[p].shape)
                .astype(inputs[p].dtype) for p in wrt}


def parse_subscripts(op: Prim, subscripts) -> tuple[str, str, str]:
    """``"ij,jk->ik"`` as ``("ij", "jk", "ik")``, validated (two operands)."""
    if not isinstance(subscripts, str):
        raise op.error(f"attrs['subscripts'] must be a string, got {subscripts!r}")
    s = subscripts.replace(" ", "")
    lhs, arrow, out = s.partition("->")
    ins = lhs.split(",")
    if "." in s:
        raise op.error(f"subscripts {subscripts!r}: ellipsis ('...') is not supported; "
                       f"name every axis")
    if len(ins) != 2:
        raise op.error(f"subscripts {subscripts!r} must name exactly two operands, "
                       f"got {len(ins)}")
    letters = set(string.ascii_letters)
    for part, what in ((ins[0], "x"), (ins[1], "y"), (out, "the output")):
        bad = sorted(set(part) - letters)
        if bad:
            raise op.error(f"subscripts {subscripts!r}: {what} uses {bad[0]!r}; "
                           f"use letters a-z, A-Z")
        dup = sorted({c for c in part if part.count(c) > 1})
        if dup:
            raise op.error(f"subscripts {subscripts!r}: {what} repeats {dup[0]!r} "
                           f"(diagonals are not supported)")
    if not arrow:
        both = ins[0] + ins[1]
        out = "".join(sorted(c for c in set(both) if both.count(c) == 1))
    missing = sorted(set(out) - set(ins[0]) - set(ins[1]))
    if missing:
        raise op.error(f"subscripts {subscripts!r}: output letter {missing[0]!r} is in "
                       f"neither operand")
    return ins[0], ins[1], out


def contract(a: np.ndarray, sa: str, b: np.ndarray, sb: str, so: str) -> np.ndarray:
    """``einsum(f"{sa},{sb}->{so}", a, b)`` as one ``np.matmul`` on transposed views."""
    a_only = [c for c in sa if c not in sb and c not in so]
    b_only = [c for c in sb if c not in sa and c not in so]
    if a_only:
        a = a.sum(axis=tuple(sa.index(c) for c in a_only))
        sa = "".join(c for c in sa if c not in a_only)
    if b_only:
        b = b.sum(axis=tuple(sb.index(c) for c in b_only))
        sb = "".join(c for c in sb if c not in b_only)
    batch = [c for c in so if c in sa and c in sb]
    rows = [c for c in so if c in sa and c not in sb]
    cols = [c for c in so if c in sb and c not in sa]
    inner = [c for c in sa if c in sb and c not in so]
    size = dict(zip(sa, a.shape)) | dict(zip(sb, b.shape))

    def prod(cs):
        return int(np.prod([size[c] for c in cs], dtype=np.int64))

    a3 = a.transpose([sa.index(c) for c in batch + rows + inner])
    b3 = b.transpose([sb.index(c) for c in batch + inner + cols])
    a3 = a3.reshape(prod(batch), prod(rows), prod(inner))
    b3 = b3.reshape(prod(batch), prod(inner), prod(cols))
    r = np.dot(a3[0], b3[0])[None] if a3.shape[0] == 1 else np.matmul(a3, b3)
    got = batch + rows + cols
    r = r.reshape([size[c] for c in got])
    return r.transpose([got.index(c) for c in so])


@register
class EinsumOp(Linalg):
    name = "prim.einsum"

    def _sizes(self, attrs, xs, ys):
        sa, sb, so = parse_subscripts(self, attrs.get("subscripts"))
        for sub, shape, p in ((sa, xs, "x"), (sb, ys, "y")):
            if len(sub) != len(shape):
                raise self.error(f"subscripts {attrs['subscripts']!r} give {p} {len(sub)} "
                                 f"axes but {p} has shape {tuple(shape)}")
        size: dict = {}
        for c, d in list(zip(sa, xs)) + list(zip(sb, ys)):
            if d is None:
                size.setdefault(c, None)
            elif size.get(c) is None:
                size[c] = d
            elif size[c] != d:
                raise self.error(f"subscripts {attrs['subscripts']!r}: axis {c!r} has size "
                                 f"{size[c]} in one operand and {d} in another")
        return sa, sb, so, size

    def infer(self, attrs, specs):
        x, y = specs["x"], specs["y"]
        _, _, so, size = self._sizes(attrs, x.shape, y.shape)
        return [spec(tuple(size[c] for c in so), self._dtype(x.dtype, y.dtype))]

    def _prepare(self, attrs, inputs):
        x, y = inputs["x"], inputs["y"]
        sa, sb, so, _ = self._sizes(attrs, x.shape, y.shape)
        dt = np.dtype(self._dtype(str(x.dtype), str(y.dtype)))
        return x.astype(dt, copy=False), y.astype(dt, copy=False), sa, sb, so

    def reference(self, attrs, inputs):
        x, y, sa, sb, so = self._prepare(attrs, inputs)
        return [np.asarray(np.einsum(f"{sa},{sb}->{so}", x, y))]

    def forward(self, attrs, inputs):
        x, y, sa, sb, so = self._prepare(attrs, inputs)
        return [np.asarray(contract(x, sa, y, sb, so), order="C")]

    def _grads(self, attrs, inputs, g, einsum, wrt):
        x, y, sa, sb, so = self._prepare(attrs, inputs)
        x, y = x.astype(g.dtype, copy=False), y.astype(g.dtype, copy=False)
        out = {}
        for p, (mine, sm, other, so_) in {"x": (x, sa, y, sb), "y": (y, sb, x, sa)}.items():
            if p not in wrt:
                continue
            kept = "".join(c for c in sm if c in so or c in so_)
            d = einsum(g, so, other, so_, kept)
            if kept != sm:  # letters summed from this operand alone: broadcast back
                d = np.expand_dims(d, tuple(i for i, c in enumerate(sm) if c not in kept))
                d = np.broadcast_to(d, mine.shape)
            out[p] = np.array(d, dtype=inputs[p].dtype, order="C")
        return out

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        _, _, g = self._g(inputs, outputs, grads)
        return self._grads(attrs, inputs, g, contract, wrt)

    def reference_vjp(self, attrs, inputs, grads, wrt):
        _, _, g = self._g(inputs, self.reference(attrs, inputs), grads)

        def einsum(a, sa, b, sb, so):
            return np.einsum(f"{sa},{sb}->{so}", a, b)
        return self._grads(attrs, inputs, g, einsum, wrt)
