"""Pass 4: symbolic reverse-mode autodiff; appends the backward graph.

For the total loss ``sum_k w_k * loss_k`` it walks the forward nodes in reverse
topological order and, for each node on a path from a trainable variable to a loss,
adds one ``vjp`` node (see ``graphmask/ops/vjp.py``) wired to the forward node's
inputs, to all its outputs including residuals (``residual`` edges), and to the
gradients of its outputs (``grad`` edges). A value with several consumers gets an
``add_n`` node summing its gradient contributions. Masks, integer inputs and targets get
no gradient. Result: ``g.meta['grads'][variable name] = (node, out)``.
"""
from __future__ import annotations

from collections import defaultdict

import networkx as nx

from graphmask.errors import GraphError
from graphmask.ir.graph import Graph
from graphmask.ops.base import is_float

from .masks import annotate_edges
from .shapes import infer_node

NAME = "autodiff"


def _add(g: Graph, op: str, attrs: dict, inputs: dict, kinds: dict, layer: str) -> int:
    nid = g.add(op, attrs, inputs, layer=layer, phase="backward", kinds=kinds)
    g.node(nid)["specs"] = infer_node(g, nid)
    g.node(nid)["masks"] = [None] * len(g.node(nid)["specs"])
    annotate_edges(g, nid, data=False)
    return nid


def _accumulate(g: Graph, contribs: list, layer: str):
    if len(contribs) == 1:
        return contribs[0]
    ports = {f"x{i}": c for i, c in enumerate(contribs)}
    return (_add(g, "add_n", {"n": len(contribs)}, ports, {p: "grad" for p in ports}, layer), 0)


def build_backward(graph: Graph) -> Graph:
    """Append the backward graph of the total loss to a copy of ``graph``."""
    g = graph.copy()
    g.require(NAME, "shapes", "masks", "losses")
    losses = g.meta["losses"]
    if not losses:
        raise GraphError(f"pass {NAME!r}: the model has no loss; call compile(loss=...)")
    weights = g.meta.get("loss_weights") or [1.0] * len(losses)
    trainable = [n for n in g.order() if g.node(n)["op"] == "variable"
                 and g.node(n)["attrs"].get("trainable", True)]
    downstream = set(trainable)
    for v in trainable:
        downstream |= nx.descendants(g.nx, v)
    upstream = set(losses)
    for lid in losses:
        upstream |= nx.ancestors(g.nx, lid)
    needs = downstream & upstream

    grad_of: dict[tuple, list] = defaultdict(list)
    for lid, w in zip(losses, weights):
        spec = g.spec(lid)
        seed = g.add("constant", {"value": float(w), "shape": [], "dtype": spec.dtype},
                     layer=g.node(lid)["layer"], phase="backward")
        g.node(seed)["specs"] = infer_node(g, seed)
        g.node(seed)["masks"] = [None]
        grad_of[(lid, 0)].append((seed, 0))

    forward = [n for n in g.order() if g.node(n)["phase"] == "forward"]
    for nid in reversed(forward):
        n = g.node(nid)
        if nid not in needs or n["op"] == "variable":
            continue
        op = g.op(nid)
        ports = g.in_ports(nid)
        grads = {}
        for k in range(len(n["specs"])):
            if grad_of.get((nid, k)):
                grads[k] = _accumulate(g, grad_of[(nid, k)], n["layer"])
        wrt = [p for p in op.diff_ports if p in ports and ports[p][0] in needs
               and is_float(g.spec(*ports[p]).dtype)]
        if not grads or not wrt:
            continue
        n_all = len(n["specs"]) + op.n_residuals(n["attrs"])
        attrs = {"op": n["op"], "attrs": n["attrs"], "wrt": wrt, "node": nid,
                 "in_ports": list(ports), "n_all": n_all, "n_visible": len(n["specs"])}
        inputs, kinds = {}, {}
        for p, src in ports.items():
            inputs[f"in:{p}"], kinds[f"in:{p}"] = src, ("mask" if p == "mask" else "data")
        for i in range(n_all):
            inputs[f"out:{i}"], kinds[f"out:{i}"] = (nid, i), "residual"
        for k, src in grads.items():
            inputs[f"grad:{k}"], kinds[f"grad:{k}"] = src, "grad"
        vid = _add(g, "vjp", attrs, inputs, kinds, n["layer"])
        g.node(vid)["vjp_of"] = nid
        for j, p in enumerate(wrt):
            grad_of[ports[p]].append((vid, j))

    result = {}
    for v in trainable:
        if grad_of.get((v, 0)):
            result[g.node(v)["attrs"]["var"]] = _accumulate(g, grad_of[(v, 0)],
                                                            g.node(v)["layer"])
    g.meta["grads"] = result
    g.meta["passes"].append(NAME)
    return g
