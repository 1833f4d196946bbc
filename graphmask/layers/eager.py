"""Eager calls: ``layer(np_array, mask=..., training=...)`` computes at once.

Keras 3 runs a layer on concrete arrays directly; it is how people debug a layer.
graphmask gets the same result through the one path it trusts: the arrays become
``Input``s of exactly their shapes, the layer is traced on them (building its weights on
the first call, as Keras does), the graph goes through the same passes as a model's, and
the runtime executes it. Nothing of the throw-away trace is kept on the layer (its
``input``/``output`` still describe its symbolic calls). The result is NumPy arrays in
the structure ``call`` returned.
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import InputTypeError
from graphmask.layers.tensors import SymbolicTensor, Variable, calls_of, eager_trace, flatten
from graphmask.ops import state


def _to_input(layer, value, what: str, feeds: list):
    from graphmask.layers.base import Input

    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise InputTypeError(f"layer {layer.name!r}: {what} must hold numbers, got dtype "
                             f"{arr.dtype}")
    if arr.ndim == 0:
        raise InputTypeError(f"layer {layer.name!r}: {what} must have a batch axis, got a "
                             f"scalar")
    if arr.dtype.kind == "f":  # Keras casts float inputs to the layer's dtype
        arr = arr.astype(layer.dtype if np.dtype(layer.dtype).kind == "f" else "float32")
    # a fixed name: a throw-away trace must not use up the automatic layer names
    sym = Input(shape=arr.shape[1:], batch_size=arr.shape[0], dtype=arr.dtype,
                name=f"eager_input_{len(feeds)}")
    return sym, arr


def _convert(layer, x, feeds, what):
    if isinstance(x, (list, tuple)):
        return type(x)(_convert(layer, v, feeds, f"{what}[{i}]") for i, v in enumerate(x))
    if isinstance(x, dict):
        return {k: _convert(layer, v, feeds, f"{what}[{k!r}]") for k, v in x.items()}
    if isinstance(x, (SymbolicTensor, Variable)) or x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (np.ndarray, np.generic, int, float)):
        sym, arr = _to_input(layer, x, what, feeds)
        feeds.append((sym, arr))
        return sym
    return x



def _unflatten(structure, values):
    it = iter(values)

    def rebuild(x):
        if isinstance(x, (list, tuple)):
            return type(x)(rebuild(v) for v in x)
        if isinstance(x, dict):
            return {k: rebuild(v) for k, v in x.items()}
        return next(it)
    return rebuild(structure)


def run_symbolic(inputs_and_arrays, outputs, training: bool = False) -> list[np.ndarray]:
    """Compile the graph from ``inputs`` to ``outputs`` and run it on the arrays."""
    from graphmask import passes
    from graphmask.models.functional import forward_graph
    from graphmask.runtime import run

    calls = calls_of(outputs)
    used = {id(c) for c in calls}
    pairs = [(s, a) for s, a in inputs_and_arrays if id(s.call) in used]
    g = forward_graph(calls, [s for s, _ in pairs], list(outputs), trainable=set())
    g = passes.run_pipeline(g, upto="masks", training=training)
    plan = passes.make_plan(g, list(g.meta["outputs"]), training=training)
    feeds = dict(zip(g.meta["inputs"], [a for _, a in pairs]))
    return run(plan, feeds, {v.name: v.value for v in _variables(outputs)})


def _variables(outputs) -> list[Variable]:
    seen, out = set(), []
    for c in calls_of(outputs):
        for v in c.inputs.values():
            if isinstance(v, Variable) and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def eager_call(layer, args, kwargs):
    """``layer(*args, **kwargs)`` on NumPy arrays: the outputs as NumPy arrays."""
    from graphmask.layers.calling import call_layer

    training = bool(kwargs.get("training") or False)
    with eager_trace():
        feeds: list = []
        sym_args = tuple(_convert(layer, a, feeds, f"argument {i}") for i, a in enumerate(args))
        sym_kwargs = {k: (v if k == "training" else _convert(layer, v, feeds, k))
                      for k, v in kwargs.items()
                      if not (k == "training" and layer._builtin)}  # built-ins: the plan
        if not feeds:
            raise InputTypeError(f"layer {layer.name!r}: call it on symbolic tensors or on "
                                 f"NumPy arrays, got {[type(a).__name__ for a in args]}")
        out = call_layer(layer, sym_args, sym_kwargs)
        flat = flatten(out)
        with state.collecting() as updates:
            values = run_symbolic(feeds, flat, training=training)
        if training:  # as Keras, a training call moves BatchNormalization's statistics
            state.apply_updates(updates, _variables(flat))
    return _unflatten(out, [np.asarray(v) for v in values])
