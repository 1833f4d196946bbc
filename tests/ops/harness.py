"""The shared op test harness: every op goes through the same four checks.

1. shapes:    ``op.infer`` agrees with the shapes and dtypes the kernels return;
2. mask rule: an op that reads a mask ignores whatever sits at masked positions of its
              data input (every output is unchanged when those values change);
3. kernels:   the numba ``forward``/``vjp`` agree with the NumPy ``reference``/
              ``reference_vjp``;
4. gradients: ``reference_vjp`` (and so ``vjp``) agrees with central finite differences
              of ``reference`` in float64.

Use :func:`check_op` from an op's test module with concrete inputs (float64 for the
finite-difference check to be meaningful; the harness casts float inputs itself).
"""
from __future__ import annotations

import numpy as np

from graphmask.ops.base import Spec, get_op


def _specs(inputs):
    return {p: Spec(tuple(a.shape), str(a.dtype)) for p, a in inputs.items()}


def _cast(inputs, dtype):
    return {p: (a.astype(dtype) if a.dtype.kind == "f" else a) for p, a in inputs.items()}


def check_shapes(op_name, attrs, inputs, none_batch=True):
    """``infer`` on concrete specs gives exactly the shapes and dtypes ``forward`` returns.

    With ``none_batch`` (the default) ``infer`` must also accept the first dimension of
    every input as unknown (``None``); ops that refuse some unknown dimensions on purpose
    (``prim.squeeze`` with ``axis=None``) test that separately.
    """
    op = get_op(op_name)
    specs = op.infer(attrs, _specs(inputs))
    outs = op.forward(attrs, inputs)
    assert len(outs) == len(specs) + op.n_residuals(attrs), (
        f"{op_name}: forward returned {len(outs)} arrays, expected {len(specs)} outputs "
        f"+ {op.n_residuals(attrs)} residuals")
    for k, (spec, out) in enumerate(zip(specs, outs)):
        assert tuple(out.shape) == tuple(spec.shape), (
            f"{op_name} output {k}: shape {out.shape} but infer said {spec.shape}")
        assert str(out.dtype) == spec.dtype, (
            f"{op_name} output {k}: dtype {out.dtype} but infer said {spec.dtype}")
    if not none_batch:
        return outs
    # Unknown batch dimension propagates: infer with None batch must not fail.
    none_specs = {p: Spec((None,) + s.shape[1:], s.dtype) if s.rank else s
                  for p, s in _specs(inputs).items()}
    op.infer(attrs, none_specs)
    return outs


def check_forward(op_name, attrs, inputs, rtol=1e-5, atol=1e-6):
    """numba ``forward`` equals NumPy ``reference`` on the visible outputs."""
    op = get_op(op_name)
    ref = op.reference(attrs, inputs)
    out = op.forward(attrs, inputs)
    assert len(out) == len(ref) + op.n_residuals(attrs)
    for k, (r, o) in enumerate(zip(ref, out)):
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol,
                                   err_msg=f"{op_name} output {k}: kernel vs reference")
    return ref


def _cotangents(ref, rng):
    return [rng.standard_normal(r.shape).astype(r.dtype) if r.dtype.kind == "f" else None
            for r in ref]


def check_vjp(op_name, attrs, inputs, wrt=None, rtol=1e-5, atol=1e-6, seed=0):
    """numba ``vjp`` equals ``reference_vjp`` for random output cotangents."""
    op = get_op(op_name)
    wrt = list(op.diff_ports if wrt is None else wrt)
    wrt = [p for p in wrt if p in inputs]
    ref = op.reference(attrs, inputs)
    cot = _cotangents(ref, np.random.default_rng(seed))
    outs = op.forward(attrs, inputs)
    got = op.vjp(attrs, inputs, outs, cot, wrt)
    exp = op.reference_vjp(attrs, inputs, cot, wrt)
    assert sorted(got) == sorted(wrt), f"{op_name}: vjp returned {sorted(got)}, want {wrt}"
    for p in wrt:
        assert got[p].shape == inputs[p].shape, f"{op_name} d{p}: shape {got[p].shape}"
        np.testing.assert_allclose(got[p], exp[p], rtol=rtol, atol=atol,
                                   err_msg=f"{op_name} d{p}: kernel vs reference")
    return got


def check_finite_differences(op_name, attrs, inputs, wrt=None, eps=1e-6, rtol=1e-5,
                             atol=1e-7, max_entries=40, seed=0):
    """``reference_vjp`` matches central differences of ``reference`` (float64)."""
    op = get_op(op_name)
    inputs = _cast(inputs, np.float64)
    rng = np.random.default_rng(seed)
    wrt = list(op.diff_ports if wrt is None else wrt)
    wrt = [p for p in wrt if p in inputs]
    ref = op.reference(attrs, inputs)
    cot = _cotangents(ref, rng)

    def objective(inp):
        outs = op.reference(attrs, inp)
        return sum(float(np.sum(o * c)) for o, c in zip(outs, cot) if c is not None)

    grads = op.reference_vjp(attrs, inputs, cot, wrt)
    for p in wrt:
        x = inputs[p]
        flat = rng.permutation(x.size)[:max_entries]
        for idx in flat:
            i = np.unravel_index(idx, x.shape)
            plus = {**inputs, p: x.copy()}
            minus = {**inputs, p: x.copy()}
            plus[p][i] += eps
            minus[p][i] -= eps
            fd = (objective(plus) - objective(minus)) / (2 * eps)
            assert abs(grads[p][i] - fd) <= atol + rtol * abs(fd) + 1e-6 * max(1.0, abs(fd)), (
                f"{op_name} d{p}{list(i)}: vjp {grads[p][i]:.10g} vs finite difference "
                f"{fd:.10g}")
    # and the kernel agrees with the reference in float64 too
    check_vjp(op_name, attrs, inputs, wrt, rtol=1e-9, atol=1e-10, seed=seed)


def check_mask_invariance(op_name, attrs, inputs, data_port="x", seed=0):
    """Values at masked positions of ``data_port`` change no output of a mask-using op."""
    op = get_op(op_name)
    mask = inputs["mask"]
    before = op.forward(attrs, inputs)[: len(op.infer(attrs, _specs(inputs)))]
    x = inputs[data_port].copy()
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype) * 10
    sel = ~mask.astype(bool)
    x[sel] = noise[sel]
    after = op.forward(attrs, {**inputs, data_port: x})[: len(before)]
    for k, (b, a) in enumerate(zip(before, after)):
        np.testing.assert_array_equal(
            a, b, err_msg=f"{op_name} output {k} changed when masked inputs changed")


def check_op(op_name, attrs, inputs, wrt=None, data_port=None, fd=True, rtol=1e-5, atol=1e-6,
             none_batch=True):
    """Run every harness check on one op with one set of inputs."""
    check_shapes(op_name, attrs, inputs, none_batch)
    check_forward(op_name, attrs, inputs, rtol=rtol, atol=atol)
    check_vjp(op_name, attrs, inputs, wrt, rtol=rtol, atol=atol)
    if fd:
        check_finite_differences(op_name, attrs, inputs, wrt)
    if data_port is not None and "mask" in inputs:
        check_mask_invariance(op_name, attrs, inputs, data_port)


def random_mask(rng, batch, time, kind="any", allow_empty=True):
    """A (B, T) bool mask: ``right``/``left`` padding, ``holes``, or ``any`` of them.

    Row 0 is all-masked when ``allow_empty`` (the empty-sample edge case).
    """
    kinds = ["right", "left", "holes"] if kind == "any" else [kind]
    m = np.zeros((batch, time), dtype=bool)
    for b in range(batch):
        k = kinds[b % len(kinds)]
        n = int(rng.integers(0, time + 1))
        if k == "right":
            m[b, :n] = True
        elif k == "left":
            m[b, time - n:] = True
        else:
            m[b] = rng.random(time) < 0.6
    if allow_empty and batch > 1:
        m[0] = False
    if batch > 1:
        m[-1] = True
    return m
