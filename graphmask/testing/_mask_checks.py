"""The checks of masks themselves: what layers put at masked steps, and the compiled mask
annotations against Keras 3's propagation. Public through
:mod:`graphmask.testing.invariants`."""
from __future__ import annotations

import numpy as np

from graphmask.testing import _runner as R
from graphmask.testing._common import compare, layer_outputs, mask_fetches, values
from graphmask.testing._expected import expected_masks_and_gaps
from graphmask.testing.report import CheckReport, Recorder

#: Ops computed position by position (or with no time axis left): nothing special
#: happens at a masked step, so check_masked_steps has no rule to check for them.
#: (``attach_mask``: a custom layer's output with the mask it returns; data unchanged.)
POSITIONWISE = ("dense", "activation", "identity", "dropout", "add_n", "add", "concatenate",
                "global_average_pooling_1d", "global_max_pooling_1d", "flatten",
                "attach_mask")


def check_masked_steps(model, x, *, dtype="float64", rtol=0.0, atol=0.0) -> CheckReport:
    """What each layer puts at masked timesteps follows Keras 3.

    * ``LSTM``, ``GRU``, ``SimpleRNN`` (``return_sequences=True``): the output at a
      masked step repeats the previous output (zeros before the first kept step; zeros
      everywhere masked with ``zero_output_for_mask=True``). ``go_backwards`` is read in
      processing order.
    * their final output (and ``return_state`` states) of a sample with no kept step:
      zeros (the states: the ``initial_state``, when one is given).
    * ``Masking``: masked steps are exactly zero, kept steps unchanged.
    * ``Embedding(mask_zero=True)``: the padding id still gets its embedding row.

    Exact by default (``atol=0``): these values are copies, not computations.

    Returns
    -------
    CheckReport
        A rule this batch cannot exercise (no masked step, no sample without a kept
        step, no padding id) and a layer whose op has no known masked-step rule are
        listed in ``skipped``.
    """
    rec = Recorder("check_masked_steps")
    g = model.graph
    batch = R.prepare(model, x, None, None, dtype)
    checks = []
    for nid in dict.fromkeys(nid for nid, _ in R.layer_output_keys(g)):
        n = g.node(nid)
        if n["op"] in ("lstm", "gru", "simple_rnn", "masking", "embedding"):
            checks.append(nid)
        elif n["op"] not in POSITIONWISE:
            rec.skip(f"layer {n['layer']!r} ({n['op']}): no masked-step rule known for op "
                     f"{n['op']!r}")
    fetches = []
    for nid in checks:
        fetches += [(nid, k) for k in range(len(g.node(nid)["specs"]))]
        fetches += [src for p, src in g.in_ports(nid).items()
                    if p in ("x", "mask", "ids", "embeddings", "h0", "c0")]
    if not fetches:
        return rec.report()
    vals = values(model, batch, fetches, dtype)
    for nid in checks:
        n = g.node(nid)
        ports = g.in_ports(nid)
        name = n["layer"]
        mask = vals[ports["mask"]].astype(bool) if "mask" in ports else None
        if n["op"] in _RNN and mask is not None:
            init = [vals[ports[p]] for p in ("h0", "c0") if p in ports]
            _check_lstm_steps(name, n["attrs"], vals, nid, mask, rtol, atol, rec, init,
                              n["op"])
        elif n["op"] == "masking":
            xin = vals[ports["x"]]
            m = mask if mask is not None else np.any(xin != n["attrs"]["mask_value"], -1)
            want = np.where(m[..., None], xin, 0)
            compare(f"layer {name!r} (Masking): output", want, vals[(nid, 0)], None, rtol,
                    atol, "\n  Masking must zero every masked timestep exactly and keep the "
                    "others unchanged")
            rec.ok(f"layer {name!r} (Masking): kept steps unchanged")
            if m.all():
                rec.skip(f"layer {name!r} (Masking): masked steps zeroed: no masked step in "
                         f"this batch")
            else:
                rec.ok(f"layer {name!r} (Masking): masked steps zeroed")
        elif n["op"] == "embedding" and n["attrs"].get("mask_zero"):
            pad = vals[ports["ids"]] == 0
            what = f"layer {name!r} (Embedding): output at padding id 0"
            if not pad.any():
                rec.skip(f"{what}: no padding id in this batch")
                continue
            row0 = vals[ports["embeddings"]][0]
            want = np.where(pad[..., None], row0, vals[(nid, 0)])
            compare(what, want, vals[(nid, 0)], None, rtol, atol,
                    "\n  Keras 3 returns embedding row 0 for id 0; mask_zero only adds a mask")
            rec.ok(what)
    return rec.report()


#: the recurrent ops and their layers' names
_RNN = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def _check_lstm_steps(name, attrs, vals, nid, mask, rtol, atol, rec, init=(), op="lstm"):
    back = bool(attrs.get("go_backwards"))
    zero = bool(attrs.get("zero_output_for_mask"))
    pm = mask[:, ::-1] if back else mask  # mask in processing order
    y = vals[(nid, 0)]
    order = " (in processing order: go_backwards)" if back else ""
    if attrs.get("return_sequences"):
        what = f"layer {name!r} ({_RNN[op]}) output at a masked timestep"
        T = pm.shape[1]
        want = y.copy()
        for t in range(T):
            prev = np.zeros_like(y[:, 0]) if (t == 0 or zero) else y[:, t - 1]
            want[:, t] = np.where(pm[:, t, None], y[:, t], prev)
        rule = ("zeros (zero_output_for_mask=True)" if zero else
                "a repeat of the previous output (zeros before the first kept step)")
        compare(what, want, y, ~pm, rtol, atol, f"\n  a masked step's output must be "
                f"{rule}{order}")
        if pm.all():
            rec.skip(f"{what}: no masked step in this batch")
        else:
            rec.ok(what)
    outs = [] if attrs.get("return_sequences") else [(0, "final output")]
    if attrs.get("return_state"):
        outs += [(1, "final state h")] + ([(2, "final state c")] if op == "lstm" else [])
    empty = ~pm.any(axis=1)
    for k, what in outs:
        what = f"layer {name!r} ({_RNN[op]}) {what} of a sample with no kept step"
        if not empty.any():
            rec.skip(f"{what}: no such sample in this batch")
            continue
        v = vals[(nid, k)]
        want = init[k - 1] if k and init else np.zeros_like(v)
        compare(what, want, v, empty[:, None] & np.ones(v.shape, bool), rtol, atol,
                "\n  no step was computed: the output is zero, the states are the initial "
                "state (zero unless initial_state is given)", time_axis=False)
        rec.ok(what)


def check_mask_annotations(model, x) -> CheckReport:
    """The mask annotated on every edge at compile time is the mask seen at run time.

    The expected masks are derived independently from the layers' Keras 3 semantics
    (``Embedding(mask_zero)``: ids != 0, ``Masking``: any feature != mask_value,
    ``LSTM``: passes the mask with ``return_sequences`` else drops it, ``Dense`` and
    activations pass it, pooling consumes it, merges OR it when every input is masked)
    evaluated on this batch. For every layer output the compiled annotation must agree
    (mask or none) and the annotated mask node must compute the same booleans; every
    edge must carry its producer's annotation; every layer that uses a mask must have
    its mask port fed with it; and a loss must be masked exactly when its prediction is.

    Returns
    -------
    CheckReport
        Layer outputs (and mask ports) whose mask the checker cannot derive, because an
        op without a known Keras 3 mask rule produces them or sits upstream, are listed
        in ``skipped`` with that op.
    """
    rec = Recorder("check_mask_annotations")
    g = model.graph
    batch = R.prepare(model, x, None, None, None)
    exp, gaps = expected_masks_and_gaps(model, batch)
    outs = layer_outputs(g)
    annotated = mask_fetches(g, outs)
    mask_edges = [(u, d["out"]) for u, v, k, d in g.nx.edges(keys=True, data=True)
                  if d["kind"] == "mask" and g.node(v)["phase"] == "forward"]
    vals = values(model, batch, annotated + mask_edges, None) if annotated + mask_edges else {}

    def describe(m):
        kept = [int(i) for i in np.nonzero(m[0])[0]] if m.ndim == 2 else []
        return f"sample 0 keeps timesteps {kept} of {m.shape[-1]}"
    for nid, k, label in outs:
        key = (nid, k)
        if key not in exp:
            rec.skip(f"{label}: mask annotation not checked: {gaps.get(key, 'unknown op')}")
            continue
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
            compare(f"{label}: mask computed by {g.label(m)!r} ({g.node(m)['op']}#{m})",
                    want, vals[(m, 0)], None, 0, 0,
                    "\n  (True = kept) differs from the mask Keras 3 propagates",
                    time_axis=False)
        rec.ok(f"{label}: mask annotation")
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
    rec.ok("every forward data edge carries its producer's mask annotation")
    for nid in R.layer_nodes(g) + g.meta["losses"]:
        _check_mask_port(g, nid, exp, gaps, vals, describe, rec)
    return rec.report()


def _check_mask_port(g, nid, exp, gaps, vals, describe, rec):
    """The mask port of a mask-using layer (or loss) is fed exactly when a mask reaches
    its input, with that mask."""
    n = g.node(nid)
    rule = g.op(nid).mask_rule(n["attrs"])
    src = R.port_source(g, nid, "x") or R.port_source(g, nid, "score")
    if n["op"] in ("masked_mean", "weighted_mean"):
        score = R.port_source(g, nid, "score")[0]
        src = R.port_source(g, score, "y_pred")
    if rule.out == "create":
        src = (nid, 0)  # Masking: its mask port gets the mask it creates
    uses = rule.uses or n["op"] in ("masked_mean", "weighted_mean")
    if not uses or src is None:
        return
    what = f"{g.label(nid)} ({n['op']}): its mask port"
    if tuple(src) not in exp:
        rec.skip(f"{what}: not checked: {gaps.get(tuple(src), 'unknown op upstream')}")
        return
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
        compare(what, want, vals[port], None, 0, 0, "", time_axis=False)
    rec.ok(what)
