"""Pass 2: mask propagation, making every mask an explicit node and edge.

Each op declares a :class:`~graphmask.ops.MaskRule`. Walking the graph in order:

* the mask a node receives is the one carried by its data inputs (weights never carry
  one). Merge ops (``add``, ``concatenate``) follow Keras 3.4+: no mask if any input is
  unmasked, else the OR of the masks (an inserted ``mask_or`` node);
* a mask reaching an op that cannot take one is a :class:`MaskError` naming both layers;
* ``uses``: the mask value is connected to the op's ``mask`` port (a *mask edge*);
* ``out``: the op's first output carries the incoming mask (``pass``), none
  (``none``), or a new one (``create``: a mask node such as ``mask_not_equal`` is
  inserted, reading the op's ``from_port`` input).

Afterwards every node has ``masks`` (one entry per visible output: the id of the node
producing that mask, or ``None``) and every edge has ``mask`` (what its value carries).
"""
from __future__ import annotations

from graphmask.errors import MaskError
from graphmask.ir.graph import Graph
from graphmask.ops.merge import MERGE_OPS

from .shapes import infer_node

NAME = "masks"


def _describe(g: Graph, mask_id: int) -> str:
    n = g.node(mask_id)
    what = {"mask_not_equal": "ids != {value}", "mask_any_not_equal": "any(x != {value})",
            "mask_or": "OR of masks", "mask_and": "AND of masks"}.get(n["op"], n["op"])
    return f"layer {n['layer']!r} ({what.format(**n['attrs'])})"


def _existing(g: Graph, op: str, attrs: dict, inputs: dict) -> int | None:
    """A node already computing this mask (the front end records the masks a custom layer
    reads; the pass reuses them rather than computing the same mask twice)."""
    want = {p: (s, 0) if isinstance(s, int) else tuple(s) for p, s in inputs.items()}
    src = next(iter(want.values()))[0]
    for dst, _port, _d in g.consumers(src):
        n = g.node(dst)
        if n["op"] == op and n["attrs"] == attrs and g.in_ports(dst) == want:
            return dst
    return None


def _add_mask_node(g: Graph, op: str, attrs: dict, inputs: dict, layer: str, of: int) -> int:
    found = _existing(g, op, attrs, inputs)
    if found is not None:
        g.node(found).setdefault("mask_of", of)
        return found
    mid = g.add(op, attrs, inputs, layer=layer)
    g.node(mid)["specs"] = infer_node(g, mid)
    g.node(mid)["masks"] = [None]
    g.node(mid)["mask_of"] = of
    for _src, _, d in g.in_edges(mid):
        d["mask"] = None
    return mid


def annotate_edges(g: Graph, nid: int, data: bool = True) -> None:
    """Set ``mask`` on every edge into ``nid``: a mask edge carries its own mask node, a
    data edge what its source output carries (with ``data``; backward nodes read forward
    values but pass no mask on), residual and gradient edges nothing."""
    for src, _, d in g.in_edges(nid):
        if d["kind"] == "mask":
            d["mask"] = src
        elif d["kind"] == "data" and data:
            masks = g.node(src).get("masks") or []
            d["mask"] = masks[d["out"]] if d["out"] < len(masks) else None
        else:
            d["mask"] = None


def _incoming(g: Graph, nid: int) -> list[tuple[str, int | None]]:
    """(port, mask carried) for each data edge into ``nid``, annotating the edges."""
    res = []
    for src, port, d in g.in_edges(nid):
        if d["kind"] != "data" or g.node(src)["op"] == "variable":
            continue
        masks = g.node(src).get("masks") or []
        d["mask"] = masks[d["out"]] if d["out"] < len(masks) else None
        res.append((port, d["mask"]))
    return res


def _combine(g: Graph, nid: int, incoming) -> int | None:
    n = g.node(nid)
    carried = [m for _, m in incoming if m is not None]
    if not carried:
        return None
    if n["op"] in MERGE_OPS and len(carried) < len(incoming):
        return None  # Keras 3.4+: an unmasked input makes the merged output unmasked
    distinct = sorted(set(carried))
    if len(distinct) == 1:
        return distinct[0]
    ports = {f"m{i}": m for i, m in enumerate(distinct)}
    return _add_mask_node(g, "mask_or", {"n": len(distinct)}, ports, n["layer"], nid)


def propagate_masks(graph: Graph) -> Graph:
    """Annotate masks on every node output and edge; insert mask nodes and edges."""
    g = graph.copy()
    g.require(NAME, "shapes")
    for nid in g.order():
        n = g.node(nid)
        rule = g.op(nid).mask_rule(n["attrs"])
        incoming = [(p, m) for p, m in _incoming(g, nid)
                    if rule.mask_from is None or p in rule.mask_from]
        if any(m is not None for _, m in incoming) and not rule.takes:
            creator = next(m for _, m in incoming if m is not None)
            raise MaskError(
                f"pass {NAME!r}: the mask created by {_describe(g, creator)} reaches layer "
                f"{g.label(nid)!r} ({n['op']}), which cannot take a mask. Keras 3 would only "
                f"warn and drop it. Consume the mask first (LSTM, GlobalAveragePooling1D), "
                f"do not create it, or drop it on purpose with a layer whose compute_mask "
                f"returns None, e.g. Lambda(lambda t: t * 1.0, mask=lambda inputs, mask: "
                f"None) (docs/masking.md).")
        mask_in = _combine(g, nid, incoming)
        out = None
        if rule.out == "pass":
            out = mask_in
        elif rule.out == "port":
            src, k = g.in_ports(nid)["mask"]
            if k != 0:
                raise MaskError(f"pass {NAME!r}: layer {g.label(nid)!r} attaches output {k} "
                                f"of node {src} as a mask; masks must be a node's first output")
            out = src
        elif rule.out == "create":
            op, attrs, from_port = rule.create
            src = g.in_ports(nid)[from_port]
            out = _add_mask_node(g, op, attrs, {"x": src}, n["layer"], nid)
        if rule.uses:
            use = out if rule.out == "create" else mask_in
            if use is not None:
                _check_fits(g, use, nid)
                g.connect(use, nid, "mask", kind="mask")
                for _, port, d in g.in_edges(nid):
                    if port == "mask":
                        d["mask"] = use
        n["masks"] = [out] + [None] * (len(n["specs"]) - 1)
    g.meta["passes"].append(NAME)
    return g


def _check_fits(g: Graph, mask_id: int, nid: int) -> None:
    mshape = g.spec(mask_id).shape
    ports = g.in_ports(nid)
    data_port = "x" if "x" in ports else next(iter(ports))
    src, out = ports[data_port]
    dshape = g.spec(src, out).shape
    if len(dshape) < len(mshape) or any(
            a is not None and b is not None and a != b for a, b in zip(mshape, dshape)):
        raise MaskError(f"pass {NAME!r}: the mask created by {_describe(g, mask_id)} has shape "
                        f"{mshape}, which does not fit input shape {dshape} of layer "
                        f"{g.label(nid)!r} ({g.node(nid)['op']})")
