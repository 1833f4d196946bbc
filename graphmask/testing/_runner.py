"""Running a compiled model's graph for the checks: any fetches, any float dtype, hooks.

The invariant checks need values the public API does not return (masks, every layer's
output, per-loss values, gradients without an optimizer step). Everything here goes
through the compiled graph (``model.graph``), ``passes.make_plan`` and, when no value is
changed on the way, ``graphmask.runtime.run``, so what is checked is what ``fit`` runs.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from graphmask import passes
from graphmask.errors import ConfigError
from graphmask.ops import rnn_state
from graphmask.runtime import run
from graphmask.training.data import prepare_inputs, prepare_targets, prepare_weights

SOURCES = ("input", "target", "sample_weight", "variable", "constant", "literal")
REDUCTIONS = ("loss_score", "masked_mean", "weighted_mean", "weighted_average",
              "metric_score", "loss")


def layer_nodes(g) -> list[int]:
    """Forward nodes that a user's layer made (no sources, mask nodes or loss nodes)."""
    out = []
    for nid in g.order():
        n = g.node(nid)
        if n["phase"] != "forward" or n["op"] in SOURCES or n["op"] in REDUCTIONS:
            continue
        if "mask_of" in n or n["op"].startswith("mask_"):
            continue
        out.append(nid)
    return out


def layer_output_keys(g) -> list[tuple[int, int]]:
    """``(node, out)`` of every layer call's outputs: the visible outputs of the nodes of
    built-in layers, and for a custom layer (or Lambda) traced into several ops, only
    the outputs of the call (``g.meta["groups"]``), not the values inside it, which
    Keras's masking contract says nothing about."""
    group_outs = {tuple(o) for grp in g.meta.get("groups", {}).values()
                  for o in grp["outputs"]}
    keys = []
    for nid in layer_nodes(g):
        n = g.node(nid)
        for k in range(len(n["specs"])):
            if not n.get("groups") or (nid, k) in group_outs:
                keys.append((nid, k))
    return keys


def port_source(g, nid: int, port: str):
    """``(node, out)`` feeding ``port`` of ``nid``, or None."""
    return g.in_ports(nid).get(port)


def input_pads(model) -> list:
    """Per model input: the padding value its mask compares against, or None.

    A padding value is known when a mask node (``ids != v`` or ``any(x != v)``) reads the
    input directly, which is the case for ``Embedding(mask_zero=True)`` and ``Masking``
    applied to a model input.
    """
    g = model.graph
    pads = []
    for inp in g.meta["inputs"]:
        pad = None
        for nid in g.order():
            n = g.node(nid)
            if n["op"] in ("mask_not_equal", "mask_any_not_equal") \
                    and port_source(g, nid, "x") == (inp, 0):
                pad = n["attrs"]["value"]
                break
        pads.append(pad)
    return pads


@dataclass
class Batch:
    """Inputs, targets and weights as the graph's feeds want them."""

    xs: list
    ys: list | None = None
    sws: list | None = None
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.xs[0])


def as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def prepare(model, x, y=None, sample_weight=None, dtype=None) -> Batch:
    """Validate like ``fit`` does, then cast float arrays to ``dtype`` (None: keep)."""
    xs = prepare_inputs(model, x)
    ys = sws = None
    if y is not None:
        if not model.compiled:
            raise ConfigError("graphmask.testing: the model must be compiled with a loss to "
                              "check losses or gradients")
        ys = prepare_targets(model, y, len(xs[0]), xs)
        sws = prepare_weights(model, sample_weight, ys)

    def cast(a):
        if a is None or dtype is None or a.dtype.kind != "f":
            return a
        return a.astype(dtype)
    return Batch([cast(a) for a in xs], None if ys is None else [cast(a) for a in ys],
                 None if sws is None else [cast(a) for a in sws])


def feeds(model, batch: Batch) -> dict:
    return model._feeds(batch.xs, batch.ys, batch.sws)


def variables(model, dtype=None) -> dict:
    out = {}
    for v in model.weights:
        out[v.name] = v.value if dtype is None else v.value.astype(dtype)
    return out


def execute(model, batch: Batch, fetches: list, dtype=None, variables_=None, hook=None):
    """Values of ``fetches`` (``[(node, out)]``) for one batch.

    ``hook(node, outputs) -> outputs`` (optional) may replace a node's outputs right after
    it runs; every later node, forward or backward, then reads the replaced value.
    """
    g = model.graph
    plan = passes.make_plan(g, list(fetches))
    vs = variables(model, dtype) if variables_ is None else variables_
    with states_kept(g):
        return _execute(model, batch, plan, vs, hook)


@contextmanager
def states_kept(g):
    """Stateful layers' carried states as they were before, whatever the run did: every
    run of a check starts from the state the model had, and the model keeps it."""
    keys = sorted({g.node(n)["attrs"]["state_key"] for n in g.order()
                   if g.node(n)["phase"] == "forward"
                   and g.node(n)["attrs"].get("state_key") is not None})
    saved = {k: rnn_state.get_state(k) for k in keys}
    try:
        yield
    finally:
        for k, states in saved.items():
            if states is not None:
                rnn_state.set_state(k, states)


def _execute(model, batch, plan, vs, hook):
    if hook is None:
        return run(plan, feeds(model, batch), vs)
    values = {}
    fd = feeds(model, batch)
    for nid in plan.feeds:
        values[(nid, 0)] = fd[nid]
    for nid, name in plan.variables.items():
        values[(nid, 0)] = vs[name]
    for st in plan.steps:
        outs = st.op.forward(st.attrs, {p: values[key] for p, key in st.ports.items()})
        outs = hook(st.node, list(outs))
        for i, v in enumerate(outs):
            values[(st.node, i)] = v
    return [values[tuple(key)] for key in plan.fetches]


def grad_names(model) -> list[str]:
    g = model.graph
    return [v.name for v in model.trainable_weights if v.name in g.meta.get("grads", {})]


def loss_fetches(model) -> list:
    return [(n, 0) for n in model.graph.meta["losses"]]


def total(model, losses) -> float:
    w = model.graph.meta.get("loss_weights") or [1.0] * len(losses)
    return float(sum(wk * float(lk) for wk, lk in zip(w, losses)))


def loss_and_grads(model, x, y, sample_weight=None, dtype="float64"):
    """The total loss of one batch and ``{weight name: gradient}``, without a step.

    Runs the compiled training graph (forward, masked losses, backward) exactly as
    ``train_on_batch`` does, but hands nothing to the optimizer, so the weights stay
    as they are. ``dtype="float64"`` runs every kernel in double precision (weights,
    float inputs and targets are cast); ``None`` keeps the model's own dtype.

    Returns
    -------
    (loss, grads)
        ``loss`` is a float (``sum_k loss_weight_k * loss_k``); ``grads`` maps each
        trainable weight's name (``"lstm/kernel"``) to an array of its shape.
    """
    _require_loss(model)
    batch = prepare(model, x, y, sample_weight, dtype)
    names = grad_names(model)
    g = model.graph
    vals = execute(model, batch, loss_fetches(model) + [g.meta["grads"][n] for n in names],
                   dtype)
    nl = len(g.meta["losses"])
    return total(model, vals[:nl]), dict(zip(names, vals[nl:]))


def _require_loss(model):
    if not model.compiled or not model.graph.meta.get("losses"):
        raise ConfigError("graphmask.testing: compile the model with a loss first, e.g. "
                          "model.compile(optimizer='sgd', loss='mse')")
