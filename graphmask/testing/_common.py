"""Pieces the invariant checks share: tolerances, comparisons with readable messages,
fetching values of a run, comparing two runs."""
from __future__ import annotations

import numpy as np

from graphmask.testing import _runner as R

TOL = {"float64": (1e-7, 1e-9), None: (1e-4, 1e-5), "float32": (1e-4, 1e-5)}


def tol(dtype, rtol, atol):
    r, a = TOL.get(dtype, TOL[None])
    return (r if rtol is None else rtol), (a if atol is None else atol)


def fmt(v, n=6) -> str:
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    flat = ", ".join(f"{float(e):.6g}" for e in a.reshape(-1)[:n])
    return f"[{flat}{', ...' if a.size > n else ''}]"


def location(idx, time_axis: bool) -> str:
    if not idx:
        return ""
    parts = [f"sample {idx[0]}"]
    if time_axis and len(idx) > 1:
        parts.append(f"timestep {idx[1]}")
    return ", ".join(parts)


def compare(what: str, want, got, keep=None, rtol=1e-7, atol=1e-9, context: str = "",
            time_axis: bool = True, first_sample: int = 0, weight: bool = False) -> None:
    """Raise an AssertionError naming the first differing (sample, timestep).

    ``first_sample``: the batch index of row 0 of ``want`` (when comparing a slice);
    ``weight``: the arrays are a weight's (rows, not samples)."""
    want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if want.shape != got.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}{context}")
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=False)
    if keep is not None:
        k = np.asarray(keep, bool)
        bad &= k.reshape(k.shape + (1,) * (bad.ndim - k.ndim))
    if not bad.any():
        return
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    n_bad = int(bad.sum())
    if want.ndim == 0:
        raise AssertionError(f"{what}: expected {fmt(want)}, got {fmt(got)} "
                             f"(difference {fmt(got - want)}){context}")
    time_axis = time_axis and want.ndim >= 3 and not weight
    row = idx[:2] if time_axis else idx[:1]
    at = (idx[0] + first_sample,) + idx[1:]
    loc = f"row {idx[0]}" if weight else location(at, time_axis)
    raise AssertionError(
        f"{what}: {loc}: expected {fmt(want[row])}, got {fmt(got[row])} "
        f"(first of {n_bad} differing entries, at index {at}; "
        f"|difference| {abs(got[idx] - want[idx]):.3g}){context}")


def layer_outputs(g):
    """[(node, out, label)] for every output of every layer call (see
    :func:`graphmask.testing._runner.layer_output_keys`)."""
    return [(nid, k, f"layer {g.node(nid)['layer']!r} ({g.node(nid)['op']}) output {k}")
            for nid, k in R.layer_output_keys(g)]


def mask_fetches(g, outs):
    return sorted({(g.node(nid)["masks"][k], 0) for nid, k, _ in outs
                   if g.node(nid)["masks"][k] is not None})


def values(model, batch, fetches, dtype, hook=None, variables=None) -> dict:
    fetches = list(dict.fromkeys(fetches))
    vals = R.execute(model, batch, fetches, dtype, variables, hook)
    return dict(zip(fetches, vals))


def has_loss(model) -> bool:
    return model.compiled and bool(model.graph.meta.get("losses"))


def all_fetches(model, with_loss: bool):
    g = model.graph
    outs = layer_outputs(g)
    fetches = [(n, k) for n, k, _ in outs] + mask_fetches(g, outs)
    names = []
    if with_loss:
        names = R.grad_names(model)
        fetches += R.loss_fetches(model) + [g.meta["grads"][nm] for nm in names]
    return outs, fetches, names


def compare_runs(model, base, other, outs, names, align, what, rtol, atol):
    """Compare every kept layer output, loss and gradient of two runs."""
    g = model.graph
    for nid, k, label in outs:
        a, b = base[(nid, k)], other[(nid, k)]
        m = g.node(nid)["masks"][k]
        keep = None if m is None else base[(m, 0)]
        if a.ndim >= 2 and b.ndim >= 2 and a.shape[1] != b.shape[1]:
            b = align(b)
        compare(f"{label} at a kept position", a, b, keep, rtol, atol, what)
    for lid in (g.meta["losses"] if names is not None else []):
        compare(f"loss {g.node(lid)['layer']!r}", base[(lid, 0)], other[(lid, 0)], None,
                rtol, atol, what)
    for nm in names or []:
        src = g.meta["grads"][nm]
        compare(f"gradient of weight {nm!r}", base[src], other[src], None, rtol, atol,
                what, weight=True)


def pad_like(a: np.ndarray, k: int, pad, where: str) -> np.ndarray:
    """``a`` with ``k`` extra timesteps holding ``pad`` appended or prepended."""
    shape = (a.shape[0], k) + a.shape[2:]
    extra = np.full(shape, pad, dtype=a.dtype)
    return np.concatenate([a, extra] if where == "append" else [extra, a], axis=1)


def time_major(model, k_out) -> bool:
    shape = model.outputs[k_out].shape
    return len(shape) >= 3 or (len(shape) == 2 and shape[1] is None)
