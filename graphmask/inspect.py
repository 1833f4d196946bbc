"""Looking at masks: per-edge annotations as data, provenance in words, concrete masks.

Everything here is *read* from the compiled graph (``model.graph``): the mask pass's
annotations (node ``masks``, edge ``mask``, mask nodes carrying ``mask_of``) and the
loss pass's ``masked_mean`` nodes. Nothing re-derives which layer creates, passes or
consumes a mask, so what you see is exactly what runs.

Public functions
    mask_edges(model)            one :class:`MaskEdge` record per edge carrying a mask
    mask_status(model, layer)    how one layer treats masks (created / passed / ...)
    explain_mask(model, layer)   the provenance chain of the masks a layer sees, in words
    concrete_masks(model, x)     each mask node's boolean array for a batch ``x``
    debugprint(model, ...)       text dump of the compiled graph, mask edges marked
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from graphmask.graph import Graph

SOURCE_OPS = ("input", "target", "sample_weight", "variable", "constant")
# per-position scores: their reduction (masked_mean / weighted_average) uses the mask
SCORE_OPS = ("loss", "loss_score", "metric_score")
MERGE_MASK_OPS = {"mask_or": "OR", "mask_and": "AND"}
LOSS_SHORT = {"mean_squared_error": "mse", "mean_absolute_error": "mae"}
MAX_CHAINS = 64


# ---- small readers of the annotated graph ------------------------------------------
def fmt_shape(shape) -> str:
    """``(None, 4, 3)`` as Keras prints shapes (``(3,)`` for one dimension)."""
    dims = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _graph(model_or_graph) -> Graph:
    return model_or_graph if isinstance(model_or_graph, Graph) else model_or_graph.graph


def is_mask_node(g: Graph, nid: int) -> bool:
    return "mask_of" in g.node(nid)


def edge_mask(g: Graph, src: int, data: dict, dst: int | None = None) -> int | None:
    """The mask the value on an edge carries.

    Its ``mask`` annotation; for a mask edge, its source mask node; for a forward data
    edge without an annotation (edges the loss pass added), the mask annotated on the
    source's output (node ``masks``), which is the same value.
    """
    if data.get("mask") is not None:
        return data["mask"]
    if data["kind"] == "mask" and is_mask_node(g, src):
        return src
    if data["kind"] == "data" and dst is not None and g.node(dst)["phase"] == "forward":
        masks = g.node(src).get("masks") or []
        return masks[data["out"]] if data["out"] < len(masks) else None
    return None


def layer_nodes(g: Graph, name: str) -> list[int]:
    """Forward nodes applying layer ``name`` (not its weights, not the masks it made)."""
    return [n for n in g.order() if g.node(n)["layer"] == name
            and g.node(n)["phase"] == "forward" and g.node(n)["op"] != "variable"
            and not is_mask_node(g, n)]


def mask_computes(g: Graph, mid: int) -> str:
    """What mask node ``mid`` computes, e.g. ``ids != 0`` or ``OR of 'a', 'b'``."""
    n = g.node(mid)
    a = n["attrs"]
    if n["op"] == "mask_not_equal":
        return f"ids != {a['value']}"
    if n["op"] == "mask_any_not_equal":
        return f"any(x != {a['value']})"
    if n["op"] in MERGE_MASK_OPS:
        parents = [g.node(src)["layer"] for src, _, _ in g.in_edges(mid)]
        return f"{MERGE_MASK_OPS[n['op']]} of " + ", ".join(repr(p) for p in parents)
    return n["op"]


def mask_label(g: Graph, mid: int) -> str:
    """The name of a mask: its creating layer, with ``#id`` if that layer made several."""
    layer = g.node(mid)["layer"]
    same = [m for m in g.order() if is_mask_node(g, m) and g.node(m)["layer"] == layer]
    return layer if len(same) == 1 else f"{layer}#{mid}"


def mask_nodes(g: Graph) -> list[int]:
    """Ids of all mask nodes, in graph order."""
    return [n for n in g.order() if is_mask_node(g, n)]


@dataclass(frozen=True)
class MaskStatus:
    """How one node treats masks, read from the annotations.

    ``received``: masks on its incoming data edges; ``used``: the mask on its ``mask``
    port (or None); ``out``: the mask its first output carries (or None); ``status``:
    ``created``, ``merged``, ``passed``, ``consumed``, ``dropped`` or ``none``.
    """

    node: int
    received: tuple
    used: int | None
    out: int | None
    status: str


def node_status(g: Graph, nid: int) -> MaskStatus:
    received, used = [], None
    for src, _port, d in g.in_edges(nid):
        m = edge_mask(g, src, d)
        if d["kind"] == "mask":
            used = m
        elif m is not None and m not in received:
            received.append(m)
    masks = g.node(nid).get("masks") or [None]
    out = masks[0]
    if out is not None and g.node(out).get("mask_of") == nid:
        status = "merged" if g.node(out)["op"] in MERGE_MASK_OPS else "created"
    elif out is not None:
        status = "passed"
    elif used is not None:
        status = "consumed"
    elif received:
        status = "dropped"
    else:
        status = "none"
    return MaskStatus(nid, tuple(received), used, out, status)


def mask_status(model, layer) -> list[MaskStatus]:
    """:class:`MaskStatus` of each call of ``layer`` (a name or a layer object)."""
    g = _graph(model)
    name = layer if isinstance(layer, str) else layer.name
    return [node_status(g, n) for n in layer_nodes(g, name)]


# ---- per-edge records ------------------------------------------------------------------
@dataclass(frozen=True)
class MaskEdge:
    """One edge of the compiled graph and the mask its value carries.

    ``kind`` is ``"mask"`` for a mask edge (the boolean mask itself, into a ``mask``
    port) and ``"data"`` (etc.) for a value that carries a mask annotation.
    """

    src: int
    src_layer: str
    src_op: str
    src_out: int
    dst: int
    dst_layer: str
    dst_op: str
    dst_port: str
    kind: str
    phase: str
    mask: int | None
    mask_layer: str | None
    mask_computes: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def mask_edges(model, include_unmasked: bool = False, backward: bool = True) -> list[MaskEdge]:
    """Per-edge mask annotations of the compiled graph, sorted by (destination, port).

    Parameters
    ----------
    model : Model or Graph
    include_unmasked : also list edges that carry no mask (``mask=None``).
    backward : include edges into backward (VJP) nodes.
    """
    g = _graph(model)
    rows = []
    for dst in g.order():
        dn = g.node(dst)
        if not backward and dn["phase"] == "backward":
            continue
        for src, port, d in g.in_edges(dst):
            m = edge_mask(g, src, d, dst)
            if m is None and not include_unmasked:
                continue
            sn = g.node(src)
            rows.append(MaskEdge(
                src, sn["layer"], sn["op"], d["out"], dst, dn["layer"], dn["op"], port,
                d["kind"], dn["phase"], m, None if m is None else g.node(m)["layer"],
                None if m is None else mask_computes(g, m)))
    return rows


# ---- provenance in words ---------------------------------------------------------------
def _carries(g: Graph, nid: int, mid: int) -> bool:
    return mid in (g.node(nid).get("masks") or [])


def _nearest_carriers(g: Graph, nid: int, mid: int) -> list[int]:
    """Closest upstream nodes (along data edges) whose output carries mask ``mid``."""
    found, seen, stack = [], set(), [nid]
    while stack:
        cur = stack.pop()
        for src, _, d in g.in_edges(cur):
            if src in seen or d["kind"] != "data" or g.node(src)["op"] == "variable":
                continue
            seen.add(src)
            if _carries(g, src, mid):
                found.append(src)
            elif not is_mask_node(g, src):
                stack.append(src)
    return sorted(found)


def _loss_text(g: Graph, nid: int) -> str:
    n = g.node(nid)
    if n["op"] == "masked_mean":
        score = g.in_ports(nid).get("score", (None,))[0]
        fn = g.node(score)["attrs"].get("fn", "") if score is not None else ""
        name = LOSS_SHORT.get(fn, fn)
        text = f"used by the masked {name} loss"
        if len(g.meta.get("losses", [])) > 1:
            text += f" of {n['layer'].split(':')[0]!r}"
        return text
    metric = n["layer"].split(":")[-1]
    return f"used by the masked {metric!r} metric of {n['layer'].split(':')[0]!r}"


def _event_text(g: Graph, nid: int, mid: int) -> str:
    """One step of a chain: what node ``nid`` does with mask ``mid``."""
    st = node_status(g, nid)
    name = g.label(nid)
    if st.out is not None and g.node(st.out).get("mask_of") == nid:
        kind = g.node(st.out)["op"]
        if kind in MERGE_MASK_OPS:
            others = [g.node(m)["layer"] for m in st.received if m != mid]
            with_ = " with the mask of " + ", ".join(repr(o) for o in others) if others else ""
            return f"merged by {name!r} ({MERGE_MASK_OPS[kind]}{with_})"
        return f"created by {name!r} as {mask_computes(g, st.out)}"
    if g.node(nid)["op"] in ("masked_mean", "weighted_average"):
        return _loss_text(g, nid)
    if st.out == mid:
        return f"used and passed by {name!r}" if st.used == mid else f"passed by {name!r}"
    if st.used == mid:
        return f"consumed by {name!r}"
    return f"dropped by {name!r} (one of its inputs has no mask)"


def _events(g: Graph):
    """The mask-flow forest: ``{node: [(parent node, mask), ...]}`` over forward nodes."""
    parents: dict[int, list] = {}
    for nid in g.order():
        n = g.node(nid)
        if n["phase"] != "forward" or n["op"] in SOURCE_OPS + SCORE_OPS \
                or is_mask_node(g, nid):
            continue
        st = node_status(g, nid)
        masks = list(st.received)
        if st.used is not None and st.used not in masks and \
                g.node(st.used).get("mask_of") != nid:
            masks.append(st.used)
        created = st.out is not None and g.node(st.out).get("mask_of") == nid
        if not masks and not created:
            continue
        parents[nid] = [(p, m) for m in masks for p in _nearest_carriers(g, nid, m)]
    return parents


def mask_chains(model) -> list[list[tuple[int, int]]]:
    """Every path of the mask-flow forest, from a creating node to a last user.

    Each path is a list of ``(node, mask)`` steps, ``mask`` being the mask that node
    received (or created). At most 64 paths are returned.
    """
    g = _graph(model)
    parents = _events(g)
    children: dict[int, list] = {n: [] for n in parents}
    for n, ps in parents.items():
        for p, m in ps:
            if p in children:
                children[p].append((n, m))
    roots = [n for n, ps in parents.items() if not ps]
    paths: list = []

    def walk(path):
        if len(paths) >= MAX_CHAINS:
            return
        kids = children[path[-1][0]]
        if not kids:
            paths.append(path)
        for k, m in kids:
            walk(path + [(k, m)])

    for r in roots:
        walk([(r, node_status(g, r).out)])
    return paths


def chain_text(model, path) -> str:
    """One path of :func:`mask_chains` in words, steps joined by `` -> ``."""
    g = _graph(model)
    return " -> ".join(_event_text(g, n, m) for n, m in path)


def explain_mask(model, layer) -> str:
    """The provenance of the masks ``layer`` creates, receives or passes, in words.

    One line per path of the mask flow through the layer, for example
    ``created by 'embedding' as ids != 0 -> passed by 'dense' -> used by the masked mse
    loss``. A layer no mask reaches gets a sentence saying so.
    """
    g = _graph(model)
    name = layer if isinstance(layer, str) else layer.name
    nodes = set(layer_nodes(g, name))
    if not nodes:
        known = sorted({g.node(n)["layer"] for n in g.order() if g.node(n)["layer"]})
        from graphmask.errors import ConfigError
        raise ConfigError(f"explain_mask: no layer named {name!r} in the graph; layers: {known}")
    lines = []
    for path in mask_chains(g):
        if nodes & {n for n, _ in path}:
            line = chain_text(g, path)
            if line not in lines:
                lines.append(line)
    if not lines:
        return f"no mask reaches layer {name!r} and it creates none"
    return "\n".join(lines)


# ---- concrete masks --------------------------------------------------------------------
def compute_masks(model, x, extra: tuple = ()) -> dict[int, np.ndarray]:
    """``{mask node id: bool array}`` for the batch ``x`` (plus any ``extra`` (node, out))."""
    from graphmask import passes
    from graphmask.data import prepare_inputs
    from graphmask.runtime import run
    g = _graph(model)
    mids = mask_nodes(g)
    if not mids:
        return {}
    fetches = [(m, 0) for m in mids] + list(extra)
    plan = passes.make_plan(g, fetches)
    xs = prepare_inputs(model, x)
    feeds = dict(zip(g.meta["inputs"], xs))
    vals = run(plan, feeds, model._variables())
    return dict(zip(mids + list(extra), vals))


def concrete_masks(model, x) -> dict[str, np.ndarray]:
    """Each mask of the model evaluated on the batch ``x``: ``{mask label: bool (B, T)}``.

    The label is the name of the layer that created the mask (see :func:`mask_label`).
    """
    g = _graph(model)
    return {mask_label(g, m): np.asarray(v, dtype=bool)
            for m, v in compute_masks(model, x).items()}


# ---- debugprint ------------------------------------------------------------------------
def _node_line(g: Graph, nid: int) -> str:
    n = g.node(nid)
    specs = n.get("specs") or []
    shapes = " ".join(f"{fmt_shape(s.shape)} {s.dtype}" for s in specs)
    text = f"[{nid}] {n['op']}"
    if n["layer"]:
        text += f" {n['layer']!r}"
    if n["op"] == "variable":
        text += f" var={n['attrs']['var']!r}"
    elif n["op"] == "vjp":
        text += f" of [{n['attrs']['node']}] wrt={n['attrs']['wrt']}"
    text += f"  {shapes}"
    if is_mask_node(g, nid):
        text += f"  MASK ({mask_computes(g, nid)}) made for [{n['mask_of']}]"
    masks = [m for m in (n.get("masks") or []) if m is not None]
    if masks:
        text += "  carries mask " + ", ".join(f"[{m}]" for m in masks)
    return text


def debugprint(model, backward: bool = True, file=None) -> str:
    """A ``debugprint``-style tree of the compiled graph, read from the outputs up.

    Each line is ``[id] op 'layer' shape dtype``; ids are the graph's node ids (stable:
    the same model always gets the same ids). Children are the node's inputs, shown as
    ``port:``; a mask edge is marked ``~mask~>`` and a data edge whose value carries a
    mask ``{mask [id]}``. A node already printed is shown again as ``[id] ...``.
    Roots: the model outputs, the losses and metrics, then (``backward=True``) the
    gradient of every trainable weight. Printed to ``file`` when given; returned.
    """
    g = _graph(model)
    roots = [("output", n) for n, _ in g.meta["outputs"]]
    roots += [("loss", n) for n in g.meta.get("losses", [])]
    roots += [("metric", r) for _, _, r in g.meta.get("metrics", [])]
    if backward:
        roots += [(f"gradient of {v!r}", n) for v, (n, _) in sorted(g.meta.get("grads",
                                                                           {}).items())]
    lines, done = [], set()

    def visit(nid, prefix, head):
        if nid in done:
            lines.append(f"{head}[{nid}] ...")
            return
        done.add(nid)
        lines.append(head + _node_line(g, nid))
        edges = g.in_edges(nid)
        for i, (src, port, d) in enumerate(edges):
            last = i == len(edges) - 1
            branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
            m = edge_mask(g, src, d, nid)
            if d["kind"] == "mask":
                tag = f"{port} ~mask~> "
            elif m is not None:
                tag = f"{port} {{mask [{m}]}}: "
            elif d["kind"] in ("residual", "grad"):
                tag = f"{port} ({d['kind']}): "
            else:
                tag = f"{port}: "
            visit(src, prefix + cont, prefix + branch + tag)

    for what, nid in roots:
        lines.append(f"# {what}")
        visit(nid, "", "")
    text = "\n".join(lines) + "\n"
    if file is not None:
        file.write(text)
    return text
