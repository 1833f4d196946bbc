"""The carried states of stateful recurrent layers (``LSTM``, ``GRU``, ``SimpleRNN`` and
``RNN(cell)`` on a built-in cell, with ``stateful=True``).

Keras 3 keeps a stateful RNN's state in non-trainable variables that every call starts
from and assigns at its end, in predict, evaluate and training alike. graphmask's ops
are pure functions of their ports, so the state lives here instead, keyed by the
layer's ``state_key`` (a fresh key per layer instance, an op attribute): the op's
forward reads the state it starts from, runs, and stores the final state, in one
critical section per layer (:func:`carry`), so the calls of one stateful layer are
serialised when several threads run it (each call starts from the state the previous
one left; which thread comes first is whichever takes the layer first). The state is
not a weight: it is not saved, and a loaded model starts from zeros, as in Keras.

The state a forward started from is its last residual(s), so the VJP needs nothing
from here (:func:`vjp_inputs`).
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager

import numpy as np

from graphmask.ops.base import OpError

__all__ = ["carry", "check_stateful_batch", "discard", "get_state", "n_residuals", "new_state",
           "reset_state", "set_state", "state_key", "stateful_forward", "vjp_inputs"]

_STATES: dict[str, list[np.ndarray]] = {}
_LOCKS: dict[str, threading.RLock] = {}
_registry_lock = threading.Lock()
_keys = itertools.count(1)


def state_key(name: str) -> str:
    """A fresh key for one stateful layer's carried state."""
    with _registry_lock:
        return f"{name}#{next(_keys)}"


def _lock(key: str) -> threading.RLock:
    with _registry_lock:
        return _LOCKS.setdefault(key, threading.RLock())


def check_stateful_batch(who: str, shape) -> None:
    """A stateful layer's input must have a static batch size (Keras 3's rule)."""
    if shape[0] is None:
        from graphmask.errors import ShapeError
        raise ShapeError(f"{who}: stateful=True needs a fixed batch size, got input shape "
                         f"{tuple(shape)}; give the input one, e.g. Input(shape, "
                         f"batch_size=32) or Input(batch_shape=(32, ...))")


def new_state(key: str, batch: int, units: int, dtype="float32", n: int = 2) -> None:
    """Zero states (``n`` arrays of shape ``(batch, units)``) for a stateful layer:
    ``(h, c)`` for an LSTM (``n=2``), ``(h,)`` for a GRU or SimpleRNN (``n=1``)."""
    with _lock(key):
        _STATES[key] = [np.zeros((batch, units), dtype) for _ in range(n)]


def discard(key: str) -> None:
    """Forget a layer's carried state (called when the layer is garbage-collected)."""
    with _registry_lock:
        _STATES.pop(key, None)
        _LOCKS.pop(key, None)


def reset_state(key: str) -> None:
    """Set a stateful layer's carried states to zeros (waits for a call in progress)."""
    with _lock(key):
        for a in _STATES.get(key, ()):
            a[...] = 0


def set_state(key: str, states) -> None:
    """Replace a layer's carried states with copies of ``states`` (what :func:`get_state`
    returned); used to run a stateful model several times from one state."""
    with _lock(key):
        _STATES[key] = [np.array(a, copy=True) for a in states]


def get_state(key: str):
    """Copies of a stateful layer's carried states, or None before it is built."""
    with _lock(key):
        return None if key not in _STATES else tuple(a.copy() for a in _STATES[key])


@contextmanager
def carry(op: str, key: str, batch: int, units: int):
    """Hold the layer ``key`` for one call: yields the list of carried states (the live
    arrays: read them, do not write them) and a ``store(states)`` function for the final
    ones. The batch is checked first (Keras: a stateful layer keeps its batch size)."""
    with _lock(key):
        if key not in _STATES:
            raise OpError(f"{op}(units={units}): no carried state for {key!r} (the stateful "
                          f"layer was not built)")
        states = _STATES[key]
        if states[0].shape[0] != batch:
            raise OpError(f"{op}(units={units}): a stateful layer needs the same batch size "
                          f"at every call: its state holds {states[0].shape[0]} samples, the "
                          f"batch has {batch}")

        def store(final):
            _STATES[key] = [np.array(f, dtype=s.dtype, copy=True) for f, s in zip(final, states)]

        yield list(states), store


def n_residuals(attrs, ports) -> int:
    """How many residuals a stateful call adds: its start state, one per state port."""
    return len(ports) if attrs.get("state_key") is not None else 0


def stateful_forward(op: str, attrs, inputs, run, ports=("h0",)):
    """The forward of a recurrent op, stateful or not.

    ``run(inputs)`` returns ``(outputs and residuals, final states)``. Without
    ``attrs['state_key']`` that is the whole forward. With it, the call starts from the
    carried state (unless an initial state is connected: Keras then starts from it),
    stores its final state, and appends the state it started from as residuals (one per
    port of ``ports``), which :func:`vjp_inputs` hands back to the VJP.
    """
    key = attrs.get("state_key")
    if key is None:
        return run(inputs)[0]
    units = int(attrs["units"])
    with carry(op, key, inputs["x"].shape[0], units) as (start, store):
        if ports[0] not in inputs:
            inputs = {**inputs, **dict(zip(ports, start))}
        outs, final = run(inputs)
        store(final)
    return list(outs) + [np.array(inputs[p], copy=True) for p in ports]


def vjp_inputs(attrs, inputs, outputs, ports=("h0",)):
    """``(inputs, outputs)`` for a recurrent op's VJP: a stateful call's start state (its
    last residuals) becomes the initial-state ports, and is dropped from the outputs."""
    if attrs.get("state_key") is None:
        return inputs, outputs
    n = len(ports)
    if ports[0] not in inputs:
        inputs = {**inputs, **dict(zip(ports, outputs[-n:]))}
    return inputs, outputs[:-n]
