"""Elementwise fusion: chains of elementwise primitives become one node.

Runs after ``masks`` (every value's mask is known, so the fused node keeps the edges'
annotations) and before ``losses`` and ``autodiff``, so the backward graph gets one
``vjp`` node per fused node, whose kernel runs the whole chain's backward in one pass.

A *group* is a set of forward nodes, all of

* an op in :data:`CHEAP` (``+ - * /``, ``maximum``, ``minimum``, ``where`` with a bool
  condition, ``negative``, ``abs``, ``square``, ``sqrt``, ``relu``, ``clip``): the
  transcendental primitives (``exp``, ``log``, ``tanh``, ``sigmoid``, ...) stay NumPy
  ufuncs, whose SIMD versions are several times faster than numba's scalar libm calls;
* the same float dtype for every input and output (a ``where`` condition is bool) and
  the same static shape (inputs may broadcast to it: scalars, rows like a bias,
  columns like a per-row scale);
* the same layer and scope, so the user's layers stay whole in every view;

connected through their data edges, with no path that leaves the group and comes back
(the fused node could not be scheduled). A member read outside the group (by another
node, as a model output, a custom layer's output) becomes an output of the fused node.
Groups are grown in the graph's order, so compiling twice gives the same graph.

Switch: :func:`enabled` (a setter that is also a context manager) turns the pass on or
off for the models compiled meanwhile; its default is :data:`DEFAULT`, which
``GRAPHMASK_FUSION=1`` or ``=0`` in the environment overrides. Off, the pass changes
nothing (``meta["fusion"]`` is empty).
"""
from __future__ import annotations

import os

from graphmask.errors import ConfigError
from graphmask.ir.graph import Graph
from graphmask.ops import fused as F

NAME = "fusion"

#: the primitives fused by default (see the module docstring)
CHEAP = frozenset({"prim.add", "prim.subtract", "prim.multiply", "prim.divide",
                   "prim.maximum", "prim.minimum", "prim.where", "prim.negative",
                   "prim.abs", "prim.square", "prim.sqrt", "prim.relu", "prim.clip"})
#: the most members of one fused node
MAX_MEMBERS = 12

#: the switch's default; ``GRAPHMASK_FUSION=1`` (or ``0``) in the environment overrides it
DEFAULT = False
_WORDS = {"1": True, "true": True, "on": True, "yes": True,
          "0": False, "false": False, "off": False, "no": False}


def _from_environment() -> bool:
    value = os.environ.get("GRAPHMASK_FUSION")
    if value is None or value.strip() == "":
        return DEFAULT
    if value.strip().lower() not in _WORDS:
        raise ConfigError(f"GRAPHMASK_FUSION={value!r}: expected 1 or 0 (true/false, on/off, "
                          f"yes/no)")
    return _WORDS[value.strip().lower()]


_state = {"on": _from_environment()}


class _Switch:
    def __init__(self, previous):
        self.previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state["on"] = self.previous


def enabled(on: bool | None = None):
    """Whether models compiled from now on fuse elementwise chains.

    Parameters
    ----------
    on : bool, optional
        Set the switch (``None``: only read it).

    Returns
    -------
    bool or context manager
        With ``on=None`` the current setting; else a context manager that restores the
        previous setting on exit (``with enabled(False): model.compile(...)``), which
        may also be ignored (a plain setter).
    """
    if on is None:
        return _state["on"]
    if not isinstance(on, bool):
        raise ConfigError(f"graphmask.passes.fusion.enabled: on must be True, False or None, "
                          f"got {on!r}")
    previous = _state["on"]
    _state["on"] = on
    return _Switch(previous)


def _candidate(g: Graph, nid: int, ops) -> tuple | None:
    """The grouping key of a fusible node (dtype, shape, layer, scope), or None."""
    n = g.node(nid)
    if n["op"] not in ops or n["phase"] != "forward" or len(n.get("specs") or ()) != 1:
        return None
    if any(m is not None for m in n.get("masks") or ()):
        return None
    spec = n["specs"][0]
    if spec.dtype not in ("float32", "float64"):
        return None
    for src, port, d in g.in_edges(nid):
        ds = g.spec(src, d["out"]).dtype
        if d["kind"] != "data" or not (ds == spec.dtype or (port == "condition" and ds == "bool")):
            return None
    return (spec.dtype, tuple(spec.shape), n["layer"], tuple(n.get("scope") or ()),
            tuple(n.get("groups") or ()))


def _inputs_of(g: Graph, members: list) -> list:
    """The distinct values from outside the group the members read, in order of use."""
    inside, seen = set(members), []
    for nid in members:
        for src, _port, d in g.in_edges(nid):
            key = (src, d["out"])
            if src not in inside and key not in seen:
                seen.append(key)
    return seen


def _fetched(g: Graph) -> set:
    """Node ids whose value is read from outside the graph's edges (model outputs, the
    outputs of a custom layer's call)."""
    ids = {n for n, _ in g.meta.get("outputs") or ()}
    for info in (g.meta.get("groups") or {}).values():
        ids |= {n for n, _ in info.get("outputs") or () if n is not None}
    return ids


def _outputs_of(g: Graph, members: list, fetched: set) -> list:
    inside = set(members)
    return [nid for nid in members if nid in fetched
            or any(dst not in inside for dst, _p, _d in g.consumers(nid))]


def _closes_cycle(g: Graph, group: set, pos: dict) -> bool:
    """Whether a path leaves ``group`` and comes back into it."""
    last = max(pos[n] for n in group)
    stack = [dst for n in group for dst, _p, _d in g.consumers(n)
             if dst not in group and pos[dst] < last]
    seen = set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        for dst, _p, _d in g.consumers(v):
            if dst in group:
                return True
            if pos[dst] < last:
                stack.append(dst)
    return False


def _groups(g: Graph, ops) -> list:
    """The groups of two or more members, each in the graph's order."""
    order = g.order()
    pos = {n: i for i, n in enumerate(order)}
    fetched = _fetched(g)
    key = {n: k for n in order if (k := _candidate(g, n, ops)) is not None}
    group_of = {n: {n} for n in key}
    for nid in order:
        if nid not in key:
            continue
        for src, _port, _d in g.in_edges(nid):
            if src not in key or key[src] != key[nid] or group_of[src] is group_of[nid]:
                continue
            merged = group_of[src] | group_of[nid]
            members = sorted(merged, key=pos.get)
            if (len(merged) > MAX_MEMBERS or len(_inputs_of(g, members)) > F.MAX_INPUTS
                    or len(_outputs_of(g, members, fetched)) > F.MAX_OUTPUTS
                    or _closes_cycle(g, merged, pos)):
                continue
            for n in merged:
                group_of[n] = merged
    seen, groups = set(), []
    for nid in order:
        grp = group_of.get(nid)
        if grp is not None and id(grp) not in seen and len(grp) > 1:
            seen.add(id(grp))
            groups.append(sorted(grp, key=pos.get))
    return groups


def _attrs(g: Graph, members: list, inputs: list, outputs: list) -> dict:
    index = {m: j for j, m in enumerate(members)}
    slot = {key: k for k, key in enumerate(inputs)}
    described = []
    for nid in members:
        args = {}
        for src, port, d in g.in_edges(nid):
            args[port] = ["m", index[src]] if src in index else ["in", slot[(src, d["out"])]]
        n = g.node(nid)
        described.append({"node": nid, "op": n["op"], "attrs": n["attrs"], "args": args})
    attrs = {"members": described, "outputs": [index[o] for o in outputs],
             "n_in": len(inputs), "dtype": g.spec(members[0]).dtype}
    attrs["key"] = F.chain_key(attrs)
    return attrs


def _fits(attrs) -> bool:
    """Whether the chain's tapes fit the kernel (registers), forward and backward."""
    try:
        F.forward_tape(attrs)
        F.backward_tape(attrs, tuple(range(attrs["n_in"])),
                        tuple(range(len(attrs["outputs"]))), [0] * attrs["n_in"])
    except F.TapeTooLarge:
        return False
    return True


def _replace(g: Graph, members: list, attrs: dict, inputs: list, outputs: list) -> int:
    """Put one fused node (with the first member's id) in the place of ``members``."""
    first = g.node(members[0])
    fid = members[0]
    in_edges = {}
    for nid in members:
        for src, _port, d in g.in_edges(nid):
            in_edges.setdefault((src, d["out"]), dict(d))
    out_edges = []
    inside = set(members)
    for k, nid in enumerate(outputs):
        for dst, port, d in g.consumers(nid):
            if dst not in inside:
                out_edges.append((k, dst, port, dict(d)))
    specs = [g.spec(o) for o in outputs]
    info = {"layer": first["layer"], "phase": "forward", "scope": first.get("scope"),
            "groups": first.get("groups")}
    g.nx.remove_nodes_from(members)
    g.nx.add_node(fid, op=F.NAME, attrs=attrs, layer=info["layer"], phase="forward")
    node = g.node(fid)
    for key in ("scope", "groups"):
        if info[key]:
            node[key] = list(info[key])
    node["specs"] = specs
    node["masks"] = [None] * len(specs)
    node["fused"] = list(members)
    for k, (src, out) in enumerate(inputs):
        d = in_edges[(src, out)]
        g.nx.add_edge(src, fid, key=f"x{k}", out=out, kind=d["kind"], mask=d["mask"])
    for k, dst, port, d in out_edges:
        g.nx.add_edge(fid, dst, key=port, out=k, kind=d["kind"], mask=d["mask"])
    return fid


def _remap(g: Graph, moved: dict) -> None:
    """Model outputs and custom layers' outputs that were members now name the fused node."""
    g.meta["outputs"] = [moved.get(tuple(o), tuple(o)) for o in g.meta["outputs"]]
    for info in (g.meta.get("groups") or {}).values():
        info["outputs"] = [list(moved.get((n, i), (n, i))) if n is not None else [n, i]
                           for n, i in info["outputs"]]


def fuse_elementwise(graph: Graph, ops=CHEAP) -> Graph:
    """Fuse the elementwise chains of a copy of ``graph`` (see the module docstring).

    Parameters
    ----------
    graph : Graph
        A graph after the ``shapes`` and ``masks`` passes.
    ops : set of str, optional
        The primitives that may be fused (default :data:`CHEAP`); any of
        ``graphmask.ops.fused.SUPPORTED``.

    Returns
    -------
    Graph
        The rewritten copy; ``meta["fusion"]`` lists the fused nodes with their members.
    """
    g = graph.copy()
    g.require(NAME, "shapes", "masks")
    fused = []
    if _state["on"]:
        fetched = _fetched(g)
        moved = {}
        for members in _groups(g, frozenset(ops) & F.SUPPORTED):
            inputs = _inputs_of(g, members)
            outputs = _outputs_of(g, members, fetched)
            attrs = _attrs(g, members, inputs, outputs)
            if not _fits(attrs):
                continue
            fid = _replace(g, members, attrs, inputs, outputs)
            for k, nid in enumerate(outputs):
                moved[(nid, 0)] = (fid, k)
            fused.append({"node": fid, "members": members, "chain": F.chain_label(attrs)})
        _remap(g, moved)
    g.meta["fusion"] = fused
    g.meta["passes"].append(NAME)
    return g
