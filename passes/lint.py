"""Invariant checks run after every pass (``lint(graph, after=pass_name)``).

* the graph is a DAG and every required port is connected;
* after ``shapes``: every node has one spec per visible output;
* after ``masks``: every node has mask annotations, mask edges carry bool masks from
  mask nodes, and no mask reaches an op whose rule cannot take one;
* after ``losses``: no un-rewritten ``loss`` node remains;
* ``autodiff`` ran only after ``losses``.
A failure is a :class:`GraphError` naming the pass and the node.
"""
from __future__ import annotations

import networkx as nx

from graphmask.errors import GraphError
from graphmask.ir.graph import Graph


def lint(g: Graph, after: str) -> None:
    def fail(nid, msg):
        raise GraphError(f"lint after pass {after!r}: {g.label(nid)} "
                         f"({g.node(nid)['op']}#{nid}): {msg}")

    if not nx.is_directed_acyclic_graph(g.nx):
        raise GraphError(f"lint after pass {after!r}: the graph has a cycle")
    done = g.meta["passes"]
    if "autodiff" in done and done.index("autodiff") < done.index("losses"):
        raise GraphError(f"lint after pass {after!r}: autodiff ran before losses")
    for nid in g.order():
        n = g.node(nid)
        op = g.op(nid)
        ports = g.in_ports(nid)
        missing = [p for p in op.required_ports(n["attrs"]) if p not in ports]
        if missing:
            fail(nid, f"unconnected port(s) {missing}")
        unknown = sorted(set(ports) - set(op.port_names(n["attrs"])))
        if unknown:
            fail(nid, f"edges into unknown port(s) {unknown}")
        if "shapes" in done and len(n.get("specs") or ()) == 0 and op.name != "vjp":
            fail(nid, "no shape annotation")
        if "masks" in done:
            if "masks" not in n or len(n["masks"]) != len(n["specs"]):
                fail(nid, "no mask annotation")
            for src, _port, d in g.in_edges(nid):
                if d["kind"] == "mask":
                    if g.spec(src, d["out"]).dtype != "bool":
                        fail(nid, f"mask edge from {g.label(src)} is not bool")
                elif d["kind"] == "data" and d["mask"] is not None and n["phase"] == "forward":
                    if not op.mask_rule(n["attrs"]).takes:
                        fail(nid, f"a mask from {g.label(d['mask'])} reaches an op that "
                                  f"cannot take one")
        if "losses" in done and n["op"] == "loss":
            fail(nid, "loss node was not rewritten")
