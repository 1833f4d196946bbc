"""What a picture shows: the compiled graph reduced to labelled nodes and styled edges.

Both the DOT export and the matplotlib renderer draw this one view, so they always agree.
Weights (``variable`` nodes) are hidden unless asked for; the backward graph only with
``backward=True``. Edge styles:

* ``data``   a value without a mask;
* ``masked`` a value that carries a mask (the mask pass's annotation);
* ``mask``   the boolean mask itself, flowing into a ``mask`` port, or into a custom
  layer whose ``call`` (or ``compute_mask``) reads it;
* ``grad``   anything inside the backward graph (gradients, residuals).

Custom layers. Each top-level call of a custom layer (or of a model used as a layer) is
one box ``g<n>`` labelled ``name (Class)``, its output shapes and its mask rule; a mask
the call computed stays a mask box of its own (``mask of 'name'``). With
``expand=True`` the call's nodes are drawn instead, inside a cluster carrying the same
label (nested calls in nested clusters). Node ids are ``n<node id>`` and, for calls,
``g<n>`` (:attr:`graphmask.inspect.GroupCall.ref`: calls numbered in call order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphmask.inspect.explain import (
    creator_name,
    edge_mask,
    fmt_shape,
    group_calls,
    group_path,
    is_mask_node,
    mask_computes,
    node_status,
)
from graphmask.ops.fused import chain_label

SOURCE_OPS = ("input", "target", "sample_weight", "constant", "variable")
LOSS_OPS = ("loss", "loss_score", "masked_mean", "weighted_mean", "metric_score",
            "weighted_average")

STYLE = {
    # node kind: (fill, border)
    "source": ("#eeeeee", "#777777"),
    "layer": ("#dbe9f6", "#3b6ea5"),
    "group": ("#e6def5", "#6a4fa3"),
    "mask": ("#fde2c8", "#d9731a"),
    "loss": ("#f7d9d9", "#b04040"),
    "backward": ("#f2f2f2", "#999999"),
}
EDGE_STYLE = {
    # edge kind: (colour, line style, width)
    "data": ("#555555", "solid", 1.2),
    "masked": ("#1f6fb4", "solid", 2.4),
    "mask": ("#d9731a", "dashed", 1.8),
    "grad": ("#aaaaaa", "solid", 0.8),
}
LEGEND = {
    "data": "data (no mask)",
    "masked": "data carrying a mask",
    "mask": "mask (bool B x T) into a consumer",
    "grad": "backward: gradients, saved values",
}
NODE_LEGEND = {
    "source": "model input / target / weight",
    "layer": "layer (op)",
    "group": "custom layer call (one box)",
    "mask": "mask node: computes a mask",
    "cluster": "custom layer call, expanded",
    "loss": "loss / metric",
    "backward": "backward (VJP) node",
}


CLUSTER_STYLE = ("#f6f2fc", "#6a4fa3")  # fill, border of an expanded call


@dataclass
class VNode:
    id: str              # "n<node id>", or "g<n>" for a collapsed call
    kind: str            # source | layer | group | mask | loss | backward
    lines: list          # label lines: title, op, shape
    phase: str = "forward"
    cluster: str | None = None   # expanded: the innermost call drawn around it


@dataclass
class VEdge:
    src: str
    dst: str
    port: str
    kind: str            # data | masked | mask | grad
    label: str = ""
    mask: str | None = None


@dataclass
class VCluster:
    id: str              # "g<n>"
    lines: list          # "name (Class)" and the mask rule
    parent: str | None = None


@dataclass
class View:
    nodes: dict = field(default_factory=dict)   # id -> VNode, in graph order
    edges: list = field(default_factory=list)
    title: str = ""
    clusters: dict = field(default_factory=dict)  # id -> VCluster, outer before inner


def _kind(n: dict, g, nid: int, made: dict) -> str:
    if n["phase"] == "backward":
        return "backward"
    if is_mask_node(g, nid) or nid in made:
        return "mask"
    if n["op"] in SOURCE_OPS:
        return "source"
    if n["op"] in LOSS_OPS:
        return "loss"
    return "layer"


def rule_lines(call) -> list[str]:
    """A call's mask rule, one clause a line (``read by call()``, ``no output mask``);
    nothing for a call no mask reaches or leaves."""
    return [] if call.rule == "none" else call.rule.split(", ")


def _lines(g, nid: int, kind: str, expand: bool) -> list[str]:
    n = g.node(nid)
    specs = n.get("specs") or []
    shape = " ".join(fmt_shape(s.shape) for s in specs[:1])
    if kind == "mask":  # expanded, the layer inside the call that made it
        who = n["layer"] if expand else creator_name(g, nid)
        return [f"mask of {who!r}", mask_computes(g, nid), f"{shape} bool"]
    if n["op"] == "variable":
        return [n["attrs"]["var"], f"weight {shape}"]
    title = n["layer"] or f"{n['op']}#{nid}"
    op = n["op"]
    if op == "vjp":
        op = f"vjp of {n['attrs']['op']}"
    elif op == "fused_elementwise":
        op = f"fused: {chain_label(n['attrs'])}"
    elif op == "loss_score":
        op = f"loss_score: {n['attrs'].get('fn', '')}"
    lines = [title, op, shape]
    if n["op"] == "masked_mean":
        lines.append("mean over kept steps")
    elif n["op"] == "weighted_mean":
        lines.append("mean over all steps")
    if kind == "layer" and n["op"] == "attach_mask" and group_path(g, nid):
        lines.append("attaches mask")  # a custom layer's output mask
    elif kind == "layer":
        st = node_status(g, nid)
        in_call = bool(group_path(g, nid))  # the call's box states what it does
        lines.append({"created": "creates a mask", "merged": "merges masks",
                      "passed": "uses + passes mask" if st.used == st.out else "passes mask",
                      "consumed": "consumes mask", "dropped": "" if in_call else "drops mask",
                      "none": ""}[st.status])
    return [s for s in lines if s]


def _group_lines(g, call) -> list[str]:
    shapes = ", ".join(fmt_shape(g.spec(o, k).shape) for o, k in call.outputs)
    return [call.title, shapes, *rule_lines(call)]


def build_view(model, backward: bool = False, variables: bool = False,
               expand: bool = False) -> View:
    """The nodes and edges a picture of ``model.graph`` shows (see module doc).

    Parameters
    ----------
    model : Model or Graph
    backward : include the backward (VJP) nodes.
    variables : include the weight (``variable``) nodes.
    expand : draw each custom-layer call's nodes inside a cluster instead of one box.
    """
    g = model if not hasattr(model, "graph") else model.graph
    view = View(title=f"mask flow of model {getattr(model, 'name', '')!r}".replace(" ''", ""))
    calls = group_calls(g)
    made: dict = {}
    for c in calls.values():  # the outermost call that computed each mask
        for m in c.made:
            made.setdefault(m, c)

    def key(nid: int) -> str:
        path = group_path(g, nid)
        if expand or not path or nid in calls[path[0]].made:
            return f"n{nid}"
        return calls[path[0]].ref

    for nid in g.order():
        n = g.node(nid)
        if n["phase"] == "backward" and not backward:
            continue
        if n["op"] == "variable" and not variables:
            continue
        k = key(nid)
        if k.startswith("g"):
            if k not in view.nodes:
                view.nodes[k] = VNode(k, "group", _group_lines(g, calls[group_path(g, nid)[0]]))
            continue
        kind = _kind(n, g, nid, made)
        path = group_path(g, nid)
        cluster = calls[path[-1]].ref if expand and path else None
        view.nodes[k] = VNode(k, kind, _lines(g, nid, kind, expand), n["phase"], cluster)
    if expand:
        used = {v.cluster for v in view.nodes.values() if v.cluster}
        for c in reversed(calls.values()):  # inner calls first: the calls around them too
            if c.ref in used and c.parent is not None:
                used.add(calls[c.parent].ref)
        for c in calls.values():
            if c.ref in used:
                view.clusters[c.ref] = VCluster(
                    c.ref, [c.title, *rule_lines(c)],
                    None if c.parent is None else calls[c.parent].ref)
    seen = set()
    for dst in g.order():
        dk = key(dst)
        if dk not in view.nodes:
            continue
        for src, port, d in g.in_edges(dst):
            sk = key(src)
            if sk not in view.nodes or sk == dk:
                continue
            if src in made and dk == made[src].ref:
                continue  # the call attaching the mask it computed: inside its box
            if dk.startswith("g") and g.node(dst)["op"] == "attach_mask" and port == "mask":
                continue  # a call passing a mask on: its outgoing edge carries the mask
            m = edge_mask(g, src, d, dst)
            reads = any(src in calls[c].received for c in group_path(g, dst))
            if g.node(dst)["phase"] == "backward":
                kind, label = ("mask" if d["kind"] == "mask" else "grad"), ""
            elif d["kind"] == "mask" or reads:
                kind, label = "mask", "mask"
            elif m is not None:
                kind, label = "masked", ""
            else:
                kind, label = "data", ""
            if kind == "mask" and not label:
                label = "mask"
            if dk.startswith("g") or sk.startswith("g"):
                if (sk, dk, kind) in seen:
                    continue  # one arrow per value kind between a call's box and a node
                seen.add((sk, dk, kind))
            view.edges.append(VEdge(sk, dk, port, kind, label,
                                    None if m is None else key(m)))
    return view
