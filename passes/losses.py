"""Pass 3: rewrite each loss node into its masked, weighted form.

``compile(loss=...)`` adds one ``loss`` node per output: ``loss(y_pred, y_true,
weight?)``, the plain weighted mean of per-position scores. This pass replaces each by

* ``loss_score(y_pred, y_true, mask?)`` -> per-position score (B, T) or (B,); the
  prediction's mask goes to its ``mask`` port when its kernel reads one (class ids), so
  labels at padded positions are neither checked nor used, then
* ``masked_mean(score, keep, weight?)`` = ``sum(score*m*w) / sum(m)`` (0 when nothing
  is kept) when some positions are dropped, else
  ``weighted_mean(score, weight?)`` = ``sum(score*w) / count``.

``keep`` is the prediction's mask; with ``ignore_class`` (sparse crossentropy, as in
Keras 3) it is ANDed with ``y_true != ignore_class``, a ``mask_not_equal`` node on the
target, so ignored positions leave the numerator and the denominator like padding.

Metric reductions (``weighted_average`` nodes added by compile) get the same mask on
their ``mask`` port, so metrics count the same kept positions as the loss. A metric with
``ignore_class`` follows Keras 3's ``Mean``: ignored positions are dropped when the
reduction has a mask or a weight; an unweighted metric on an unmasked output counts
them as zeros.
"""
from __future__ import annotations

from graphmask.errors import MaskError
from graphmask.ir.graph import Graph
from graphmask.ops.base import get_op
from graphmask.ops.losses import ignore_class

from .masks import _add_mask_node, _describe, annotate_edges
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


def _keep(g: Graph, score: int, pad, ignore, layer: str, cache: dict):
    """The mask of kept positions: ``pad`` AND ``y_true != ignore`` (nodes shared)."""
    if ignore is None:
        return pad
    target = g.in_ports(score)["y_true"]
    key = (target, ignore, pad)
    if key not in cache:
        keep = _add_mask_node(g, "mask_not_equal", {"value": ignore}, {"x": target}, layer,
                              score)
        if pad is not None:
            keep = _add_mask_node(g, "mask_and", {"n": 2}, {"m0": pad, "m1": keep}, layer,
                                  score)
        cache[key] = keep
    return cache[key]


def rewrite_losses(graph: Graph) -> Graph:
    """Replace every ``loss`` node; connect masks to scores and metric reductions."""
    g = graph.copy()
    g.require(NAME, "shapes", "masks")
    new_losses, cache = [], {}
    for lid in g.meta["losses"]:
        n = g.node(lid)
        ports = g.in_ports(lid)
        mask = _pred_mask(g, lid)
        score_ports = {"y_pred": ports["y_pred"], "y_true": ports["y_true"]}
        if mask is not None and get_op("loss_score").mask_rule(n["attrs"]).uses:
            score_ports["mask"] = mask
        sid = g.add("loss_score", n["attrs"], score_ports, layer=n["layer"],
                    kinds={"mask": "mask"})
        _annotate(g, sid)
        keep = _keep(g, sid, mask, ignore_class(n["attrs"]), n["layer"], cache)
        red = {"score": sid}
        if "weight" in ports:
            red["weight"] = ports["weight"]
        if keep is not None:
            _check_fits(g, keep, sid, "loss")
            rid = g.add("masked_mean", {}, {**red, "mask": keep}, layer=n["layer"],
                        kinds={"mask": "mask"})
        else:
            rid = g.add("weighted_mean", {}, red, layer=n["layer"])
        _annotate(g, rid)
        g.node(rid)["loss_of"] = g.node(lid).get("loss_of")
        g.nx.remove_node(lid)
        new_losses.append(rid)
    g.meta["losses"] = new_losses
    for nid in g.nodes_by_op("weighted_average"):
        ports = g.in_ports(nid)
        score = ports["score"][0]
        mask = _pred_mask(g, score)
        ignore = ignore_class(g.node(score)["attrs"])
        if ignore is not None and (mask is not None or "weight" in ports):
            mask = _keep(g, score, mask, ignore, g.node(nid)["layer"], cache)
        if mask is not None and "mask" not in ports:
            _check_fits(g, mask, score, "metric")
            g.connect(mask, nid, "mask", kind="mask")
            _annotate(g, nid)
    g.meta["passes"].append(NAME)
    return g
