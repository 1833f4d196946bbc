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
    group_calls(model)           one :class:`GroupCall` per custom-layer call (one box each)

Custom layers. A custom layer's ``call`` records many primitive nodes; they carry the ids
of the enclosing custom-layer calls (node ``groups``, outermost first) and
``graph.meta["groups"]`` says how each call treated masks. Every report here shows a
top-level call as one unit named after its layer: the summary row, the steps of the mask
chains (``read by 'attn' (call takes mask)``), the creator of a mask it made.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from graphmask.ir.graph import Graph
from graphmask.ops.fused import chain_label

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

    Its ``mask`` annotation; for a mask edge, its source mask node (or the mask a custom
    layer computed and attaches); for a forward data edge without an annotation (edges
    the loss pass added), the mask annotated on the source's output (node ``masks``),
    which is the same value.
    """
    if data.get("mask") is not None:
        return data["mask"]
    if data["kind"] == "mask" and (is_mask_node(g, src) or group_path(g, src)):
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
    path = group_path(g, mid)
    if path and "compute_mask" in _call_meta(g, path[-1]).get("how", ""):
        return "compute_mask()"  # computed by the compute_mask() of a custom layer
    return n["op"]


def mask_label(g: Graph, mid: int) -> str:
    """The name of a mask: its creating layer, with ``#id`` if that layer made several."""
    layer = creator_name(g, mid)
    same = [m for m in mask_values(g) if creator_name(g, m) == layer]
    return layer if len(same) <= 1 else f"{layer}#{mid}"


def mask_nodes(g: Graph) -> list[int]:
    """Ids of all mask nodes, in graph order."""
    return [n for n in g.order() if is_mask_node(g, n)]


def mask_values(g: Graph) -> list[int]:
    """Every mask of the graph, in graph order: the mask nodes, and the masks that
    custom layers compute in ``call`` or ``compute_mask`` and attach to their outputs."""
    made = {m for c in group_calls(g).values() for m in c.made}
    return [n for n in g.order() if is_mask_node(g, n) or n in made]


# ---- custom-layer calls (groups) ----------------------------------------------------
def group_path(g: Graph, nid: int) -> tuple:
    """Ids of the custom-layer calls forward node ``nid`` was recorded in, outermost first.

    A mask node the mask pass added belongs to the calls of the node it was made for;
    weights and backward nodes belong to none.
    """
    n = g.node(nid)
    if n["phase"] != "forward" or n["op"] == "variable":
        return ()
    if n.get("groups"):
        return tuple(int(i) for i in n["groups"])
    if "mask_of" in n:
        return group_path(g, n["mask_of"])
    return ()


@dataclass(frozen=True)
class GroupCall:
    """One traced call of a custom layer (or of a model used as a layer).

    ``id`` is its key in ``graph.meta["groups"]``, whose ``layer``, ``cls``, ``how`` (how
    the call treated masks, in words) and ``takes_mask`` it repeats; the rest is read
    from the graph:
    ``nodes`` its forward nodes (nested calls included, graph order), ``parent`` the
    enclosing call (or None), ``outputs`` its ``(node, output)`` values, ``received`` the
    masks its inputs carried or it was handed, ``out`` the mask each output carries (or
    None) and ``made`` the masks among ``out`` computed inside the call.
    """

    id: int
    layer: str
    cls: str
    how: str
    takes_mask: bool
    parent: int | None
    nodes: tuple
    outputs: tuple
    received: tuple
    out: tuple
    made: tuple
    index: int = 0

    @property
    def ref(self) -> str:
        """``g<index>``: how debugprint, the pictures and :class:`MaskEdge` name the call;
        ``index`` counts the calls of this graph in call order (1, 2, ...), so the same
        model always gets the same names."""
        return f"g{self.index}"

    @property
    def key(self) -> tuple:
        """How mask chains and views refer to the call: ``("group", id)``."""
        return ("group", self.id)

    @property
    def title(self) -> str:
        """``name (Class)``, as the summary and the pictures label the call."""
        return f"{self.layer} ({self.cls})"

    @property
    def rule(self) -> str:
        """The mask rule shown for the call: its ``how``, or ``none`` when no mask is
        received or produced."""
        if not self.received and not any(m is not None for m in self.out):
            return "none"
        return self.how or "none"


def _group_masks(g: Graph, nodes: list, info: dict) -> tuple[list, list, list, list]:
    inside = set(nodes)
    received = [m for m in info.get("mask_in") or [] if m is not None and m in g.nx]
    for d in nodes:
        for src, _port, data in g.in_edges(d):
            if src in inside or g.node(src)["op"] == "variable":
                continue
            m = src if data["kind"] == "mask" else edge_mask(g, src, data, d)
            if m is not None and m not in received:
                received.append(m)
    outputs = [(o, k) for o, k in info.get("outputs") or [] if o is not None and o in g.nx]
    out = [(g.node(o).get("masks") or [None] * (k + 1))[k] for o, k in outputs]
    made = [m for m in dict.fromkeys(out) if m in inside and m not in received]
    return received, outputs, out, made


def group_calls(model) -> dict[int, GroupCall]:
    """Every custom-layer call of the compiled graph: ``{group id: GroupCall}``, in call
    order (an enclosing call before the calls nested in it)."""
    g = _graph(model)
    meta = {int(k): v for k, v in (g.meta.get("groups") or {}).items()}
    members: dict[int, list] = {}
    parent: dict[int, int | None] = {}
    for nid in g.order():
        path = group_path(g, nid)
        for i, gid in enumerate(path):
            members.setdefault(gid, []).append(nid)
            parent.setdefault(gid, path[i - 1] if i else None)
    calls = {}
    for index, gid in enumerate(sorted(members), 1):
        nodes = members[gid]
        info = meta.get(gid) or {"layer": g.node(nodes[0])["layer"], "class": "Layer",
                                 "outputs": [[nodes[-1], 0]]}
        received, outputs, out, made = _group_masks(g, nodes, info)
        calls[gid] = GroupCall(gid, info["layer"], info.get("class", "Layer"),
                               info.get("how", ""), bool(info.get("takes_mask")),
                               parent[gid], tuple(nodes), tuple(outputs), tuple(received),
                               tuple(out), tuple(made), index)
    return calls


def unit_of(g: Graph, nid: int):
    """What the views show node ``nid`` as: ``("group", id)`` of its outermost
    custom-layer call, or the node id itself."""
    path = group_path(g, nid)
    return ("group", path[0]) if path else nid


def _creator(g: Graph, mid: int):
    """The unit that made mask ``mid``: the node a mask node was made for, or the call
    (or node) that computed it."""
    n = g.node(mid)
    return unit_of(g, n["mask_of"]) if "mask_of" in n else unit_of(g, mid)


def _call_meta(g: Graph, gid: int) -> dict:
    meta = g.meta.get("groups") or {}
    return meta.get(gid) or meta.get(str(gid)) or {}


def creator_name(g: Graph, mid: int) -> str:
    """The name of the layer that made mask ``mid`` (a custom layer's call counts as its
    layer, whatever it runs inside)."""
    unit = _creator(g, mid)
    if isinstance(unit, tuple):
        return _call_meta(g, unit[1]).get("layer") or g.node(mid)["layer"]
    return g.node(mid)["layer"]


def _made_by(calls: dict) -> dict[int, GroupCall]:
    """``{mask: the outermost call that computed it}`` for masks made by calls."""
    made: dict[int, GroupCall] = {}
    for c in calls.values():
        for m in c.made:
            made.setdefault(m, c)
    return made


# ---- how a node (or a call) treats masks -----------------------------------------------
@dataclass(frozen=True)
class MaskStatus:
    """How one node (or one custom-layer call) treats masks, read from the annotations.

    ``received``: masks on its incoming data edges; ``used``: the mask on its ``mask``
    port (or None; for a call, the mask its ``call`` reads); ``out``: the mask its first
    output carries (or None); ``status``: ``created``, ``merged``, ``passed``,
    ``consumed``, ``dropped`` or ``none``. For a custom-layer call, ``node`` is its first
    output node, ``group`` its :attr:`GroupCall.ref` and ``how`` its mask rule in words.
    """

    node: int
    received: tuple
    used: int | None
    out: int | None
    status: str
    group: str | None = None
    how: str = ""


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


def group_status(call: GroupCall) -> MaskStatus:
    """:class:`MaskStatus` of one custom-layer call (see :func:`group_calls`)."""
    used = call.received[0] if call.takes_mask and call.received else None
    out = call.out[0] if call.out else None
    if call.made:
        status = "created"
    elif out is not None:
        status = "passed"
    elif used is not None:
        status = "consumed"
    elif call.received:
        status = "dropped"
    else:
        status = "none"
    first = call.outputs[0][0] if call.outputs else call.nodes[-1]
    return MaskStatus(first, call.received, used, out, status, call.ref, call.rule)


def mask_status(model, layer) -> list[MaskStatus]:
    """:class:`MaskStatus` of each call of ``layer`` (a name or a layer object).

    A custom layer (or a model used as a layer) gets one status per call, its primitive
    nodes are not listed one by one.
    """
    g = _graph(model)
    name = layer if isinstance(layer, str) else layer.name
    calls = [c for c in group_calls(g).values() if c.layer == name]
    if calls:
        return [group_status(c) for c in calls]
    return [node_status(g, n) for n in layer_nodes(g, name)]


# ---- per-edge records ------------------------------------------------------------------
@dataclass(frozen=True)
class MaskEdge:
    """One edge of the compiled graph and the mask its value carries.

    ``kind`` is ``"mask"`` for a mask edge (the boolean mask itself, into a ``mask``
    port) and ``"data"`` (etc.) for a value that carries a mask annotation.
    ``src_group`` / ``dst_group``: the outermost custom-layer call the end belongs to, as
    :attr:`GroupCall.ref` (``"g1"``, ...), or None.
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
    src_group: str | None = None
    dst_group: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def mask_edges(model, include_unmasked: bool = False, backward: bool = True,
               expand: bool = True) -> list[MaskEdge]:
    """Per-edge mask annotations of the compiled graph, sorted by (destination, port).

    Parameters
    ----------
    model : Model or Graph
    include_unmasked : also list edges that carry no mask (``mask=None``).
    backward : include edges into backward (VJP) nodes.
    expand : with False, leave out the edges inside one custom-layer call (both ends in
        the same outermost call): the edges of the collapsed pictures.
    """
    g = _graph(model)
    calls = group_calls(g)
    rows = []
    for dst in g.order():
        dn = g.node(dst)
        if not backward and dn["phase"] == "backward":
            continue
        dpath = group_path(g, dst)
        for src, port, d in g.in_edges(dst):
            m = edge_mask(g, src, d, dst)
            if m is None and not include_unmasked:
                continue
            spath = group_path(g, src)
            if not expand and spath and dpath and spath[0] == dpath[0]:
                continue
            sn = g.node(src)
            rows.append(MaskEdge(
                src, sn["layer"], sn["op"], d["out"], dst, dn["layer"], dn["op"], port,
                d["kind"], dn["phase"], m, None if m is None else creator_name(g, m),
                None if m is None else mask_computes(g, m),
                calls[spath[0]].ref if spath else None, calls[dpath[0]].ref if dpath else None))
    return rows


# ---- provenance in words ---------------------------------------------------------------
def _carries(g: Graph, nid: int, mid: int) -> bool:
    return mid in (g.node(nid).get("masks") or [])


def _nearest_carriers(g: Graph, nodes, mid: int) -> list[int]:
    """Closest upstream nodes (along data edges) whose output carries mask ``mid``,
    looking up from ``nodes`` (one node, or the nodes of a call, which never count)."""
    start = [nodes] if isinstance(nodes, int) else list(nodes)
    found, seen, stack = [], set(start), list(start)
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


def _event_text(g: Graph, nid: int, mid: int, calls: dict) -> str:
    """One step of a chain: what node ``nid`` does with mask ``mid``."""
    st = node_status(g, nid)
    name = g.label(nid)
    if st.out is not None and g.node(st.out).get("mask_of") == nid:
        kind = g.node(st.out)["op"]
        if kind in MERGE_MASK_OPS:
            others = [creator_name(g, m) for m in st.received if m != mid]
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


def _made_text(g: Graph, call: GroupCall, mid: int) -> str:
    """How ``call`` computed mask ``mid``: by its compute_mask, by the compute_mask of a
    custom layer nested in it, or by a layer inside (``as ids != 0``)."""
    inner = group_path(g, mid)[-1]
    if inner == call.id and "compute_mask" in call.how:
        return "(compute_mask)"
    meta = _call_meta(g, inner)
    if inner != call.id and "compute_mask" in meta.get("how", ""):
        return f"(compute_mask of {meta.get('layer')!r})"
    if is_mask_node(g, mid):
        return f"as {mask_computes(g, mid)}"
    return "(by the layers inside)"


def _group_event_text(g: Graph, call: GroupCall, mid: int) -> str:
    """One step of a chain: what custom-layer call ``call`` does with mask ``mid``."""
    name = call.layer
    if mid not in call.received:  # a mask the call made: where its chain starts
        return f"created by {name!r} {_made_text(g, call, mid)}"
    read = f"read by {name!r} (call takes mask)"
    if mid in call.out:
        return f"read and passed by {name!r} (call takes mask)" if call.takes_mask \
            else f"passed by {name!r}"
    if call.made:
        made = _made_text(g, call, call.made[0])
        return f"{read}, new mask computed {made}" if call.takes_mask \
            else f"computed by {name!r} {made}"
    if call.takes_mask:
        return read
    if any(m is not None for m in call.out):
        return f"dropped by {name!r} (its outputs carry another mask)"
    return f"dropped by {name!r} (not read by call(), no output mask)"


def _step_text(g: Graph, unit, mid: int, calls: dict) -> str:
    if isinstance(unit, tuple):
        return _group_event_text(g, calls[unit[1]], mid)
    return _event_text(g, unit, mid, calls)


def _parents(g: Graph, unit, nodes, masks, calls: dict) -> list:
    """``[(parent unit, mask), ...]``: the nearest upstream units carrying each mask."""
    res = []
    for m in masks:
        found = []
        for p in _nearest_carriers(g, nodes, m):
            pu = unit_of(g, p)
            if pu != unit and (pu, m) not in found:
                found.append((pu, m))
        if not found and isinstance(unit, tuple) and _creator(g, m) != unit:
            found.append((_creator(g, m), m))  # handed over directly (an explicit mask=)
        res += found
    return res


def _events(g: Graph, calls: dict):
    """The mask-flow forest: ``{unit: [(parent unit, mask), ...]}`` over forward nodes;
    a unit is a node id, or ``("group", id)`` for a whole custom-layer call."""
    parents: dict = {}
    seen = set()
    for nid in g.order():
        n = g.node(nid)
        if n["phase"] != "forward" or n["op"] in SOURCE_OPS + SCORE_OPS \
                or is_mask_node(g, nid):
            continue
        unit = unit_of(g, nid)
        if isinstance(unit, tuple):
            if unit in seen:
                continue
            seen.add(unit)
            call = calls[unit[1]]
            if call.received or call.made:
                parents[unit] = _parents(g, unit, call.nodes, call.received, calls)
            continue
        st = node_status(g, nid)
        masks = list(st.received)
        if st.used is not None and st.used not in masks and \
                g.node(st.used).get("mask_of") != nid:
            masks.append(st.used)
        created = st.out is not None and g.node(st.out).get("mask_of") == nid
        if not masks and not created:
            continue
        parents[nid] = _parents(g, nid, nid, masks, calls)
    return parents


def _root_mask(g: Graph, unit, calls: dict):
    if isinstance(unit, tuple):
        c = calls[unit[1]]
        return (c.made or c.received or c.out or (None,))[0]
    return node_status(g, unit).out


def mask_chains(model) -> list[list[tuple]]:
    """Every path of the mask-flow forest, from a creating node to a last user.

    Each path is a list of ``(unit, mask)`` steps, ``mask`` being the mask that unit
    received (or created). A unit is a node id, or ``("group", id)`` for a custom-layer
    call shown as one step (see :func:`group_calls`). At most 64 paths are returned.
    """
    g = _graph(model)
    calls = group_calls(g)
    parents = _events(g, calls)
    children: dict = {n: [] for n in parents}
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
        walk([(r, _root_mask(g, r, calls))])
    return paths


def chain_text(model, path) -> str:
    """One path of :func:`mask_chains` in words, steps joined by `` -> ``."""
    g = _graph(model)
    calls = group_calls(g)
    return " -> ".join(_step_text(g, n, m, calls) for n, m in path)


def _units_named(g: Graph, name: str, calls: dict) -> set:
    units = {unit_of(g, n) for n in layer_nodes(g, name)}
    for c in calls.values():
        if c.layer == name:
            top = c
            while top.parent is not None:
                top = calls[top.parent]
            units.add(top.key)
    return units


def explain_mask(model, layer) -> str:
    """The provenance of the masks ``layer`` creates, receives or passes, in words.

    One line per path of the mask flow through the layer, for example
    ``created by 'embedding' as ids != 0 -> passed by 'dense' -> used by the masked mse
    loss``. A custom layer is one step, in the words of its mask rule (``read by 'attn'
    (call takes mask)``, ``computed by 'drop' (compute_mask)``, ``passed by 'block'``);
    a layer nested in a custom layer is explained through that layer's call. A layer no
    mask reaches gets a sentence saying so.
    """
    g = _graph(model)
    calls = group_calls(g)
    name = layer if isinstance(layer, str) else layer.name
    units = _units_named(g, name, calls)
    if not units:
        known = sorted({g.node(n)["layer"] for n in g.order() if g.node(n)["layer"]}
                       | {c.layer for c in calls.values()})
        from graphmask.errors import ConfigError
        raise ConfigError(f"explain_mask: no layer named {name!r} in the graph; layers: {known}")
    lines = []
    for path in mask_chains(g):
        if units & {n for n, _ in path}:
            line = " -> ".join(_step_text(g, n, m, calls) for n, m in path)
            if line not in lines:
                lines.append(line)
    if not lines:
        return f"no mask reaches layer {name!r} and it creates none"
    return "\n".join(lines)


# ---- concrete masks --------------------------------------------------------------------
def compute_masks(model, x, extra: tuple = ()) -> dict[int, np.ndarray]:
    """``{mask id: bool array}`` for the batch ``x``, for every mask of
    :func:`mask_values` (plus any ``extra`` (node, out))."""
    from graphmask import passes
    from graphmask.runtime import run
    from graphmask.training.data import prepare_inputs
    g = _graph(model)
    mids = mask_values(g)
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

    The label is the name of the layer that created the mask (see :func:`mask_label`);
    a mask a custom layer computed (``compute_mask``) is labelled with that layer.
    """
    g = _graph(model)
    return {mask_label(g, m): np.asarray(v, dtype=bool)
            for m, v in compute_masks(model, x).items()}


# ---- debugprint ------------------------------------------------------------------------
def _node_line(g: Graph, nid: int, calls: dict, made_by: dict) -> str:
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
    elif n["op"] == "fused_elementwise":
        text += f" fused: {chain_label(n['attrs'])} (members {n.get('fused')})"
    text += f"  {shapes}"
    if is_mask_node(g, nid):
        text += f"  MASK ({mask_computes(g, nid)}) made for [{n['mask_of']}]"
        path = group_path(g, nid)
        if path:
            text += f" in [{calls[path[0]].ref}]"
    elif nid in made_by:
        text += f"  MASK made by [{made_by[nid].ref}] {made_by[nid].layer!r}"
    masks = [m for m in (n.get("masks") or []) if m is not None]
    if masks:
        text += "  carries mask " + ", ".join(f"[{m}]" for m in masks)
    return text


def _group_line(g: Graph, call: GroupCall, shapes: bool) -> str:
    text = f"[{call.ref}] group {call.layer!r} ({call.cls})"
    if shapes:
        text += "  " + " ".join(f"{fmt_shape(g.spec(o, k).shape)} {g.spec(o, k).dtype}"
                                for o, k in call.outputs)
        masks = [m for m in dict.fromkeys(call.out) if m is not None]
        if masks:
            text += "  carries mask " + ", ".join(f"[{m}]" for m in masks)
    return text + f"  mask: {call.rule}"


def _tag(port: str, d: dict, m) -> str:
    if d["kind"] == "mask":
        return f"{port} ~mask~> "
    if m is not None:
        return f"{port} {{mask [{m}]}}: "
    if d["kind"] in ("residual", "grad"):
        return f"{port} ({d['kind']}): "
    return f"{port}: "


class _Printer:
    """The debugprint tree; ``expand`` shows each custom-layer call as a header line
    with its nodes beneath, else as one line whose children are the call's inputs."""

    def __init__(self, g: Graph, expand: bool):
        self.g, self.expand = g, expand
        self.calls = group_calls(g)
        self.made_by = _made_by(self.calls)
        self.lines: list[str] = []
        self.done: set = set()
        self.headed: set = set()

    # -- collapsed: units are nodes, whole calls and the masks calls made ------------
    def unit(self, nid: int):
        path = group_path(self.g, nid)
        if not path or nid in self.calls[path[0]].made:
            return nid
        return ("group", path[0])

    def group_inputs(self, call: GroupCall) -> list:
        """``(tag, source node)`` for each value entering the call from outside."""
        seen, res = set(), []
        for dst in call.nodes:
            if dst in call.made:  # a mask the call made has a line of its own
                continue
            for src, _port, d in self.g.in_edges(dst):
                if self.unit(src) == call.key or src in call.made or (src, d["out"]) in seen:
                    continue
                seen.add((src, d["out"]))
                m = edge_mask(self.g, src, d, dst)
                if d["kind"] == "mask" or src in call.received:
                    tag = "mask ~mask~> "
                elif self.g.node(src)["op"] == "variable":
                    tag = "weight: "
                else:
                    tag = "in " + _tag("", d, m)[1:] if m is not None else "in: "
                res.append((tag, src))
        return res

    def visit_unit(self, unit, prefix: str, head: str) -> None:
        key = unit if isinstance(unit, tuple) else ("node", unit)
        if key in self.done:
            ref = f"[{self.calls[unit[1]].ref}]" if isinstance(unit, tuple) else f"[{unit}]"
            self.lines.append(f"{head}{ref} ...")
            return
        self.done.add(key)
        if isinstance(unit, tuple):
            call = self.calls[unit[1]]
            self.lines.append(head + _group_line(self.g, call, shapes=True))
            children = self.group_inputs(call)
        else:
            self.lines.append(head + _node_line(self.g, unit, self.calls, self.made_by))
            children, calls_seen = [], set()
            for src, port, d in self.g.in_edges(unit):
                child = self.unit(src)
                if child in calls_seen:  # a mask computed from several values of a call
                    continue
                if isinstance(child, tuple):
                    calls_seen.add(child)
                children.append((_tag(port, d, edge_mask(self.g, src, d, unit)), child))
        for i, (tag, child) in enumerate(children):
            last = i == len(children) - 1
            branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
            self.visit_unit(child if isinstance(child, tuple) else self.unit(child),
                            prefix + cont, prefix + branch + tag)

    # -- expanded: every node, a header line where the tree enters a call ------------
    def visit(self, nid: int, prefix: str, head: str, ctx: tuple) -> None:
        path = group_path(self.g, nid)
        if nid in self.done:
            self.lines.append(f"{head}[{nid}] ...")
            return
        common = 0
        while common < min(len(ctx), len(path)) and ctx[common] == path[common]:
            common += 1
        for gid in path[common:]:
            call = self.calls[gid]
            text = _group_line(self.g, call, shapes=False)
            if gid in self.headed:
                text = f"[{call.ref}] group {call.layer!r} ({call.cls}) ..."
            self.headed.add(gid)
            self.lines.append(head + text)
            head, prefix = prefix + "└─ ", prefix + "   "
        self.done.add(nid)
        self.lines.append(head + _node_line(self.g, nid, self.calls, self.made_by))
        edges = self.g.in_edges(nid)
        for i, (src, port, d) in enumerate(edges):
            last = i == len(edges) - 1
            branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
            tag = _tag(port, d, edge_mask(self.g, src, d, nid))
            if any(src in self.calls[gid].received for gid in path):
                tag = f"{port} ~mask~> "  # the mask a call received, read as a value
            self.visit(src, prefix + cont, prefix + branch + tag, path)

    def root(self, nid: int) -> None:
        if self.expand:
            self.visit(nid, "", "", ())
        else:
            self.visit_unit(self.unit(nid), "", "")


def debugprint(model, backward: bool = True, file=None, expand: bool = True) -> str:
    """A ``debugprint``-style tree of the compiled graph, read from the outputs up.

    Each line is ``[id] op 'layer' shape dtype``; ids are the graph's node ids (stable:
    the same model always gets the same ids). Children are the node's inputs, shown as
    ``port:``; a mask edge is marked ``~mask~>`` and a data edge whose value carries a
    mask ``{mask [id]}``. A node already printed is shown again as ``[id] ...``.
    Roots: the model outputs, the losses and metrics, then (``backward=True``) the
    gradient of every trainable weight. Printed to ``file`` when given; returned.

    A custom layer's call is ``[g<n>] group 'name' (Class)  mask: <its mask rule>``
    (``g<n>``: :attr:`GroupCall.ref`, stable for a given model). With ``expand=True`` that line is
    a header and the call's nodes are indented beneath it; with ``expand=False`` the
    call is that one line (with its output shapes and masks), its children are the
    values entering the call (``in:``, ``weight:``, and ``mask ~mask~>`` for a mask it
    receives), and a mask the call computed keeps its own ``[id]`` line.
    """
    g = _graph(model)
    roots = [("output", n) for n, _ in g.meta["outputs"]]
    roots += [("loss", n) for n in g.meta.get("losses", [])]
    roots += [("metric", r) for _, _, r in g.meta.get("metrics", [])]
    if backward:
        roots += [(f"gradient of {v!r}", n) for v, (n, _) in sorted(g.meta.get("grads",
                                                                           {}).items())]
    printer = _Printer(g, expand)
    for what, nid in roots:
        printer.lines.append(f"# {what}")
        printer.root(nid)
    text = "\n".join(printer.lines) + "\n"
    if file is not None:
        file.write(text)
    return text
