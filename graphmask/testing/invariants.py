"""Invariant checks for masking: plain functions that raise ``AssertionError``.

Each check takes a model (and a batch) and either returns ``None`` or raises an
``AssertionError`` whose message says what was expected, where it broke (layer, weight,
sample, timestep) and which values were seen. They work on any compiled graphmask
model whose padding comes from ``Embedding(mask_zero=True)`` or ``Masking`` on a model
input; checks that need a loss (``y``) say so.

``dtype="float64"`` (the default where it appears) runs every kernel in double
precision on float64 copies of the weights and float data, so tolerances can be tight
and a real fault is never lost in float32 rounding. Pass ``dtype=None`` to check the
model's own float32 path (then loosen ``rtol``/``atol``).
"""
from __future__ import annotations

import numpy as np

from graphmask.testing import _runner as R
from graphmask.testing._expected import expected_loss, expected_masks

__all__ = ["check_all", "check_all_masked", "check_batch_independence", "check_grads",
           "check_loss_is_masked_mean", "check_mask_annotations", "check_masked_steps",
           "check_padding_invariance"]

_TOL = {"float64": (1e-7, 1e-9), None: (1e-4, 1e-5), "float32": (1e-4, 1e-5)}


def _tol(dtype, rtol, atol):
    r, a = _TOL.get(dtype, _TOL[None])
    return (r if rtol is None else rtol), (a if atol is None else atol)


def _fmt(v, n=6) -> str:
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    flat = ", ".join(f"{float(e):.6g}" for e in a.reshape(-1)[:n])
    return f"[{flat}{', ...' if a.size > n else ''}]"


def _where(idx, time_axis: bool) -> str:
    if not idx:
        return ""
    parts = [f"sample {idx[0]}"]
    if time_axis and len(idx) > 1:
        parts.append(f"timestep {idx[1]}")
    return ", ".join(parts)


def _compare(what: str, want, got, keep=None, rtol=1e-7, atol=1e-9, context: str = "",
             time_axis: bool = True) -> None:
    """Raise an AssertionError naming the first differing (sample, timestep)."""
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
        raise AssertionError(f"{what}: expected {_fmt(want)}, got {_fmt(got)} "
                             f"(difference {_fmt(got - want)}){context}")
    row = idx[:2] if (time_axis and want.ndim >= 3) else idx[:1]
    loc = _where(idx, time_axis and want.ndim >= 3)
    raise AssertionError(
        f"{what}: {loc}: expected {_fmt(want[row])}, got {_fmt(got[row])} "
        f"(first of {n_bad} differing entries, at index {idx}; "
        f"|difference| {abs(got[idx] - want[idx]):.3g}){context}")


# ---------------------------------------------------------------- shared pieces


def _layer_outputs(g):
    """[(node, out, label)] for every visible output of every layer node."""
    res = []
    for nid in R.layer_nodes(g):
        n = g.node(nid)
        for k in range(len(n["specs"])):
            res.append((nid, k, f"layer {n['layer']!r} ({n['op']}) output {k}"))
    return res


def _mask_fetches(g, outs):
    return sorted({(g.node(nid)["masks"][k], 0) for nid, k, _ in outs
                   if g.node(nid)["masks"][k] is not None})


def _values(model, batch, fetches, dtype, hook=None, variables=None) -> dict:
    fetches = list(dict.fromkeys(fetches))
    vals = R.execute(model, batch, fetches, dtype, variables, hook)
    return dict(zip(fetches, vals))


def _has_loss(model) -> bool:
    return model.compiled and bool(model.graph.meta.get("losses"))


def _all_fetches(model, with_loss: bool):
    g = model.graph
    outs = _layer_outputs(g)
    fetches = [(n, k) for n, k, _ in outs] + _mask_fetches(g, outs)
    names = []
    if with_loss:
        names = R.grad_names(model)
        fetches += R.loss_fetches(model) + [g.meta["grads"][nm] for nm in names]
    return outs, fetches, names


def _compare_runs(model, base, other, outs, names, align, what, rtol, atol):
    """Compare every kept layer output, loss and gradient of two runs."""
    g = model.graph
    for nid, k, label in outs:
        a, b = base[(nid, k)], other[(nid, k)]
        m = g.node(nid)["masks"][k]
        keep = None if m is None else base[(m, 0)]
        if a.ndim >= 2 and b.ndim >= 2 and a.shape[1] != b.shape[1]:
            b = align(b)
        _compare(f"{label} at a kept position", a, b, keep, rtol, atol, what)
    for lid in (g.meta["losses"] if names is not None else []):
        _compare(f"loss {g.node(lid)['layer']!r}", base[(lid, 0)], other[(lid, 0)], None,
                 rtol, atol, what)
    for nm in names or []:
        src = g.meta["grads"][nm]
        _compare(f"gradient of weight {nm!r}", base[src], other[src], None, rtol, atol,
                 what, time_axis=False)


def _pad_like(a: np.ndarray, k: int, pad, where: str) -> np.ndarray:
    """``a`` with ``k`` extra timesteps holding ``pad`` appended or prepended."""
    shape = (a.shape[0], k) + a.shape[2:]
    extra = np.full(shape, pad, dtype=a.dtype)
    return np.concatenate([a, extra] if where == "append" else [extra, a], axis=1)


def _time_major(model, k_out) -> bool:
    shape = model.outputs[k_out].shape
    return len(shape) >= 3 or (len(shape) == 2 and shape[1] is None)


# ---------------------------------------------------------------- padding invariance


def check_padding_invariance(model, x, y=None, sample_weight=None, *, extra: int = 2,
                             seed: int = 0, dtype="float64", rtol=None, atol=None) -> None:
    """Padding changes nothing that is kept.

    Three perturbations of the batch, each compared with the plain run at every kept
    position of every layer output, every loss and every weight gradient (losses and
    gradients when ``y`` is given):

    1. *content at masked positions*: every layer output that carries a mask gets random
       values at its masked positions (as if the padding had held something else), and
       the embedding row of the padding id is replaced;
    2. *more padding appended*: ``extra`` padding timesteps added at the end;
    3. *more padding prepended*: ``extra`` padding timesteps added at the start.

    (2) and (3) need a variable time axis (``Input(shape=(None, ...))``) and a known
    padding value (an ``Embedding(mask_zero=True)`` or ``Masking`` on the input);
    otherwise they are skipped.
    """
    rtol, atol = _tol(dtype, rtol, atol)
    g = model.graph
    with_loss = y is not None and _has_loss(model)
    batch = R.prepare(model, x, y, sample_weight, dtype)
    outs, fetches, names = _all_fetches(model, with_loss)
    base = _values(model, batch, fetches, dtype)
    gnames = names if with_loss else None

    # 1. random content at masked positions
    rng = np.random.default_rng(seed)
    masked = {}
    creators = {R.port_source(g, n, "x") for n in g.order() if "mask_of" in g.node(n)}
    for nid, k, _ in outs:
        m = g.node(nid)["masks"][k]
        if m is not None and (nid, k) not in creators:
            masked[(nid, k)] = base[(m, 0)]

    def hook(nid, values):
        for k in range(len(values)):
            if (nid, k) in masked and values[k].dtype.kind == "f":
                v = values[k].copy()
                drop = ~masked[(nid, k)]
                v[drop] = rng.normal(0, 3, size=v[drop].shape).astype(v.dtype)
                values[k] = v
        return values

    vs = R.variables(model, dtype)
    vs = {name: v.copy() for name, v in vs.items()}
    for nid in g.nodes_by_op("embedding"):
        if g.node(nid)["attrs"].get("mask_zero"):
            var = g.node(R.port_source(g, nid, "embeddings")[0])["attrs"]["var"]
            vs[var][0] = rng.normal(0, 3, size=vs[var][0].shape)
    other = _values(model, batch, fetches, dtype, hook, vs)
    _compare_runs(model, base, other, outs, gnames, lambda a: a,
                  "\n  after putting random values at the masked positions of every "
                  "masked layer output (and in the padding id's embedding row)", rtol, atol)

    # 2./3. more padding
    pads = R.input_pads(model)
    variable_t = all(len(t.shape) >= 2 and t.shape[1] is None for t in model.inputs)
    if any(p is None for p in pads) or not variable_t:
        return
    for where in ("append", "prepend"):
        xs = [_pad_like(a, extra, p, where) for a, p in zip(batch.xs, pads)]
        ys = sws = None
        if with_loss:
            ys, sws = [], []
            for k_out, (yk, wk) in enumerate(zip(batch.ys, batch.sws)):
                tm = yk is not None and _time_major(model, k_out)
                ys.append(_pad_like(yk, extra, 0, where) if tm else yk)
                sws.append(_pad_like(wk, extra, 1, where) if tm else wk)
        ext = _values(model, R.Batch(xs, ys, sws), fetches, dtype)
        T = batch.xs[0].shape[1]

        def align(a, where=where, T=T):
            return a[:, :T] if where == "append" else a[:, extra:]
        _compare_runs(model, base, ext, outs, gnames, align,
                      f"\n  after {where}ing {extra} padding timestep(s) to every sample "
                      f"(padded length {T} -> {T + extra})", rtol, atol)


# ---------------------------------------------------------------- masked steps


def check_masked_steps(model, x, *, dtype="float64", rtol=0.0, atol=0.0) -> None:
    """What each layer puts at masked timesteps follows Keras 3.

    * ``LSTM(return_sequences=True)``: the output at a masked step repeats the previous
      output (zeros before the first kept step; zeros everywhere masked with
      ``zero_output_for_mask=True``). ``go_backwards`` is read in processing order.
    * ``LSTM`` final output (and ``return_state`` states) of a sample with no kept
      step: zeros.
    * ``Masking``: masked steps are exactly zero, kept steps unchanged.
    * ``Embedding(mask_zero=True)``: the padding id still gets its embedding row.

    Exact by default (``atol=0``): these values are copies, not computations.
    """
    g = model.graph
    batch = R.prepare(model, x, None, None, dtype)
    checks = []
    for nid in R.layer_nodes(g):
        op = g.node(nid)["op"]
        if op in ("lstm", "masking", "embedding"):
            checks.append(nid)
    fetches = []
    for nid in checks:
        fetches += [(nid, k) for k in range(len(g.node(nid)["specs"]))]
        fetches += [src for p, src in g.in_ports(nid).items() if p in ("x", "mask", "ids")]
    if not fetches:
        return
    vals = _values(model, batch, fetches, dtype)
    for nid in checks:
        n = g.node(nid)
        ports = g.in_ports(nid)
        name = n["layer"]
        mask = vals[ports["mask"]].astype(bool) if "mask" in ports else None
        if n["op"] == "lstm" and mask is not None:
            _check_lstm_steps(name, n["attrs"], vals, nid, mask, rtol, atol)
        elif n["op"] == "masking":
            xin = vals[ports["x"]]
            m = mask if mask is not None else np.any(xin != n["attrs"]["mask_value"], -1)
            want = np.where(m[..., None], xin, 0)
            _compare(f"layer {name!r} (Masking): output", want, vals[(nid, 0)], None, rtol,
                     atol, "\n  Masking must zero every masked timestep exactly and keep the "
                     "others unchanged")
        elif n["op"] == "embedding" and n["attrs"].get("mask_zero"):
            ids = vals[ports["ids"]]
            pad = ids == 0
            if pad.any():
                w = model.get_layer(name).get_weights()[0] if _is_layer(model, name) else None
                if w is not None:
                    want = np.where(pad[..., None], w[0], vals[(nid, 0)])
                    _compare(f"layer {name!r} (Embedding): output at padding id 0", want,
                             vals[(nid, 0)], None, max(rtol, 1e-6), max(atol, 1e-7),
                             "\n  Keras 3 returns embedding row 0 for id 0; mask_zero only "
                             "adds a mask")


def _is_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def _check_lstm_steps(name, attrs, vals, nid, mask, rtol, atol):
    back = bool(attrs.get("go_backwards"))
    zero = bool(attrs.get("zero_output_for_mask"))
    pm = mask[:, ::-1] if back else mask  # mask in processing order
    y = vals[(nid, 0)]
    order = " (in processing order: go_backwards)" if back else ""
    if attrs.get("return_sequences"):
        T = pm.shape[1]
        want = y.copy()
        for t in range(T):
            prev = np.zeros_like(y[:, 0]) if (t == 0 or zero) else y[:, t - 1]
            want[:, t] = np.where(pm[:, t, None], y[:, t], prev)
        rule = ("zeros (zero_output_for_mask=True)" if zero else
                "a repeat of the previous output (zeros before the first kept step)")
        _compare(f"layer {name!r} (LSTM) output at a masked timestep", want, y, ~pm, rtol,
                 atol, f"\n  a masked step's output must be {rule}{order}")
    empty = ~pm.any(axis=1)
    if empty.any():
        outs = [] if attrs.get("return_sequences") else [(0, "final output")]
        if attrs.get("return_state"):
            outs += [(1, "final state h"), (2, "final state c")]
        for k, what in outs:
            v = vals[(nid, k)]
            _compare(f"layer {name!r} (LSTM) {what} of a sample with no kept step",
                     np.zeros_like(v), v, empty[:, None] & np.ones(v.shape, bool), rtol, atol,
                     "\n  the initial state is zero and no step was computed", time_axis=False)


# ---------------------------------------------------------------- batch independence


def check_batch_independence(model, x, y=None, sample_weight=None, *, dtype="float64",
                             rtol=None, atol=None) -> None:
    """A sample's results depend neither on the other samples nor on the padded length.

    Each sample is run alone, once at the batch's padded length and once trimmed after
    its last kept timestep; every kept layer output must equal that sample's row of the
    batch run. With ``y``, the batch loss must be the kept-position-weighted mean of the
    per-sample losses, and (single loss) the same holds for every gradient.
    """
    rtol, atol = _tol(dtype, rtol, atol)
    g = model.graph
    with_loss = y is not None and _has_loss(model)
    batch = R.prepare(model, x, y, sample_weight, dtype)
    outs, fetches, names = _all_fetches(model, with_loss)
    counts = _loss_count_fetches(g) if with_loss else []
    fetches += [c for c in counts if c is not None]
    base = _values(model, batch, fetches, dtype)
    pads = R.input_pads(model)
    trim = all(p is not None for p in pads) and all(
        len(t.shape) >= 2 and t.shape[1] is None for t in model.inputs)
    B = batch.size
    acc_loss = [0.0] * len(counts)
    acc_grad = {nm: 0.0 for nm in names}
    n_total = [_count(base, c, batch, j, None) for j, c in enumerate(counts)]
    for b in range(B):
        sl = slice(b, b + 1)
        one = R.Batch([a[sl] for a in batch.xs],
                      None if batch.ys is None else [None if a is None else a[sl]
                                                     for a in batch.ys],
                      None if batch.sws is None else [None if a is None else a[sl]
                                                      for a in batch.sws])
        single = _values(model, one, fetches, dtype)
        _compare_rows(model, base, single, outs, b, None, rtol, atol,
                      f"\n  sample {b} run alone (batch of 1, same padded length) differs "
                      f"from its row in the batch of {B}")
        if trim:
            keep = np.zeros(batch.xs[0].shape[1], bool)
            for a, p in zip(batch.xs, pads):
                kept = a[0 + b] != p
                keep |= kept if kept.ndim == 1 else kept.any(-1)
            L = int(np.nonzero(keep)[0].max()) + 1 if keep.any() else 1
            if L < len(keep):
                short = R.Batch([a[:, :L] for a in one.xs],
                                None if one.ys is None else [
                                    a[:, :L] if a is not None and _time_major(model, k) else a
                                    for k, a in enumerate(one.ys)],
                                None if one.sws is None else [
                                    a[:, :L] if a is not None and _time_major(model, k) else a
                                    for k, a in enumerate(one.sws)])
                trimmed = _values(model, short, fetches, dtype)
                _compare_rows(model, base, trimmed, outs, b, L, rtol, atol,
                              f"\n  sample {b} run alone with its trailing padding removed "
                              f"(padded length {len(keep)} -> {L}) differs from its row in "
                              f"the batch")
        if with_loss:
            for j, (lid, c) in enumerate(zip(g.meta["losses"], counts)):
                nb = _count(single, c, one, j, None)
                acc_loss[j] += nb * float(single[(lid, 0)])
            if len(counts) == 1:
                nb = _count(single, counts[0], one, 0, None)
                for nm in names:
                    acc_grad[nm] = acc_grad[nm] + nb * single[g.meta["grads"][nm]]
    if not with_loss:
        return
    for j, lid in enumerate(g.meta["losses"]):
        n = n_total[j]
        want = acc_loss[j] / n if n else 0.0
        _compare(f"loss {g.node(lid)['layer']!r}", want, base[(lid, 0)], None, rtol, atol,
                 f"\n  the batch loss must be the mean over kept positions of all samples: "
                 f"sum_b n_b * loss_b / sum_b n_b with n_b the kept positions of sample b "
                 f"(total {n})")
    if len(counts) == 1 and n_total[0]:
        for nm in names:
            want = acc_grad[nm] / n_total[0]
            _compare(f"gradient of weight {nm!r}", want, base[g.meta["grads"][nm]], None,
                     rtol, atol, "\n  the batch gradient must be sum_b n_b * grad_b / sum_b "
                     "n_b over the samples run alone", time_axis=False)


def _loss_count_fetches(g):
    """Per loss: (node, out) of its mask (masked_mean) or None (weighted_mean)."""
    res = []
    for lid in g.meta["losses"]:
        res.append(g.in_ports(lid).get("mask"))
    return res


def _count(vals, mask_src, batch, j, _):
    if mask_src is not None:
        return int(np.count_nonzero(vals[mask_src]))
    yk = [a for a in batch.ys if a is not None][j]
    return int(np.prod(yk.shape[:-1])) if yk.ndim >= 2 else int(yk.shape[0])


def _compare_rows(model, base, single, outs, b, L, rtol, atol, what):
    g = model.graph
    for nid, k, label in outs:
        a = base[(nid, k)][b:b + 1]
        s = single[(nid, k)]
        m = g.node(nid)["masks"][k]
        keep = None if m is None else base[(m, 0)][b:b + 1]
        if L is not None and a.ndim >= 2 and s.ndim >= 2 and a.shape[1] != s.shape[1]:
            a = a[:, :L]
            keep = None if keep is None else keep[:, :L]
        _compare(f"{label} at a kept position", a, s, keep, rtol, atol,
                 what.replace("sample 0", f"sample {b}"))


# ---------------------------------------------------------------- losses


def check_loss_is_masked_mean(model, x, y, sample_weight=None, *, rtol=1e-5,
                              atol=1e-7) -> None:
    """Each loss equals ``sum(score * m * w) / sum(m)`` over the kept positions.

    The expected value is computed independently: the model's own ``predict``
    outputs, the per-position score in NumPy (SEMANTICS.md formulas) and the mask as
    Keras 3 propagates it from the inputs. The model's value comes from its
    ``evaluate`` path (``test_on_batch``). The message says which wrong formula the
    value matches when it matches one (padding counted in the denominator, mask
    ignored, weighted denominator).
    """
    R._require_loss(model)
    g = model.graph
    batch = R.prepare(model, x, y, sample_weight, None)
    preds = R.execute(model, batch, list(g.meta["outputs"]))
    exp = expected_masks(model, batch)
    got = model.test_on_batch(x, y, sample_weight=sample_weight)
    got = got[0] if isinstance(got, list) else got
    total = 0.0
    weights = g.meta.get("loss_weights") or [1.0] * len(g.meta["losses"])
    for j, lid in enumerate(g.meta["losses"]):
        k = g.node(lid).get("loss_of", j)
        lobj = model.loss_objects[k]
        onode = g.meta["outputs"][k]
        mask = exp.get(tuple(onode))
        want, alts = expected_loss(lobj, preds[k], batch.ys[k], batch.sws[k], mask)
        total += weights[j] * want
        vals = R.execute(model, batch, [(lid, 0)])[0]
        if not np.isclose(float(vals), want, rtol=rtol, atol=atol):
            hint = [name for name, v in alts.items() if np.isclose(float(vals), v, rtol, atol)]
            kept = "no mask" if mask is None else (
                f"{int(mask.sum())} kept of {mask.size} positions")
            raise AssertionError(
                f"loss of output {model.output_names[k]!r} ({lobj.fn}): expected the mean "
                f"over kept positions sum(score*m*w)/sum(m) = {want:.7g} ({kept}), got "
                f"{float(vals):.7g}" + (f"; the value matches {hint[0]}" if hint else ""))
    if not np.isclose(float(got), total, rtol=rtol, atol=atol):
        raise AssertionError(f"test_on_batch returned {float(got):.7g}, expected the weighted "
                             f"sum of the losses {total:.7g}")


def check_all_masked(model, x, y, sample_weight=None, *, dtype="float64") -> None:
    """A batch where every timestep is padding: masked losses are exactly 0 and no
    gradient flows (no NaN, no inf).

    ``x`` only gives the shapes: its kept positions are replaced by the padding value.
    Losses whose prediction carries no mask (e.g. after ``LSTM(return_sequences=False)``)
    need not be 0; for them, every weight the loss can reach only through a
    mask-consuming layer (LSTM, pooling) must still get an exactly zero gradient.
    """
    R._require_loss(model)
    g = model.graph
    pads = R.input_pads(model)
    if any(p is None for p in pads):
        raise AssertionError("check_all_masked: cannot build an all-padding batch: an input "
                             "has no Embedding(mask_zero=True) or Masking reading it")
    xs = R.prepare(model, x, None, None, None).xs
    xs = [np.full_like(a, p) for a, p in zip(xs, pads)]
    single = not isinstance(x, (list, tuple))
    _, grads = R.loss_and_grads(model, xs[0] if single else xs, y, sample_weight, dtype)
    batch = R.prepare(model, xs[0] if single else xs, y, sample_weight, dtype)
    lvals = R.execute(model, batch, R.loss_fetches(model), dtype)
    shielded = _shielded_weights(g)
    for lid, v in zip(g.meta["losses"], lvals):
        if not np.isfinite(v):
            raise AssertionError(f"all-masked batch: loss {g.node(lid)['layer']!r} is {v} "
                                 f"(must be finite)")
        if g.node(lid)["op"] == "masked_mean" and float(v) != 0.0:
            raise AssertionError(f"all-masked batch: loss {g.node(lid)['layer']!r} is "
                                 f"{float(v):.7g}, must be exactly 0 (no kept position)")
    for nm, gr in grads.items():
        if not np.all(np.isfinite(gr)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(gr))[0])
            raise AssertionError(f"all-masked batch: gradient of weight {nm!r} is "
                                 f"{gr[idx]} at index {idx}")
        if nm in shielded and np.any(gr != 0):
            idx = tuple(int(i) for i in np.argwhere(gr != 0)[0])
            raise AssertionError(
                f"all-masked batch: gradient of weight {nm!r} must be exactly 0 (every path "
                f"to the loss goes through masked positions), got max |g| = "
                f"{np.abs(gr).max():.3g}, first nonzero at index {idx} ({gr[idx]:.3g})")


def _shielded_weights(g) -> set:
    """Weights whose every path to a loss passes a node that consumes a mask."""
    import networkx as nx
    consumers = {v for u, v, d in g.nx.edges(data=True)
                 if d["kind"] == "mask" and g.node(v)["phase"] == "forward"}
    fwd = [n for n in g.nx.nodes if g.node(n)["phase"] == "forward" and n not in consumers]
    h = g.nx.subgraph(fwd)
    losses = set(g.meta["losses"])
    out = set()
    for nid in g.nodes_by_op("variable"):
        name = g.node(nid)["attrs"]["var"]
        reach = nx.descendants(h, nid) if nid in h else set()
        if not (reach & losses):
            out.add(name)
    return out


# ---------------------------------------------------------------- gradients


def check_grads(model, x, y, sample_weight=None, *, eps: float = 1e-6, rtol: float = 1e-5,
                atol: float = 1e-8, directions: int = 2, seed: int = 0) -> None:
    """Backward-graph gradients match central finite differences (in float64).

    For each trainable weight and each of ``directions`` random directions ``d``:
    ``(L(w + eps d) - L(w - eps d)) / (2 eps)`` must equal ``<grad, d>``.
    Non-smooth points (relu at 0, mae at a zero residual) can fail legitimately.
    """
    loss, grads = R.loss_and_grads(model, x, y, sample_weight, "float64")
    batch = R.prepare(model, x, y, sample_weight, "float64")
    base = R.variables(model, "float64")
    rng = np.random.default_rng(seed)
    fetch = R.loss_fetches(model)

    def loss_at(vs):
        return R.total(model, R.execute(model, batch, fetch, "float64", vs))
    for nm, gr in grads.items():
        for _ in range(directions):
            d = rng.normal(size=gr.shape)
            plus = {**base, nm: base[nm] + eps * d}
            minus = {**base, nm: base[nm] - eps * d}
            fd = (loss_at(plus) - loss_at(minus)) / (2 * eps)
            an = float(np.sum(gr * d))
            if abs(fd - an) > atol + rtol * max(abs(fd), abs(an)):
                raise AssertionError(
                    f"gradient of weight {nm!r}: directional derivative from the backward "
                    f"graph {an:.9g}, from finite differences {fd:.9g} (eps={eps}; relative "
                    f"error {abs(fd - an) / max(abs(fd), abs(an), 1e-300):.3g}; loss {loss:.6g})")


# ---------------------------------------------------------------- mask annotations


def check_mask_annotations(model, x) -> None:
    """The mask annotated on every edge at compile time is the mask seen at run time.

    The expected masks are derived independently from the layers' Keras 3 semantics
    (``Embedding(mask_zero)``: ids != 0, ``Masking``: any feature != mask_value,
    ``LSTM``: passes the mask with ``return_sequences`` else drops it, ``Dense`` and
    activations pass it, pooling consumes it, merges OR it when every input is masked)
    evaluated on this batch. For every layer output the compiled annotation must agree
    (mask or none) and the annotated mask node must compute the same booleans; every
    edge must carry its producer's annotation; every layer that uses a mask must have
    its mask port fed with it; and a loss must be masked exactly when its prediction is.
    """
    g = model.graph
    batch = R.prepare(model, x, None, None, None)
    exp = expected_masks(model, batch)
    outs = _layer_outputs(g)
    annotated = _mask_fetches(g, outs)
    mask_edges = [(u, d["out"]) for u, v, k, d in g.nx.edges(keys=True, data=True)
                  if d["kind"] == "mask" and g.node(v)["phase"] == "forward"]
    vals = _values(model, batch, annotated + mask_edges, None) if annotated + mask_edges else {}

    def describe(m):
        kept = [int(i) for i in np.nonzero(m[0])[0]] if m.ndim == 2 else []
        return f"sample 0 keeps timesteps {kept} of {m.shape[-1]}"
    for nid, k, label in outs:
        key = (nid, k)
        if key not in exp:
            continue  # an op whose mask semantics the checker does not know
        want = exp[key]
        m = g.node(nid)["masks"][k]
        if want is None and m is not None:
            raise AssertionError(f"{label}: the compiled graph annotates the mask of "
                                 f"{g.label(m)!r} ({g.node(m)['op']}#{m}), but by Keras 3 "
                                 f"semantics no mask reaches this output")
        if want is not None and m is None:
            raise AssertionError(
                f"{label}: at run time a padding mask reaches this output "
                f"({describe(want)}), but the compiled graph annotates no mask here; later "
                f"layers and the loss would treat padding as data")
        if want is not None:
            _compare(f"{label}: mask computed by {g.label(m)!r} ({g.node(m)['op']}#{m})",
                     want, vals[(m, 0)], None, 0, 0,
                     "\n  (True = kept) differs from the mask Keras 3 propagates",
                     time_axis=False)
    for u, v, key, d in g.nx.edges(keys=True, data=True):
        if g.node(v)["phase"] != "forward":
            continue
        if d["kind"] == "data" and g.node(u)["op"] != "variable":
            masks = g.node(u).get("masks") or []
            carried = masks[d["out"]] if d["out"] < len(masks) else None
            if carried != d["mask"]:
                raise AssertionError(f"edge {g.label(u)} -> {g.label(v)} (port {key!r}) is "
                                     f"annotated with mask {d['mask']} but its producer's "
                                     f"output carries {carried}")
    for nid in R.layer_nodes(g) + g.meta["losses"]:
        n = g.node(nid)
        rule = g.op(nid).mask_rule(n["attrs"])
        src = R.port_source(g, nid, "x") or R.port_source(g, nid, "score")
        if n["op"] in ("masked_mean", "weighted_mean"):
            score = R.port_source(g, nid, "score")[0]
            src = R.port_source(g, score, "y_pred")
        if rule.out == "create":
            src = (nid, 0)  # Masking: its mask port gets the mask it creates
        uses = rule.uses or n["op"] in ("masked_mean", "weighted_mean")
        if not uses or src is None or tuple(src) not in exp:
            continue
        want = exp[tuple(src)]
        port = R.port_source(g, nid, "mask")
        if want is not None and port is None:
            raise AssertionError(f"{g.label(nid)} ({n['op']}): a padding mask reaches its "
                                 f"input ({describe(want)}) but nothing is connected to its "
                                 f"mask port, so it computes on padding")
        if want is None and port is not None:
            raise AssertionError(f"{g.label(nid)} ({n['op']}): its mask port is fed by "
                                 f"{g.label(port[0])} but no mask reaches its input")
        if want is not None:
            _compare(f"{g.label(nid)} ({n['op']}): mask on its mask port", want, vals[port],
                     None, 0, 0, "", time_axis=False)


def check_all(model, x, y=None, sample_weight=None) -> None:
    """Every check that applies to this model and batch, in a sensible order."""
    check_mask_annotations(model, x)
    check_masked_steps(model, x)
    check_padding_invariance(model, x, y, sample_weight)
    check_batch_independence(model, x, y, sample_weight)
    if y is not None and _has_loss(model):
        check_loss_is_masked_mean(model, x, y, sample_weight)
        if all(p is not None for p in R.input_pads(model)):
            check_all_masked(model, x, y, sample_weight)
        check_grads(model, x, y, sample_weight)


def compiled_signature(g) -> tuple:
    """Node and edge sets of a graph, as plain sorted tuples (for determinism tests)."""
    nodes = []
    for nid in sorted(g.nx.nodes):
        n = g.node(nid)
        nodes.append((nid, n["op"], n["layer"], n["phase"], repr(sorted(n["attrs"].items())),
                      repr(n.get("specs")), repr(n.get("masks"))))
    edges = sorted((u, v, k, d["out"], d["kind"], repr(d["mask"]))
                   for u, v, k, d in g.nx.edges(keys=True, data=True))
    meta = repr(sorted((k, repr(v)) for k, v in g.meta.items()))
    return tuple(nodes), tuple(edges), meta

