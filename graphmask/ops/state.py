"""State updates: how an op changes a non-trainable weight during a train step.

Keras's ``BatchNormalization`` assigns its moving statistics while it runs in training
mode. graphmask keeps every op pure: in a train plan such an op *reports* the update
with :func:`report_moving_average` and the training loop applies the reports, in the
order the ops ran, only once the step succeeded (after the optimizer step; a step
refused for a non-finite loss changes nothing). Outside :func:`collecting` (a forward
for ``loss_and_gradients``, predict, evaluate) a report is dropped.

Reports are kept per thread, so concurrent ``predict`` or training calls never mix.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["apply_updates", "collecting", "report_moving_average"]

_local = threading.local()


@contextmanager
def collecting():
    """Collect the reports of the ops run inside the block; yields the list."""
    previous = getattr(_local, "pending", None)
    _local.pending = pending = []
    try:
        yield pending
    finally:
        _local.pending = previous


def report_moving_average(variable: str, batch_value: np.ndarray, momentum: float) -> None:
    """Report ``variable <- variable * momentum + batch_value * (1 - momentum)``."""
    pending = getattr(_local, "pending", None)
    if pending is not None:
        pending.append((variable, np.array(batch_value, copy=True), float(momentum)))


def apply_updates(pending, variables) -> None:
    """Apply collected reports, in order, to ``variables`` (``Variable`` objects).

    A weight updated by several calls of one layer (a shared layer) is updated once per
    call, each on the result of the previous one, as Keras's successive assignments do.
    """
    by_name = {v.name: v for v in variables}
    for name, batch, momentum in pending:
        var = by_name.get(name)
        if var is None:
            continue  # a weight of a layer outside this model (not reachable in practice)
        dt = np.result_type(var.value.dtype, batch.dtype)
        new = var.value.astype(dt) * dt.type(momentum) + batch.astype(dt) * dt.type(
            1.0 - momentum)
        var.value[...] = new.astype(var.value.dtype)  # in place: plans hold the array
