"""Invariant checks for masking: plain functions that raise ``AssertionError``.

Each check takes a model (and a batch) and either returns a :class:`CheckReport` (every
property it could verify holds) or raises an ``AssertionError`` whose message says what
was expected, where it broke (layer, weight, sample, timestep) and which values were
seen. A part a check cannot run on this model or batch is never dropped silently: the
report lists it in ``skipped`` with the reason (``report.assert_complete()`` turns that
into a failure). They work on any compiled graphmask model whose padding comes from
``Embedding(mask_zero=True)`` or ``Masking`` on a model input; checks that need a loss
(``y``) say so.

``dtype="float64"`` (the default where it appears) runs every kernel in double
precision on float64 copies of the weights and float data, so tolerances can be tight
and a real fault is never lost in float32 rounding. Pass ``dtype=None`` to check the
model's own float32 path (multi-threaded kernels included): the default tolerances
then become ``rtol=1e-4, atol=1e-5`` (see :data:`graphmask.testing._common.TOL`).
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError
from graphmask.testing import _runner as R
from graphmask.testing._common import (
    all_fetches,
    compare,
    compare_runs,
    has_loss,
    pad_like,
    time_major,
    tol,
    values,
)
from graphmask.testing._loss_checks import check_all_masked, check_grads, check_loss_is_masked_mean
from graphmask.testing._mask_checks import check_mask_annotations, check_masked_steps
from graphmask.testing.report import CheckReport, Recorder

__all__ = ["CheckReport", "check_all", "check_all_masked", "check_batch_independence",
           "check_grads", "check_loss_is_masked_mean", "check_mask_annotations",
           "check_masked_steps", "check_padding_invariance", "compiled_signature"]


def _loss_part(model, y, rec: Recorder) -> bool:
    """Whether losses and gradients are compared; if not, say why in the report."""
    if y is None:
        rec.skip("losses and gradients: no y given")
        return False
    if not has_loss(model):
        rec.skip("losses and gradients: the model is not compiled with a loss")
        return False
    return True


def _trim_blockers(model) -> list[str]:
    """Why padding cannot be added to or removed from the inputs (empty: it can)."""
    g = model.graph
    why = []
    for inp, pad, t in zip(g.meta["inputs"], R.input_pads(model), model.inputs):
        name = g.label(inp)
        if pad is None:
            why.append(f"input {name!r} has no Embedding(mask_zero=True) or Masking reading "
                       f"it, so its padding value is unknown")
        if not (len(t.shape) >= 2 and t.shape[1] is None):
            why.append(f"input {name!r} has a fixed time axis (shape {t.shape})")
    return why


# ---------------------------------------------------------------- padding invariance


def check_padding_invariance(model, x, y=None, sample_weight=None, *, extra: int = 2,
                             seed: int = 0, dtype="float64", rtol=None,
                             atol=None) -> CheckReport:
    """Padding changes nothing that is kept.

    Three perturbations of the batch, each compared with the plain run at every kept
    position of every layer output, every loss and every weight gradient (losses and
    gradients when ``y`` is given):

    1. *content at masked positions*: every layer output that carries a mask gets random
       values at its masked positions (as if the padding had held something else), and
       the embedding row of the padding id is replaced;
    2. *more padding appended*: ``extra`` padding timesteps added at the end;
    3. *more padding prepended*: ``extra`` padding timesteps added at the start.

    Returns
    -------
    CheckReport
        Lists in ``skipped``: (2) and (3) when an input has a fixed time axis or no
        known padding value (an ``Embedding(mask_zero=True)`` or ``Masking`` on it);
        (1) when no layer output carries a mask, the batch has no masked position, or
        a masked output is not float; losses and gradients without ``y``.
    """
    rtol, atol = tol(dtype, rtol, atol)
    rec = Recorder("check_padding_invariance")
    g = model.graph
    with_loss = _loss_part(model, y, rec)
    batch = R.prepare(model, x, y, sample_weight, dtype)
    outs, fetches, names = all_fetches(model, with_loss)
    base = values(model, batch, fetches, dtype)
    gnames = names if with_loss else None

    # 1. random content at masked positions
    rng = np.random.default_rng(seed)
    masked = {}
    creators = {R.port_source(g, n, "x") for n in g.order() if "mask_of" in g.node(n)}
    for nid, k, _ in outs:
        m = g.node(nid)["masks"][k]
        if m is not None and (nid, k) not in creators:
            masked[(nid, k)] = base[(m, 0)]
    labels = {(nid, k): label for nid, k, label in outs}
    not_float = {}

    def hook(nid, vals):
        for k in range(len(vals)):
            if (nid, k) not in masked:
                continue
            if vals[k].dtype.kind != "f":
                not_float[(nid, k)] = vals[k].dtype
                continue
            v = vals[k].copy()
            drop = ~masked[(nid, k)]
            v[drop] = rng.normal(0, 3, size=v[drop].shape).astype(v.dtype)
            vals[k] = v
        return vals

    vs = R.variables(model, dtype)
    vs = {name: v.copy() for name, v in vs.items()}
    rows = 0
    for nid in g.nodes_by_op("embedding"):
        if g.node(nid)["attrs"].get("mask_zero"):
            var = g.node(R.port_source(g, nid, "embeddings")[0])["attrs"]["var"]
            vs[var][0] = rng.normal(0, 3, size=vs[var][0].shape)
            rows += 1
    other = values(model, batch, fetches, dtype, hook, vs)
    compare_runs(model, base, other, outs, gnames, lambda a: a,
                 "\n  after putting random values at the masked positions of every "
                 "masked layer output (and in the padding id's embedding row)", rtol, atol)
    what = "random values at masked positions"
    if not masked:
        rec.skip(f"{what}: no layer output carries a padding mask")
    elif all(m.all() for m in masked.values()):
        rec.skip(f"{what}: this batch has no masked position")
    else:
        rec.ok(f"{what} of {len(masked) - len(not_float)} masked layer output(s)")
    for key, dt in not_float.items():
        rec.skip(f"{what} of {labels[key]}: not a float output ({dt})")
    if rows:
        rec.ok(f"random embedding row of padding id 0 ({rows} Embedding(mask_zero=True))")

    # 2./3. more padding
    blockers = _trim_blockers(model)
    if blockers:
        for why in blockers:
            rec.skip(f"appending and prepending padding: {why}")
        return rec.report()
    pads = R.input_pads(model)
    for where in ("append", "prepend"):
        xs = [pad_like(a, extra, p, where) for a, p in zip(batch.xs, pads)]
        ys = sws = None
        if with_loss:
            ys, sws = [], []
            for k_out, (yk, wk) in enumerate(zip(batch.ys, batch.sws)):
                tm = yk is not None and time_major(model, k_out)
                ys.append(pad_like(yk, extra, 0, where) if tm else yk)
                sws.append(pad_like(wk, extra, 1, where) if tm else wk)
        ext = values(model, R.Batch(xs, ys, sws), fetches, dtype)
        T = batch.xs[0].shape[1]

        def align(a, where=where, T=T):
            return a[:, :T] if where == "append" else a[:, extra:]
        compare_runs(model, base, ext, outs, gnames, align,
                     f"\n  after {where}ing {extra} padding timestep(s) to every sample "
                     f"(padded length {T} -> {T + extra})", rtol, atol)
        rec.ok(f"{extra} padding timestep(s) {where}ed")
    return rec.report()


# ---------------------------------------------------------------- batch independence


def check_batch_independence(model, x, y=None, sample_weight=None, *, dtype="float64",
                             rtol=None, atol=None) -> CheckReport:
    """A sample's results depend neither on the other samples nor on the padded length.

    Each sample is run alone, once at the batch's padded length and once trimmed after
    its last kept timestep; every kept layer output must equal that sample's row of the
    batch run. With ``y``, the batch loss must be the kept-position-weighted mean of the
    per-sample losses, and (single loss) the same holds for every gradient.

    Returns
    -------
    CheckReport
        Lists in ``skipped``: the trimmed runs when an input has a fixed time axis or
        no known padding value, or when no sample has trailing padding; the gradients
        when the model has several losses; losses and gradients without ``y``.
    """
    rtol, atol = tol(dtype, rtol, atol)
    rec = Recorder("check_batch_independence")
    g = model.graph
    stateful = _stateful_layer(g)
    if stateful is not None:
        raise ConfigError(f"check_batch_independence: layer {stateful!r} is stateful: it "
                          f"keeps its batch size and carries each sample's state from "
                          f"batch to batch, so a sample cannot run alone; the other checks "
                          f"apply (each of their runs starts from the model's carried state)")
    with_loss = _loss_part(model, y, rec)
    batch = R.prepare(model, x, y, sample_weight, dtype)
    outs, fetches, names = all_fetches(model, with_loss)
    counts = _loss_count_fetches(g) if with_loss else []
    fetches += [c for c in counts if c is not None]
    base = values(model, batch, fetches, dtype)
    pads = R.input_pads(model)
    blockers = _trim_blockers(model)
    B = batch.size
    acc_loss = [0.0] * len(counts)
    acc_grad = {nm: 0.0 for nm in names}
    n_total = [_count(base, c, batch, j) for j, c in enumerate(counts)]
    trimmed_any = False
    for b in range(B):
        sl = slice(b, b + 1)
        one = R.Batch([a[sl] for a in batch.xs],
                      None if batch.ys is None else [None if a is None else a[sl]
                                                     for a in batch.ys],
                      None if batch.sws is None else [None if a is None else a[sl]
                                                      for a in batch.sws])
        single = values(model, one, fetches, dtype)
        _compare_rows(model, base, single, outs, b, None, rtol, atol,
                      f"\n  sample {b} run alone (batch of 1, same padded length) differs "
                      f"from its row in the batch of {B}")
        if not blockers:
            trimmed_any |= _check_trimmed(model, batch, one, base, outs, fetches, pads, b,
                                          dtype, rtol, atol)
        if with_loss:
            for j, (lid, c) in enumerate(zip(g.meta["losses"], counts)):
                nb = _count(single, c, one, j)
                acc_loss[j] += nb * float(single[(lid, 0)])
            if len(counts) == 1:
                nb = _count(single, counts[0], one, 0)
                for nm in names:
                    acc_grad[nm] = acc_grad[nm] + nb * single[g.meta["grads"][nm]]
    rec.ok(f"each of the {B} sample(s) run alone at the padded length")
    for why in blockers:
        rec.skip(f"samples run alone with their trailing padding removed: {why}")
    if not blockers:
        if trimmed_any:
            rec.ok("samples run alone with their trailing padding removed")
        else:
            rec.skip("samples run alone with their trailing padding removed: no sample of "
                     "this batch has trailing padding")
    if not with_loss:
        return rec.report()
    for j, lid in enumerate(g.meta["losses"]):
        n = n_total[j]
        want = acc_loss[j] / n if n else 0.0
        compare(f"loss {g.node(lid)['layer']!r}", want, base[(lid, 0)], None, rtol, atol,
                f"\n  the batch loss must be the mean over kept positions of all samples: "
                f"sum_b n_b * loss_b / sum_b n_b with n_b the kept positions of sample b "
                f"(total {n})")
        rec.ok(f"loss {g.node(lid)['layer']!r} as the kept-position-weighted mean of the "
               f"per-sample losses")
    if len(counts) != 1:
        rec.skip(f"gradients as the weighted mean of per-sample gradients: the model has "
                 f"{len(counts)} losses (checked for a single loss only)")
    elif not n_total[0]:
        rec.skip("gradients as the weighted mean of per-sample gradients: the batch has no "
                 "kept position")
    else:
        for nm in names:
            want = acc_grad[nm] / n_total[0]
            compare(f"gradient of weight {nm!r}", want, base[g.meta["grads"][nm]], None,
                    rtol, atol, "\n  the batch gradient must be sum_b n_b * grad_b / sum_b "
                    "n_b over the samples run alone", weight=True)
        rec.ok(f"{len(names)} gradient(s) as the weighted mean of per-sample gradients")
    return rec.report()


def _check_trimmed(model, batch, one, base, outs, fetches, pads, b, dtype, rtol, atol) -> bool:
    """Sample ``b`` alone without its trailing padding; False when it has none."""
    keep = np.zeros(batch.xs[0].shape[1], bool)
    for a, p in zip(batch.xs, pads):
        kept = a[b] != p
        keep |= kept if kept.ndim == 1 else kept.any(-1)
    L = int(np.nonzero(keep)[0].max()) + 1 if keep.any() else 1
    if L >= len(keep):
        return False

    def cut(arrays):
        return None if arrays is None else [
            a[:, :L] if a is not None and time_major(model, k) else a
            for k, a in enumerate(arrays)]
    short = R.Batch([a[:, :L] for a in one.xs], cut(one.ys), cut(one.sws))
    trimmed = values(model, short, fetches, dtype)
    _compare_rows(model, base, trimmed, outs, b, L, rtol, atol,
                  f"\n  sample {b} run alone with its trailing padding removed "
                  f"(padded length {len(keep)} -> {L}) differs from its row in the batch")
    return True


def _loss_count_fetches(g):
    """Per loss: (node, out) of its mask (masked_mean) or None (weighted_mean)."""
    return [g.in_ports(lid).get("mask") for lid in g.meta["losses"]]


def _count(vals, mask_src, batch, j):
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
        compare(f"{label} at a kept position", a, s, keep, rtol, atol, what,
                first_sample=b)


# ---------------------------------------------------------------- all of them


def _stateful_layer(g):
    """The label of the first stateful recurrent node, or None."""
    for n in g.order():
        node = g.node(n)
        if node["phase"] == "forward" and node["attrs"].get("state_key") is not None:
            return g.label(n)
    return None


def check_all(model, x, y=None, sample_weight=None, *, dtype="float64") -> CheckReport:
    """Every check that applies to this model and batch, in a sensible order.

    ``dtype`` goes to the checks that run kernels in a chosen precision
    (:func:`check_masked_steps`, :func:`check_padding_invariance`,
    :func:`check_batch_independence`, :func:`check_all_masked`; their default
    tolerances for ``dtype=None`` are meant for float32); :func:`check_grads` always
    runs in float64 and :func:`check_loss_is_masked_mean` on the model's own path.

    Returns
    -------
    CheckReport
        Every check's report merged (items prefixed with the check's name), plus the
        checks that did not run and why.
    """
    rec = Recorder("check_all")
    rec.merge(check_mask_annotations(model, x))
    rec.merge(check_masked_steps(model, x, dtype=dtype))
    rec.merge(check_padding_invariance(model, x, y, sample_weight, dtype=dtype))
    stateful = _stateful_layer(model.graph)
    if stateful is None:
        rec.merge(check_batch_independence(model, x, y, sample_weight, dtype=dtype))
    else:
        rec.skip(f"check_batch_independence: layer {stateful!r} is stateful (a fixed batch "
                 f"whose samples carry state between batches)")
    loss_checks = "check_loss_is_masked_mean, check_all_masked and check_grads"
    if y is None:
        rec.skip(f"{loss_checks}: no y given")
        return rec.report()
    if not has_loss(model):
        rec.skip(f"{loss_checks}: the model is not compiled with a loss")
        return rec.report()
    rec.merge(check_loss_is_masked_mean(model, x, y, sample_weight))
    unknown = [model.graph.label(i) for i, p in zip(model.graph.meta["inputs"], R.input_pads(model))
               if p is None]
    if unknown:
        rec.skip(f"check_all_masked: input {unknown[0]!r} has no Embedding(mask_zero=True) "
                 f"or Masking reading it, so no all-padding batch can be built")
    else:
        rec.merge(check_all_masked(model, x, y, sample_weight, dtype=dtype))
    rec.merge(check_grads(model, x, y, sample_weight))
    return rec.report()


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
