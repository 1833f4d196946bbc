"""Pass 3: rewrite each loss node into its masked, weighted form.

``compile(loss=...)`` adds one ``loss`` node per output: ``loss(y_pred, y_true,
weight?)``, the plain weighted mean of per-position scores. This pass replaces each by

* ``loss_score(y_pred, y_true)`` -> per-position score (B, T) or (B,), then
* ``masked_mean(score, mask, weight?)`` = ``sum(score*m*w) / sum(m)`` (0 when nothing
  is kept) when the prediction carries a mask, else
  ``weighted_mean(score, weight?)`` = ``sum(score*w) / count``.

Metric reductions (``weighted_average`` nodes added by compile) get the same mask on
their ``mask`` port, so metrics count the same kept positions as the loss.
"""
from __future__ import annotations

from graphmask.errors import MaskError
from graphmask.graph import Graph

from .masks import _describe, annotate_edges
from .shapes import infer_node

NAME = "losses"


def _pred_mask(g: Graph, nid: int, port: str = "y_pred"):
    for _src, p, d in g.in_edges(nid):
        if p == port:
            return d["mask"]
    return None


def _annotate(g: Graph, nid: int) -> None:
    g.node(nid)["specs"] = infer_node(g, nid)
    g.node(nid)["masks"] = [None] * len(g.node(nid)["specs"])
    annotate_edges(g, nid)


def _check_fits(g: Graph, mask: int, score: int, what: str) -> None:
    ms, ss = g.spec(mask).shape, g.spec(score).shape
    if len(ms) != len(ss) or any(a is not None and b is not None and a != b
                                 for a, b in zip(ms, ss)):
        raise MaskError(f"pass {NAME!r}: the mask created by {_describe(g, mask)} has shape "
                        f"{ms}, but the {what} on layer {g.node(score)['layer']!r} gives scores "
                        f"of shape {ss}")


def rewrite_losses(graph: Graph) -> Graph:
    """Replace every ``loss`` node; connect masks to metric reductions."""
    g = graph.copy()
    g.require(NAME, "shapes", "masks")
    new_losses = []
    for lid in g.meta["losses"]:
        n = g.node(lid)
        ports = g.in_ports(lid)
        mask = _pred_mask(g, lid)
        sid = g.add("loss_score", n["attrs"], {"y_pred": ports["y_pred"],
                                               "y_true": ports["y_true"]}, layer=n["layer"])
        _annotate(g, sid)
        red = {"score": sid}
        if "weight" in ports:
            red["weight"] = ports["weight"]
        if mask is not None:
            _check_fits(g, mask, sid, "loss")
            rid = g.add("masked_mean", {}, {**red, "mask": mask}, layer=n["layer"],
                        kinds={"mask": "mask"})
        else:
            rid = g.add("weighted_mean", {}, red, layer=n["layer"])
        _annotate(g, rid)
        g.node(rid)["loss_of"] = g.node(lid).get("loss_of")
        g.nx.remove_node(lid)
        new_losses.append(rid)
    g.meta["losses"] = new_losses
    for nid in g.nodes_by_op("weighted_average"):
        score = g.in_ports(nid)["score"][0]
        mask = _pred_mask(g, score)
        if mask is not None and "mask" not in g.in_ports(nid):
            _check_fits(g, mask, score, "metric")
            g.connect(mask, nid, "mask", kind="mask")
            _annotate(g, nid)
    g.meta["passes"].append(NAME)
    return g
