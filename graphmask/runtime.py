"""Executes a :class:`~passes.schedule.Plan`: one kernel call per node, values freed early.

Values live in a dict keyed by ``(node, output)`` that belongs to one ``run`` call, so
several threads may run plans of the same model at once. Errors raised by an op are
re-raised with the layer's name; anything unexpected from a kernel becomes a
:class:`~graphmask.errors.GraphmaskError` instead of leaking numba or NumPy internals.
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import GraphmaskError, ShapeError
from graphmask.ops import OpError


class KernelError(GraphmaskError, RuntimeError):
    """A kernel failed in a way validation should have prevented (a graphmask bug)."""


def run(plan, feeds: dict, variables: dict) -> list[np.ndarray]:
    """Run ``plan``; ``feeds``: source node -> array; ``variables``: name -> array."""
    values: dict[tuple, np.ndarray] = {}
    for nid in plan.feeds:
        values[(nid, 0)] = feeds[nid]
    for nid, name in plan.variables.items():
        values[(nid, 0)] = variables[name]
    for st in plan.steps:
        inputs = {p: values[key] for p, key in st.ports.items()}
        try:
            outs = st.op.forward(st.attrs, inputs)
        except GraphmaskError as e:
            raise type(e)(f"layer {st.label!r}: {e}") from None
        except OpError as e:
            raise ShapeError(f"layer {st.label!r} ({st.op.name}): {e}") from None
        except Exception as e:  # a bug, never the user's fault: say so, keep the cause
            raise KernelError(f"layer {st.label!r} ({st.op.name}): kernel failed with "
                              f"{type(e).__name__}: {e}") from e
        for i, v in enumerate(outs):
            values[(st.node, i)] = v
        for key in st.free:
            values.pop(key, None)
    return [values[key] for key in plan.fetches]
