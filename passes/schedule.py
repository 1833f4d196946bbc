"""Pass 5: from a compiled graph and the values wanted, an executable :class:`Plan`.

Only the nodes the fetched values depend on are scheduled, in the graph's stable
topological order. For each step the plan records when every value is read for the last
time, so the runtime frees it right after (buffer lifetimes). Forward nodes whose
residual outputs nobody reads run with ``attrs['_residuals'] = False`` so an op may
skip storing them (inference); forward nodes of a train plan get
``attrs['_training'] = True`` (dropout).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from graphmask.ir.graph import Graph
from graphmask.ops import get_op

SOURCES = ("input", "target", "sample_weight", "variable")


@dataclass
class Step:
    node: int
    op: object
    attrs: dict
    ports: dict          # port -> (src node, out)
    label: str
    free: list = field(default_factory=list)  # values dead after this step


@dataclass
class Plan:
    steps: list
    fetches: list        # [(node, out)]
    feeds: list          # source node ids the caller must supply (inputs, targets, weights)
    variables: dict      # source node id -> variable name


def make_plan(g: Graph, fetches: list, training: bool = False) -> Plan:
    """Schedule everything ``fetches`` (a list of ``(node, out)``) depends on.

    ``training`` marks the forward nodes of a train plan (``attrs['_training']``):
    ops such as dropout behave differently while training.
    """
    wanted = set()
    for node, _ in fetches:
        wanted |= nx.ancestors(g.nx, node) | {node}
    order = [n for n in g.order() if n in wanted]
    steps, feeds, variables = [], [], {}
    residual_readers = {u for u, v, d in g.nx.edges(data=True)
                        if d["kind"] == "residual" and v in wanted}
    for nid in order:
        node = g.node(nid)
        if node["op"] == "variable":
            variables[nid] = node["attrs"]["var"]
            continue
        if node["op"] in SOURCES:
            feeds.append(nid)
            continue
        attrs = node["attrs"]
        if node["phase"] == "forward":
            attrs = {**attrs, "_training": training}
            if nid not in residual_readers:
                attrs["_residuals"] = False
        steps.append(Step(nid, get_op(node["op"]), attrs, g.in_ports(nid), g.label(nid)))
    last_use = {}
    for i, st in enumerate(steps):
        for key in st.ports.values():
            last_use[key] = i
    keep = set(map(tuple, fetches))
    for key, i in sorted(last_use.items()):
        if key not in keep and key[0] not in variables:
            steps[i].free.append(key)
    return Plan(steps, [tuple(f) for f in fetches], feeds, variables)
