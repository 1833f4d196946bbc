"""The IR: a networkx multi-digraph of op applications.

Nodes are integers, assigned in creation order; every iteration goes through
:meth:`Graph.order`, a lexicographic topological sort keyed by node id, so the same
model always compiles and runs the same way.

Node attributes
    op       name of the op in ``graphmask.ops.OPS`` (``"lstm"``, ``"variable"``, ...)
    attrs    the op's configuration (plain JSON-able dict)
    layer    the user-facing name of the layer that made the node ("" for compiler nodes)
    phase    ``"forward"`` or ``"backward"``
    specs    list of :class:`Spec`, one per visible output (set by ``passes.shapes``)
    masks    list, one per visible output: id of the node whose output is the mask this
             output carries, or ``None`` (set by ``passes.masks``)

Edge ``(src, dst, key=port)`` attributes
    out      which output of ``src`` feeds port ``port`` of ``dst``
    kind     ``"data"``, ``"mask"`` (a mask value), ``"residual"`` (forward -> VJP) or
             ``"grad"`` (a gradient value)
    mask     the mask the value on this edge carries (producer node id) or ``None``;
             set by ``passes.masks``

Graph attributes (``g.nx.graph``)
    inputs   node ids of the model inputs, in the user's order
    outputs  ``[(node, out), ...]`` of the model outputs, in the user's order
    losses   node ids of loss nodes (one per output with a loss), in output order
    metrics  ``[(output_index, metric_name, node), ...]``
    grads    ``{variable name: (node, out)}`` once autodiff has run
    passes   names of the passes that have run, in order
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import networkx as nx

from graphmask.errors import GraphError
from graphmask.ops import Spec, get_op


class Graph:
    """A thin, explicit wrapper over :class:`networkx.MultiDiGraph`.

    ``MultiDiGraph`` (a ``DiGraph`` subclass) lets one node feed several ports of the
    same consumer; the edge key is the consumer's port name.
    """

    def __init__(self, g: nx.MultiDiGraph | None = None):
        self.nx = g if g is not None else nx.MultiDiGraph()
        for key, default in (("inputs", []), ("outputs", []), ("losses", []),
                             ("metrics", []), ("grads", {}), ("passes", [])):
            self.nx.graph.setdefault(key, default)

    # ---- construction ---------------------------------------------------------------
    def new_id(self) -> int:
        return max(self.nx.nodes, default=-1) + 1

    def add(self, op: str, attrs: dict | None = None, inputs: dict | None = None, *,
            layer: str = "", phase: str = "forward", kinds: dict | None = None) -> int:
        """Add a node applying ``op``; ``inputs`` maps port -> node id or (node id, out)."""
        nid = self.new_id()
        self.nx.add_node(nid, op=op, attrs=dict(attrs or {}), layer=layer, phase=phase)
        for port, src in (inputs or {}).items():
            self.connect(src, nid, port, kind=(kinds or {}).get(port, "data"))
        return nid

    def connect(self, src, dst: int, port: str, kind: str = "data") -> None:
        node, out = (src, 0) if isinstance(src, int) else src
        if self.nx.has_edge(node, dst, key=port) or port in self.in_ports(dst):
            raise GraphError(f"port {port!r} of node {dst} is already connected")
        self.nx.add_edge(node, dst, key=port, out=out, kind=kind, mask=None)

    def copy(self) -> Graph:
        """A deep copy: passes change copies, never the caller's graph."""
        return Graph(copy.deepcopy(self.nx))

    # ---- queries ----------------------------------------------------------------------
    def order(self) -> list[int]:
        """Stable topological order (ties broken by node id)."""
        try:
            return list(nx.lexicographical_topological_sort(self.nx, key=lambda n: n))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(self.nx)
            raise GraphError(f"the graph has a cycle: {cycle}") from None

    def node(self, nid: int) -> dict[str, Any]:
        return self.nx.nodes[nid]

    def op(self, nid: int):
        return get_op(self.nx.nodes[nid]["op"])

    def in_edges(self, nid: int) -> list[tuple[int, str, dict]]:
        """``(src, port, data)`` for each connected input port, in the op's port order."""
        edges = [(u, k, d) for u, _, k, d in self.nx.in_edges(nid, keys=True, data=True)]
        n = self.nx.nodes[nid]
        names = get_op(n["op"]).port_names(n["attrs"])
        rank = {p: i for i, p in enumerate(names)}
        return sorted(edges, key=lambda e: (rank.get(e[1], len(rank)), e[1]))

    def in_ports(self, nid: int) -> dict[str, tuple[int, int]]:
        return {k: (u, d["out"]) for u, _, k, d in self.nx.in_edges(nid, keys=True, data=True)}

    def consumers(self, nid: int, out: int | None = None) -> list[tuple[int, str, dict]]:
        """``(dst, port, data)`` for each edge leaving ``nid`` (from output ``out``)."""
        res = [(v, k, d) for _, v, k, d in self.nx.out_edges(nid, keys=True, data=True)
               if out is None or d["out"] == out]
        return sorted(res, key=lambda e: (e[0], e[1]))

    def nodes_by_op(self, op: str) -> list[int]:
        return [n for n in self.order() if self.nx.nodes[n]["op"] == op]

    def spec(self, nid: int, out: int = 0) -> Spec:
        return self.nx.nodes[nid]["specs"][out]

    def label(self, nid: int) -> str:
        """How errors and reports name a node: its layer name, else op and id."""
        n = self.nx.nodes[nid]
        return n["layer"] or f"{n['op']}#{nid}"

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    @property
    def meta(self) -> dict:
        return self.nx.graph

    def require(self, pass_name: str, *needed: str) -> None:
        """Fail loudly when a pass runs before a pass it needs."""
        done = self.meta["passes"]
        missing = [p for p in needed if p not in done]
        if missing:
            raise GraphError(f"pass {pass_name!r} needs {missing} to run first "
                             f"(ran so far: {done})")
