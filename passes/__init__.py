"""The compiler passes, in the order they run. Each is a pure ``Graph -> Graph`` function.

``PIPELINE`` is the single place that fixes the order; each pass also checks with
``Graph.require`` that the passes it needs have run, and ``lint`` checks the graph's
invariants after every pass. ``make_plan`` (schedule) then turns the compiled graph and
the values wanted into an executable plan for the runtime.
"""
from __future__ import annotations

from .autodiff import build_backward
from .branches import select_training_branch
from .fusion import fuse_elementwise
from .lint import lint
from .losses import rewrite_losses
from .masks import propagate_masks
from .schedule import Plan, make_plan
from .shapes import infer_shapes

PIPELINE = [
    ("branches", select_training_branch),  # keep one branch of each training switch
    ("shapes", infer_shapes),        # shape/dtype inference
    ("masks", propagate_masks),      # explicit mask nodes/edges, per-edge annotations
    ("fusion", fuse_elementwise),    # elementwise chains -> fused_elementwise nodes
    ("losses", rewrite_losses),      # loss -> loss_score + masked_mean / weighted_mean
    ("autodiff", build_backward),    # one vjp node per differentiable forward node
]


def run_pipeline(graph, upto: str | None = None, check: bool = True,
                 training: bool = False):
    """Run the passes in order (through ``upto`` inclusive); lint after each.

    ``training`` chooses the graph compiled: the one ``fit`` runs (``True``) or the one
    ``predict``/``evaluate`` run; they differ only where a custom layer's ``call``
    depends on ``training`` (see ``passes/branches.py``).
    """
    names = [n for n, _ in PIPELINE]
    if upto is not None and upto not in names:
        raise ValueError(f"unknown pass {upto!r}; passes: {names}")
    g = graph.copy()
    g.meta["training"] = bool(training)
    for name, fn in PIPELINE:
        g = fn(g)
        if check:
            lint(g, after=name)
        if name == upto:
            break
    return g


__all__ = ["PIPELINE", "run_pipeline", "lint", "make_plan", "Plan", "infer_shapes",
           "propagate_masks", "rewrite_losses", "build_backward", "select_training_branch",
           "fuse_elementwise"]
