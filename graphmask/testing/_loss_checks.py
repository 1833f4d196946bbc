"""The checks of losses and gradients: the loss formula, the all-padding batch, finite
differences. Public through :mod:`graphmask.testing.invariants`."""
from __future__ import annotations

import numpy as np

from graphmask.testing import _runner as R
from graphmask.testing._expected import expected_loss, expected_masks_and_gaps
from graphmask.testing.report import CheckReport, Recorder


def check_loss_is_masked_mean(model, x, y, sample_weight=None, *, rtol=1e-5,
                              atol=1e-7) -> CheckReport:
    """Each loss equals ``sum(score * m * w) / sum(m)`` over the kept positions.

    The expected value is computed independently: the model's own ``predict``
    outputs, the per-position score in NumPy (the formulas of docs/masking.md) and the
    mask as Keras 3 propagates it from the inputs. The model's value comes from its
    ``evaluate`` path (``test_on_batch``). The message says which wrong formula the
    value matches when it matches one (padding counted in the denominator, mask
    ignored, weighted denominator).

    Returns
    -------
    CheckReport
        A loss whose mask the checker cannot derive (an op without a known Keras 3 mask
        rule upstream of the prediction) is listed in ``skipped``, and so is then the
        ``test_on_batch`` total.
    """
    R._require_loss(model)
    rec = Recorder("check_loss_is_masked_mean")
    g = model.graph
    batch = R.prepare(model, x, y, sample_weight, None)
    preds = R.execute(model, batch, list(g.meta["outputs"]))
    exp, gaps = expected_masks_and_gaps(model, batch)
    with R.states_kept(g):  # a stateful model's public path runs from the same state
        got = model.test_on_batch(x, y, sample_weight=sample_weight)
    got = got[0] if isinstance(got, list) else got
    total, complete = 0.0, True
    weights = g.meta.get("loss_weights") or [1.0] * len(g.meta["losses"])
    for j, lid in enumerate(g.meta["losses"]):
        k = g.node(lid).get("loss_of", j)
        lobj = model.loss_objects[k]
        onode = tuple(g.meta["outputs"][k])
        what = f"loss of output {model.output_names[k]!r} ({lobj.fn})"
        if onode not in exp:
            rec.skip(f"{what}: the mask of the prediction is unknown: "
                     f"{gaps.get(onode, 'no Keras 3 mask rule for its layer')}")
            complete = False
            continue
        mask = exp[onode]
        want, alts = expected_loss(lobj, preds[k], batch.ys[k], batch.sws[k], mask)
        total += weights[j] * want
        vals = R.execute(model, batch, [(lid, 0)])[0]
        if not np.isclose(float(vals), want, rtol=rtol, atol=atol):
            hint = [name for name, v in alts.items() if np.isclose(float(vals), v, rtol, atol)]
            kept = "no mask" if mask is None else (
                f"{int(mask.sum())} kept of {mask.size} positions")
            raise AssertionError(
                f"{what}: expected the mean over kept positions sum(score*m*w)/sum(m) = "
                f"{want:.7g} ({kept}), got {float(vals):.7g}"
                + (f"; the value matches {hint[0]}" if hint else ""))
        rec.ok(what + (" (no mask: weighted mean over all positions)" if mask is None else ""))
    if not complete:
        rec.skip("the test_on_batch total: not every loss could be checked")
        return rec.report()
    if not np.isclose(float(got), total, rtol=rtol, atol=atol):
        raise AssertionError(f"test_on_batch returned {float(got):.7g}, expected the weighted "
                             f"sum of the losses {total:.7g}")
    rec.ok("the test_on_batch total")
    return rec.report()


def check_all_masked(model, x, y, sample_weight=None, *, dtype="float64") -> CheckReport:
    """A batch where every timestep is padding: masked losses are exactly 0 and no
    gradient flows (no NaN, no inf).

    ``x`` only gives the shapes: its kept positions are replaced by the padding value.
    Losses whose prediction carries no mask (e.g. after ``LSTM(return_sequences=False)``)
    need not be 0; for them, every weight the loss can reach only through a
    mask-consuming layer (LSTM, pooling) must still get an exactly zero gradient.
    A model input without a recognisable padding value is an ``AssertionError`` (no
    all-padding batch can be built).
    """
    R._require_loss(model)
    rec = Recorder("check_all_masked")
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
        name = g.node(lid)["layer"]
        if not np.isfinite(v):
            raise AssertionError(f"all-masked batch: loss {name!r} is {v} (must be finite)")
        if g.node(lid)["op"] == "masked_mean":
            if float(v) != 0.0:
                raise AssertionError(f"all-masked batch: loss {name!r} is {float(v):.7g}, "
                                     f"must be exactly 0 (no kept position)")
            rec.ok(f"loss {name!r} is exactly 0")
        else:
            rec.ok(f"loss {name!r} is finite (its prediction carries no mask)")
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
        rec.ok(f"gradient of weight {nm!r} is " + ("exactly 0" if nm in shielded else "finite"))
    _report_missing_grads(model, rec)
    return rec.report()


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


def _report_missing_grads(model, rec: Recorder) -> None:
    """Trainable weights the compiled graph has no gradient for: not checked, say so."""
    grads = model.graph.meta.get("grads", {})
    for v in model.trainable_weights:
        if v.name not in grads:
            rec.skip(f"gradient of weight {v.name!r}: the compiled graph computes none "
                     f"(no path from it to a loss)")


def check_grads(model, x, y, sample_weight=None, *, eps: float = 1e-6, rtol: float = 1e-5,
                atol: float = 1e-8, directions: int = 2, seed: int = 0) -> CheckReport:
    """Backward-graph gradients match central finite differences (in float64).

    For each trainable weight and each of ``directions`` random directions ``d``:
    ``(L(w + eps d) - L(w - eps d)) / (2 eps)`` must equal ``<grad, d>``.
    Non-smooth points (relu at 0, mae at a zero residual) can fail legitimately.
    A trainable weight the compiled graph computes no gradient for is listed in the
    report's ``skipped``.
    """
    rec = Recorder("check_grads")
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
        rec.ok(f"gradient of weight {nm!r} ({directions} direction(s))")
    _report_missing_grads(model, rec)
    return rec.report()
