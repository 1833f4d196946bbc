"""The interactive mask-flow explorer: one self-contained HTML file.

``to_html(model, batch=None)`` returns a page with everything inline (the SVG, a small
hand-written script and its style, the data as JSON): no network, opens from
``file://``. The layout is computed here, by the same code as the SVG picture
(:class:`graphmask.viz.draw.Layout`), for up to three views:

* ``compact``: each custom-layer call (or model used as a layer) one box, as
  ``render(model, "flow.svg")``;
* ``expanded``: the calls' nodes inside clusters, as ``render(..., expand=True)``; the page
  folds each cluster it does not show expanded into a box in place;
* ``backward``: the forward view plus the backward (VJP) nodes joined by the gradient
  flow and the mask edges only (the forward values each VJP reads are listed in its
  details, not drawn); the page shows the nodes on the selected weight's gradient path.

In the page: click a box or an edge for its shape, dtype, mask rule, mask provenance
(:func:`graphmask.inspect.explain_mask`'s chains) and parameters; search layers; zoom
(wheel, buttons) and pan (drag); expand and collapse calls. With ``batch=`` the masks
and the sequence values of the batch are embedded: the selected edge shows a samples x
timesteps grid of kept and masked positions, marks the positions whose value is all
zeros or repeats the previous step, and the values of one sample.
"""
from __future__ import annotations

import base64
import html
import json
import os
from importlib import resources

import networkx as nx
import numpy as np

from graphmask.errors import ConfigError
from graphmask.inspect.explain import (
    chain_text,
    fmt_shape,
    group_calls,
    group_path,
    group_status,
    is_mask_node,
    mask_chains,
    mask_computes,
    mask_label,
    mask_values,
    node_status,
    unit_of,
)
from graphmask.ops.fused import chain_label
from graphmask.viz.draw import FONT, LINE_H, PAD_Y, Layout
from graphmask.viz.view import (
    CLUSTER_STYLE,
    EDGE_STYLE,
    LEGEND,
    NODE_LEGEND,
    STYLE,
    build_view,
    rule_lines,
)

SOURCE_OPS = ("input", "target", "sample_weight", "constant", "variable")


# ---- layouts ---------------------------------------------------------------------------
def _marked_path(lay: Layout, i: int):
    """Edge ``i``'s points (equal to ``lay.paths[i]``) and where it crosses clusters:
    ``starts[c]`` is the index of the point where it leaves cluster ``c`` (its source
    inside), ``ends[c]`` where it enters ``c`` (its destination inside)."""
    e = lay.view.edges[i]
    out_of, into = lay._clusters_of(e.src), lay._clusters_of(e.dst)
    common = 0
    while common < min(len(out_of), len(into)) and out_of[common] == into[common]:
        common += 1
    pts = [(lay.x[e.src], lay.y[e.src] + lay.size[e.src][1] / 2)]
    starts, ends = {}, {}
    for c in reversed(out_of[common:]):
        pts += lay._through(c, i)
        starts[c] = len(pts) - 1
    pts += lay._through(out_of[common - 1] if common else None, i)
    for c in into[common:]:
        ends[c] = len(pts)
        pts += lay._through(c, i)
    pts.append((lay.x[e.dst], lay.y[e.dst] - lay.size[e.dst][1] / 2))
    return pts, starts, ends


def curve_d(pts) -> str:
    """SVG path data through ``pts``: the cubic curves of the picture's ``_curve``."""
    r = lambda v: f"{v:.1f}"  # noqa: E731
    d = [f"M{r(pts[0][0])} {r(pts[0][1])}"]
    for (x1, y1), (x2, y2) in zip(pts, pts[1:]):
        if x1 == x2:
            c1, c2 = (x1, y1 + (y2 - y1) / 3), (x2, y1 + 2 * (y2 - y1) / 3)
        else:
            ym = (y1 + y2) / 2
            c1, c2 = (x1, ym), (x2, ym)
        d.append(f"C{r(c1[0])} {r(c1[1])} {r(c2[0])} {r(c2[1])} {r(x2)} {r(y2)}")
    return " ".join(d)


def backward_view(model):
    """The forward view plus the backward nodes joined by the gradient flow only: the
    forward values a VJP node reads are not drawn, and a mask it reads is one more line
    of its box (``reads mask of 'emb'``) instead of a long edge."""
    view = build_view(model, backward=True)
    g = model.graph
    labels = mask_labels(g)
    phase = {k: v.phase for k, v in view.nodes.items()}
    view.edges = [e for e in view.edges if phase[e.dst] == "forward"
                  or phase[e.src] == "backward"]
    for key, vn in view.nodes.items():
        if vn.phase != "backward":
            continue
        for src, _port, d in g.in_edges(int(key[1:])):
            line = f"reads mask of {labels.get(src, g.node(src)['layer'])!r}"
            if d["kind"] == "mask" and line not in vn.lines:
                vn.lines.append(line)
    view.title += " with its backward graph"
    return view


def mask_labels(g) -> dict:
    """``{mask id: its label}`` (:func:`graphmask.inspect.explain.mask_label`) for every
    mask of ``g``, computed once."""
    return {m: mask_label(g, m) for m in mask_values(g)}


# ---- SVG -------------------------------------------------------------------------------
def _text(lines, x, y0, anchor="middle", cls="") -> str:
    spans = []
    for k, line in enumerate(lines):
        y = y0 + PAD_Y + (k + 0.5) * LINE_H
        weight = ' font-weight="bold"' if k == 0 else ""
        spans.append(f'<tspan x="{x:.1f}" y="{y:.1f}"{weight}>{html.escape(line)}</tspan>')
    c = f' class="{cls}"' if cls else ""
    return f'<text text-anchor="{anchor}" dominant-baseline="central"{c}>{"".join(spans)}</text>'


def _toggle(gid: str, x1: float, y0: float, sign: str) -> str:
    """The ``+`` (expand) or ``-`` (collapse) button in a call's top-right corner."""
    what = "expand" if sign == "+" else "collapse"
    return (f'<g class="gm-toggle" data-group="{gid}"><rect x="{x1 - 16:.1f}" '
            f'y="{y0 + 2:.1f}" width="14" height="14" rx="3"/><text x="{x1 - 9:.1f}" '
            f'y="{y0 + 9.5:.1f}" text-anchor="middle" dominant-baseline="central">{sign}'
            f'</text><title>{what}</title></g>')


def _svg_node(lay: Layout, key: str, clusters: list) -> str:
    vn = lay.view.nodes[key]
    fill, border = STYLE[vn.kind]
    x0, y0, x1, y1 = lay.box(key)
    dash = ' stroke-dasharray="5 3"' if vn.kind == "mask" else ""
    width = 1.6 if vn.kind in ("mask", "group") else 1.1
    toggle = _toggle(key, x1, y0, "+") if vn.kind == "group" else ""
    return (f'<g class="gm-node gm-{vn.kind}" data-id="{key}" data-phase="{vn.phase}" '
            f'data-clusters="{" ".join(clusters)}"><rect x="{x0:.1f}" y="{y0:.1f}" '
            f'width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" rx="6" fill="{fill}" '
            f'stroke="{border}" stroke-width="{width}"{dash}/>'
            f'{_text(vn.lines, lay.x[key], y0)}{toggle}</g>')


def _svg_cluster(lay: Layout, cid: str, fold_lines: list) -> str:
    cl = lay.view.clusters[cid]
    x0, y0, x1, y1 = lay.cluster_box[cid]
    fill, border = CLUSTER_STYLE
    gfill, gborder = STYLE["group"]
    w, h = x1 - x0, y1 - y0
    top = y0 + max(0.0, (h - len(fold_lines) * LINE_H - 2 * PAD_Y) / 2)
    return (f'<g class="gm-cluster" data-id="{cid}" data-parent="{cl.parent or ""}">'
            f'<g class="gm-open"><rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" '
            f'height="{h:.1f}" rx="8" fill="{fill}" stroke="{border}" stroke-width="1.3"/>'
            f'<g class="gm-head" data-id="{cid}">'
            f'{_text(cl.lines, x0 + 9, y0 - PAD_Y / 2, "start", "gm-ctitle")}</g>'
            f'{_toggle(cid, x1, y0, "-")}</g>'
            f'<g class="gm-fold gm-node gm-group" data-id="{cid}"><rect x="{x0:.1f}" '
            f'y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="6" fill="{gfill}" '
            f'stroke="{gborder}" stroke-width="1.6"/>{_text(fold_lines, (x0 + x1) / 2, top)}'
            f'{_toggle(cid, x1, y0, "+")}</g></g>')


def _svg_edge(name: str, i: int, e, d: str) -> str:
    colour, line, lw = EDGE_STYLE[e.kind]
    dash = ' stroke-dasharray="6 4"' if line == "dashed" else ""
    return (f'<g class="gm-edge gm-e-{e.kind}" data-id="{name}:{i}" data-src="{e.src}" '
            f'data-dst="{e.dst}"><path class="gm-line" d="{d}" fill="none" '
            f'stroke="{colour}" stroke-width="{lw}"{dash} marker-end="url(#gm-arrow-{e.kind})"/>'
            f'<path class="gm-hit" d="{d}"/></g>')


def _svg_layout(name: str, lay: Layout, fold: dict, edges_out: list) -> str:
    """One view as an SVG group; records each edge's geometry in ``edges_out``."""
    view = lay.view
    parts = [f'<g class="gm-layout" data-layout="{name}" data-width="{lay.width:.1f}" '
             f'data-height="{lay.height:.1f}">',
             f'<text class="gm-title" x="{lay.width / 2:.1f}" y="23" text-anchor="middle">'
             f'{html.escape(view.title)}</text>']
    parts += [_svg_cluster(lay, cid, fold[cid]) for cid in view.clusters]
    for i, e in enumerate(view.edges):
        pts, starts, ends = _marked_path(lay, i)
        rec = {"src": e.src, "dst": e.dst, "kind": e.kind, "port": e.port,
               "mask": e.mask, "pts": [[round(x, 1), round(y, 1)] for x, y in pts]}
        if starts or ends:
            rec["starts"], rec["ends"] = starts, ends
        edges_out.append(rec)
        parts.append(_svg_edge(name, i, e, curve_d(pts)))
    for key, vn in view.nodes.items():
        chain, c = [], vn.cluster
        while c is not None:
            chain.append(c)
            c = view.clusters[c].parent
        parts.append(_svg_node(lay, key, chain[::-1]))
    parts.append("</g>")
    return "".join(parts)


def _defs() -> str:
    marks = "".join(
        f'<marker id="gm-arrow-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        f'markerHeight="7" markerUnits="userSpaceOnUse" orient="auto"><path d="M0 0L10 5L0 10z" '
        f'fill="{c}"/></marker>' for k, (c, _, _) in EDGE_STYLE.items())
    return f"<defs>{marks}</defs>"


# ---- details ---------------------------------------------------------------------------
def _layer_objects(model) -> dict:
    """``{name: layer}`` for the model's layers and the layers nested in them."""
    found: dict = {}
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        if layer.name in found:
            continue
        found[layer.name] = layer
        stack += list(getattr(layer, "_layers", []) or []) + [
            sub for sub in getattr(layer, "layers", []) or [] if sub not in stack]
    return found


def _jsonable(value):
    """``value`` as strict JSON data: unknown objects and non-finite floats as repr."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _config(layer) -> dict:
    if layer is None:
        return {}
    try:
        cfg = layer.get_config()
    except Exception as e:  # noqa: BLE001 - a user's get_config: report, do not fail
        return {"get_config() failed": f"{type(e).__name__}: {e}"}
    return _jsonable({k: v for k, v in (cfg or {}).items() if k != "name"})


def _weights_of(layer) -> list:
    if layer is None:
        return []
    return [{"name": v.name, "shape": fmt_shape(v.shape), "dtype": v.dtype,
             "count": int(np.prod(v.shape)), "trainable": bool(v.trainable)}
            for v in layer.weights]


def _specs(g, nid) -> list:
    return [f"{fmt_shape(s.shape)} {s.dtype}" for s in g.node(nid).get("specs") or []]


def _units(g, key: str, calls_by_ref: dict):
    if key.startswith("g"):
        c = calls_by_ref[key]
        while c.parent is not None:
            c = _call_by_id(calls_by_ref, c.parent)
        return c.key
    nid = int(key[1:])
    n = g.node(nid)
    if n["phase"] == "backward" or n["op"] == "variable":
        return None
    return unit_of(g, n["mask_of"]) if "mask_of" in n else unit_of(g, nid)


def _node_details(model, g, key, layers, calls_by_ref, grads_by_node, labels) -> dict:
    if key.startswith("g"):
        c = calls_by_ref[key]
        st = group_status(c)
        layer = layers.get(c.layer)
        return {"title": c.title, "layer": c.layer, "class": c.cls, "op": "custom layer call",
                "phase": "forward", "shapes": [f"{fmt_shape(g.spec(o, k).shape)} "
                                               f"{g.spec(o, k).dtype}" for o, k in c.outputs],
                "rule": c.rule, "status": st.status,
                "mask": None if st.out is None else f"n{st.out}",
                "mask_text": None if st.out is None else
                f"mask of {labels[st.out]!r}: {mask_computes(g, st.out)}",
                "value": f"{c.outputs[0][0]}:{c.outputs[0][1]}" if c.outputs else None,
                "nodes": len(c.nodes), "weights": _weights_of(layer), "config": _config(layer),
                "group": True}
    nid = int(key[1:])
    n = g.node(nid)
    out = {"title": n["layer"] or f"{n['op']}#{nid}", "layer": n["layer"], "op": n["op"],
           "phase": n["phase"], "shapes": _specs(g, nid), "node": nid, "value": f"{nid}:0"}
    if n["op"] == "vjp":
        out["op"] = f"vjp of {n['attrs']['op']}"
    elif n["op"] == "fused_elementwise":
        out["op"] = f"fused: {chain_label(n['attrs'])}"
        out["fused"] = list(n.get("fused") or ())
    layer = layers.get(n["layer"])
    path = group_path(g, nid)
    calls = [_call_by_id(calls_by_ref, gid) for gid in path]
    if path:
        out["in_call"] = [c.ref for c in calls]
        out["in_call_titles"] = [c.title for c in calls]
    # a layer of its own (also one nested in a call), not a primitive its call recorded
    if layer is not None and n["phase"] == "forward" and (
            not calls or calls[-1].layer != n["layer"]):
        out["class"] = type(layer).__name__
        out["config"] = _config(layer)
    reads = []
    for src, port, d in g.in_edges(nid):
        s = g.node(src)
        if s["op"] == "variable":
            var = s["attrs"]["var"]
            spec = s["specs"][0]
            reads.append({"name": var, "shape": fmt_shape(spec.shape), "dtype": spec.dtype,
                          "count": int(np.prod(spec.shape)), "port": port,
                          "trainable": var in (g.meta.get("grads") or {})})
        elif n["phase"] == "backward":
            out.setdefault("inputs", []).append(
                f"{port} <- [{src}] {s['op']} {s['layer']!r} ({d['kind']})")
    out["weights"] = reads
    if is_mask_node(g, nid):
        out["computes"] = mask_computes(g, nid)
        out["mask"] = key
        out["status"] = "mask node"
        out["rule"] = f"computes {mask_computes(g, nid)} (bool), mask of {labels[nid]!r}"
    elif n["phase"] == "forward" and n["op"] not in SOURCE_OPS:
        st = node_status(g, nid)
        out["status"] = st.status
        out["rule"] = {"created": "creates a mask", "merged": "merges masks",
                       "passed": "uses and passes the mask" if st.used == st.out
                       else "passes the mask", "consumed": "consumes the mask (reads it, "
                       "its output has none)", "dropped": "drops the mask", "none":
                       "no mask in, no mask out"}[st.status]
        masks = n.get("masks") or []
        out["mask"] = f"n{masks[0]}" if masks and masks[0] is not None else None
    elif n["phase"] == "forward":
        masks = n.get("masks") or []
        out["mask"] = f"n{masks[0]}" if masks and masks[0] is not None else None
    if out.get("mask") is not None:
        mid = int(out["mask"][1:])
        out["mask_text"] = f"mask of {labels[mid]!r}: {mask_computes(g, mid)}"
    if nid in grads_by_node:
        out["grad_of"] = grads_by_node[nid]
    return out


def _call_by_id(calls_by_ref: dict, gid: int):
    return next(c for c in calls_by_ref.values() if c.id == gid)


def _graph_edge(g, e, calls_by_ref):
    """The graph edge ``(src node, out, dst node)`` a view edge draws."""
    def members(k):
        return set(calls_by_ref[k].nodes) if k.startswith("g") else {int(k[1:])}
    srcs, dsts = members(e.src), members(e.dst)
    best = None
    for d in sorted(dsts):
        for src, port, data in g.in_edges(d):
            if src in srcs:
                if port == e.port:
                    return src, data["out"], d
                best = best or (src, data["out"], d)
    return best


def _edge_details(g, e, calls_by_ref, labels) -> dict:
    found = _graph_edge(g, e, calls_by_ref)
    out = {"src": e.src, "dst": e.dst, "port": e.port, "kind": e.kind, "mask": e.mask}
    if found is not None:
        src, k, dst = found
        spec = g.spec(src, k)
        out.update(shape=fmt_shape(spec.shape), dtype=str(spec.dtype), value=f"{src}:{k}",
                   src_node=src, dst_node=dst, out=k)
    if e.mask is not None:
        mid = int(e.mask[1:])
        out["mask_text"] = f"mask of {labels[mid]!r}: {mask_computes(g, mid)}"
    return out


# ---- a batch: masks and values ---------------------------------------------------------
def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _marks(v: np.ndarray) -> list[str]:
    """Per sample, one character per timestep: ``0`` all zeros, ``=`` the same values as
    the step before, ``.`` otherwise."""
    flat = v.reshape(v.shape[0], v.shape[1], -1)
    zero = np.all(flat == 0, axis=2)
    rep = np.zeros_like(zero)
    rep[:, 1:] = np.all(flat[:, 1:] == flat[:, :-1], axis=2)
    return ["".join("0" if z else "=" if r else "." for z, r in zip(zr, rr))
            for zr, rr in zip(zero, rep)]


def batch_data(model, batch, max_samples: int = 16, max_steps: int = 64,
               max_features: int = 16) -> dict:
    """The concrete masks and sequence values of ``batch`` (the first ``max_samples``
    samples): ``{"masks": {"n<id>": [row strings of 0/1]}, "ids": {...}, "values":
    {"<node>:<out>": {...}}}``, computed by running the compiled graph as predict does."""
    from graphmask import passes
    from graphmask.runtime import run
    from graphmask.training.data import prepare_inputs

    g = model.graph
    full = prepare_inputs(model, batch)
    xs = [x[:max_samples] for x in full]
    mids = mask_values(g)
    roots = [n for n, _ in g.meta["outputs"]] + mids
    need = set(roots)
    for r in roots:
        need |= nx.ancestors(g.nx, r)
    keep = [n for n in g.order() if n in need and g.node(n)["phase"] == "forward"
            and g.node(n)["op"] not in ("variable", "target", "sample_weight")]
    fetches = [(n, k) for n in keep for k in range(len(g.node(n).get("specs") or []))]
    plan = passes.make_plan(g, fetches)
    vals = dict(zip(fetches, run(plan, dict(zip(g.meta["inputs"], xs)),
                                 model._variables())))
    out = {"samples": int(xs[0].shape[0]), "total": int(len(full[0])), "masks": {},
           "ids": {}, "values": {}}
    for m in mids:
        a = np.asarray(vals[(m, 0)], dtype=bool)
        a = a.reshape(a.shape[0], -1)[:, :max_steps]
        out["masks"][f"n{m}"] = ["".join("1" if b else "0" for b in row) for row in a]
        if g.node(m)["op"] == "mask_not_equal":
            src = g.in_ports(m)["x"]
            ids = np.asarray(vals[src])[:, :max_steps]
            out["ids"][f"n{m}"] = _jsonable([[int(v) if float(v).is_integer() else float(v)
                                              for v in row] for row in ids.reshape(len(ids), -1)])
    for (n, k), v in vals.items():
        v = np.asarray(v)
        carries = (g.node(n).get("masks") or [None] * (k + 1))[k] is not None
        if v.ndim < (2 if carries else 3) or v.dtype.kind not in "fiub" \
                or is_mask_node(g, n):
            continue  # a sequence: (batch, time, ...), or (batch, time) with a mask
        flat = v.reshape(v.shape[0], v.shape[1], -1)
        cut = flat[:, :max_steps, :max_features].astype(np.float32)
        out["values"][f"{n}:{k}"] = {"shape": list(cut.shape), "full": list(v.shape),
                                     "data": _b64(cut), "marks": _marks(v[:, :max_steps])}
    return out


# ---- the page --------------------------------------------------------------------------
def explorer_data(model, batch=None, max_samples: int = 16) -> tuple[dict, str]:
    """The explorer's data (JSON-able) and its SVG body, for :func:`to_html`."""
    if not hasattr(model, "graph"):
        raise ConfigError(f"to_html: expected a Model, got {type(model).__name__}")
    g = model.graph
    calls = group_calls(g)
    calls_by_ref = {c.ref: c for c in calls.values()}
    layers = _layer_objects(model)
    labels = mask_labels(g)
    grads = g.meta.get("grads") or {}
    grads_by_node: dict = {}
    for var, (node, _k) in sorted(grads.items()):
        grads_by_node.setdefault(node, []).append(var)
    views = {"compact": build_view(model)}
    if calls:
        views["expanded"] = build_view(model, expand=True)
    if grads:
        views["backward"] = backward_view(model)
    fold = {c.ref: [c.title, ", ".join(fmt_shape(g.spec(o, k).shape) for o, k in c.outputs),
                    *rule_lines(c)] for c in calls.values()}
    svg_parts, layouts, nodes, edges = [], {}, {}, {}
    for name, view in views.items():
        lay = Layout(view)
        recs: list = []
        svg_parts.append(_svg_layout(name, lay, fold, recs))
        layouts[name] = {"width": round(lay.width, 1), "height": round(lay.height, 1),
                         "edges": recs, "clusters": {c: {"parent": v.parent, "box": [
                             round(t, 1) for t in lay.cluster_box[c]]}
                             for c, v in view.clusters.items()}}
        for key in view.nodes:
            if key not in nodes:
                nodes[key] = _node_details(model, g, key, layers, calls_by_ref, grads_by_node,
                                           labels)
        for i, e in enumerate(view.edges):
            edges[f"{name}:{i}"] = _edge_details(g, e, calls_by_ref, labels)
    for c in calls.values():
        nodes.setdefault(c.ref, _node_details(model, g, c.ref, layers, calls_by_ref,
                                              grads_by_node, labels))
        nodes[c.ref]["parent"] = None if c.parent is None else calls[c.parent].ref
    chains = mask_chains(g)
    texts = [chain_text(g, p) for p in chains]
    unit_chains: dict = {}
    for i, p in enumerate(chains):
        for u, _m in p:
            unit_chains.setdefault(u, []).append(i)
    for key, info in nodes.items():
        u = _units(g, key, calls_by_ref)
        info["chains"] = sorted(set(unit_chains.get(u, [])))
    for info in edges.values():
        found = [unit_chains.get(_units(g, info[k], calls_by_ref), []) for k in ("src", "dst")]
        info["chains"] = sorted(set(found[0]) or set(found[1]))
    order = [g.node(n)["attrs"]["var"] for n in g.order() if g.node(n)["op"] == "variable"]
    weights = [{"name": v, "node": f"n{grads[v][0]}"} for v in dict.fromkeys(order)
               if v in grads]
    data = {"title": views["compact"].title, "model": getattr(model, "name", ""),
            "layouts": layouts, "nodes": nodes, "edges": edges, "chains": texts,
            "weights": weights, "legend": {"edges": LEGEND, "nodes": NODE_LEGEND},
            "styles": {"nodes": STYLE, "edges": {k: v[0] for k, v in EDGE_STYLE.items()},
                       "cluster": CLUSTER_STYLE},
            "batch": None if batch is None else batch_data(model, batch, max_samples)}
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" id="gm-svg" class="gm-svg" '
           f'font-family="DejaVu Sans Mono, monospace" font-size="{FONT}px">'
           f"{_defs()}<g id=\"gm-viewport\">{''.join(svg_parts)}</g></svg>")
    return data, svg


def _asset(name: str) -> str:
    return resources.files("graphmask.viz").joinpath(name).read_text(encoding="utf-8")


def _script_json(data) -> str:
    """JSON safe inside ``<script>``: no ``<`` at all (``\\u003c`` is the same string)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>{css}</style></head>
<body><div class="gm-explorer" id="gm-root">
<div class="gm-bar">
<input id="gm-search" type="search" placeholder="find a layer" autocomplete="off"
 aria-label="find a layer"><span id="gm-found"></span>
<button id="gm-fit" title="fit to window">fit</button>
<button id="gm-zoom-in" title="zoom in">+</button>
<button id="gm-zoom-out" title="zoom out">&minus;</button>
<button id="gm-expand-all">expand all</button>
<button id="gm-collapse-all">collapse all</button>
<label id="gm-backward-label"><input type="checkbox" id="gm-backward"> backward: gradient
 path of</label> <select id="gm-weight"></select>
</div>
<div class="gm-main"><div class="gm-canvas" id="gm-canvas">{svg}</div>
<aside class="gm-side"><div id="gm-details"><p class="gm-hint">Click a box or an edge.</p>
</div><div id="gm-batch"></div><div id="gm-legend"></div></aside></div>
</div>
<script type="application/json" id="gm-data">{data}</script>
<script>{js}</script>
</body></html>
"""


VIEWS = ("compact", "expanded", "backward")


def to_html(model, batch=None, max_samples: int = 16, view: str = "compact") -> str:
    """The interactive mask-flow explorer of ``model`` as one self-contained HTML page.

    Parameters
    ----------
    model : Model
    batch : optional inputs (as for ``predict``: an array, a list, or a dict by input
        name); the page then shows, for the selected edge, the concrete mask of the first
        ``max_samples`` samples as a samples x timesteps grid and the sequence values.
    max_samples : how many samples of ``batch`` the page holds.
    view : what the page shows first: ``"compact"`` (one box per custom-layer call, as
        the SVG picture), ``"expanded"`` (every call unfolded) or ``"backward"`` (the
        gradient path of the first weight; the model must be compiled).

    Returns
    -------
    str
        The page: inline script and style, no network access, works from ``file://``.
    """
    if not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 1:
        raise ConfigError(f"to_html: max_samples must be a positive int, got {max_samples!r}")
    if view not in VIEWS:
        raise ConfigError(f"to_html: view must be one of {VIEWS}, got {view!r}")
    data, svg = explorer_data(model, batch, max_samples)
    if view == "backward" and "backward" not in data["layouts"]:
        raise ConfigError(f"to_html: view='backward' needs a compiled model with trainable "
                          f"weights; model {data['model']!r} has no backward graph (call "
                          f"model.compile(...) first)")
    data["start"] = view if view in data["layouts"] else "compact"
    return PAGE.format(title=html.escape(data["title"]), css=_asset("explorer.css"),
                       svg=svg, data=_script_json(data), js=_asset("explorer.js"))


def write_html(model, path, batch=None, max_samples: int = 16, view: str = "compact") -> str:
    """Write :func:`to_html`'s page to ``path``; returns the path."""
    text = to_html(model, batch=batch, max_samples=max_samples, view=view)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


def iframe(page: str, height: int = 640) -> str:
    """``page`` in an ``<iframe srcdoc>``: a notebook cell shows it with its own script
    and style, apart from the notebook's."""
    return (f'<div class="graphmask-explorer"><iframe srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
            'sandbox="allow-scripts"></iframe></div>')


def show(model, batch=None, height: int = 640):
    """Show the explorer in a notebook (an ``IPython.display.HTML`` object).

    Outside IPython, returns an object whose ``_repr_html_`` gives the same markup.
    """
    markup = iframe(to_html(model, batch=batch), height)
    try:
        from IPython.display import HTML
    except ImportError:
        class HTML:  # noqa: N801 - mirrors IPython's name
            def __init__(self, data):
                self.data = data

            def _repr_html_(self):
                return self.data
    return HTML(markup)


__all__ = ["batch_data", "explorer_data", "iframe", "show", "to_html", "write_html"]
