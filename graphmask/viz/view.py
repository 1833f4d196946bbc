"""What a picture shows: the compiled graph reduced to labelled nodes and styled edges.

Both the DOT export and the matplotlib renderer draw this one view, so they always agree.
Weights (``variable`` nodes) are hidden unless asked for; the backward graph only with
``backward=True``. Edge styles:

* ``data``   a value without a mask;
* ``masked`` a value that carries a mask (the mask pass's annotation);
* ``mask``   the boolean mask itself, flowing into a ``mask`` port;
* ``grad``   anything inside the backward graph (gradients, residuals).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphmask.inspect import edge_mask, fmt_shape, is_mask_node, mask_computes, node_status

SOURCE_OPS = ("input", "target", "sample_weight", "constant", "variable")
LOSS_OPS = ("loss", "loss_score", "masked_mean", "weighted_mean", "metric_score",
            "weighted_average")

STYLE = {
    # node kind: (fill, border)
    "source": ("#eeeeee", "#777777"),
    "layer": ("#dbe9f6", "#3b6ea5"),
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
    "mask": "mask node: computes a mask",
    "loss": "loss / metric",
    "backward": "backward (VJP) node",
}


@dataclass
class VNode:
    id: int
    kind: str            # source | layer | mask | loss | backward
    lines: list          # label lines: title, op, shape
    phase: str = "forward"


@dataclass
class VEdge:
    src: int
    dst: int
    port: str
    kind: str            # data | masked | mask | grad
    label: str = ""
    mask: int | None = None


@dataclass
class View:
    nodes: dict = field(default_factory=dict)   # id -> VNode, in graph order
    edges: list = field(default_factory=list)
    title: str = ""


def _kind(n: dict, g, nid: int) -> str:
    if n["phase"] == "backward":
        return "backward"
    if is_mask_node(g, nid):
        return "mask"
    if n["op"] in SOURCE_OPS:
        return "source"
    if n["op"] in LOSS_OPS:
        return "loss"
    return "layer"


def _lines(g, nid: int, kind: str) -> list[str]:
    n = g.node(nid)
    specs = n.get("specs") or []
    shape = " ".join(fmt_shape(s.shape) for s in specs[:1])
    if kind == "mask":
        return [f"mask of {n['layer']!r}", mask_computes(g, nid),
                f"{shape} bool"]
    if n["op"] == "variable":
        return [n["attrs"]["var"], f"weight {shape}"]
    title = n["layer"] or f"{n['op']}#{nid}"
    op = n["op"]
    if op == "vjp":
        op = f"vjp of {n['attrs']['op']}"
    elif op == "loss_score":
        op = f"loss_score: {n['attrs'].get('fn', '')}"
    lines = [title, op, shape]
    if n["op"] == "masked_mean":
        lines.append("mean over kept steps")
    elif n["op"] == "weighted_mean":
        lines.append("mean over all steps")
    if kind == "layer":
        st = node_status(g, nid)
        lines.append({"created": "creates a mask", "merged": "merges masks",
                      "passed": "uses + passes mask" if st.used == st.out else "passes mask",
                      "consumed": "consumes mask", "dropped": "drops mask",
                      "none": ""}[st.status])
    return [s for s in lines if s]


def build_view(model, backward: bool = False, variables: bool = False) -> View:
    """The nodes and edges a picture of ``model.graph`` shows (see module doc)."""
    g = model if not hasattr(model, "graph") else model.graph
    view = View(title=f"mask flow of model {getattr(model, 'name', '')!r}".replace(" ''", ""))
    for nid in g.order():
        n = g.node(nid)
        if n["phase"] == "backward" and not backward:
            continue
        if n["op"] == "variable" and not variables:
            continue
        kind = _kind(n, g, nid)
        view.nodes[nid] = VNode(nid, kind, _lines(g, nid, kind), n["phase"])
    for dst in view.nodes:
        for src, port, d in g.in_edges(dst):
            if src not in view.nodes:
                continue
            m = edge_mask(g, src, d, dst)
            if g.node(dst)["phase"] == "backward":
                kind, label = ("mask" if d["kind"] == "mask" else "grad"), ""
            elif d["kind"] == "mask":
                kind, label = "mask", "mask"
            elif m is not None:
                kind, label = "masked", ""
            else:
                kind, label = "data", ""
            if kind == "mask" and not label:
                label = "mask"
            view.edges.append(VEdge(src, dst, port, kind, label, m))
    return view
