"""Pass 1: shape and dtype inference, with errors that name the layer.

Every node gets ``specs`` (one :class:`Spec` per visible output) from its op's shape
rule, in topological order. Unconnected required ports are graph errors.
"""
from __future__ import annotations

from graphmask.errors import GraphError, ShapeError
from graphmask.ir.graph import Graph
from graphmask.ops import OpError, Spec

NAME = "shapes"


def infer_node(g: Graph, nid: int) -> list[Spec]:
    """Run the shape rule of one node (inputs must already carry specs)."""
    n = g.node(nid)
    op = g.op(nid)
    ports = g.in_ports(nid)
    missing = [p for p in op.required_ports(n["attrs"]) if p not in ports]
    if missing:
        raise GraphError(f"pass {NAME!r}: {g.label(nid)} ({n['op']}) has unconnected "
                         f"input port(s) {missing}")
    specs = {}
    for port, (src, out) in ports.items():
        src_specs = g.node(src).get("specs")
        if src_specs is None or out >= len(src_specs):
            # residual edges point past the visible outputs; their shape is the op's own
            continue
        specs[port] = src_specs[out]
    try:
        return list(op.infer(n["attrs"], specs))
    except OpError as e:
        shapes = {p: s.shape for p, s in specs.items()}
        raise ShapeError(f"pass {NAME!r}: layer {g.label(nid)!r} ({n['op']}): {e} "
                         f"[input shapes {shapes}]") from None


def infer_shapes(graph: Graph) -> Graph:
    """Annotate every node with the specs of its outputs; returns a new graph."""
    g = graph.copy()
    for nid in g.order():
        g.node(nid)["specs"] = infer_node(g, nid)
    g.meta["passes"].append(NAME)
    return g
