"""The compiler passes, in the order they run. Each is a pure ``Graph -> Graph`` function.

``PIPELINE`` is the single place that fixes the order; each pass also checks with
``Graph.require`` that the passes it needs have run, and ``lint`` checks the graph's
invariants after every pass. ``make_plan`` (schedule) then turns the compiled graph and
the values wanted into an executable plan for the runtime.
"""
from __future__ import annotations

from .autodiff import build_backward
from .lint import lint
from .losses import rewrite_losses
from .masks import propagate_masks
from .schedule import Plan, make_plan
from .shapes import infer_shapes

PIPELINE = [
    ("shapes", infer_shapes),        # shape/dtype inference
    ("masks", propagate_masks),      # explicit mask nodes/edges, per-edge annotations
    ("losses", rewrite_losses),      # loss -> loss_score + masked_mean / weighted_mean
    ("autodiff", build_backward),    # one vjp node per differentiable forward node
]


def run_pipeline(graph, upto: str | None = None, check: bool = True):
    """Run the passes in order (through ``upto`` inclusive); lint after each."""
    names = [n for n, _ in PIPELINE]
    if upto is not None and upto not in names:
        raise ValueError(f"unknown pass {upto!r}; passes: {names}")
    g = graph
    for name, fn in PIPELINE:
        g = fn(g)
        if check:
            lint(g, after=name)
        if name == upto:
            break
    return g


__all__ = ["PIPELINE", "run_pipeline", "lint", "make_plan", "Plan", "infer_shapes",
           "propagate_masks", "rewrite_losses", "build_backward"]
