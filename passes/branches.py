"""Pass 0: keep one branch of every ``training_switch``.

A custom layer whose ``call`` computes something else when ``training`` is true (an
``if training:`` in Python) is traced twice by the front end, once with
``training=False`` and once with ``training=True``; where the two traces differ, a
``training_switch`` node joins them (``graphmask/layers/calling.py``). Before any other
pass runs, this pass resolves every switch for the graph being compiled
(``graph.meta["training"]``: the train graph keeps ``on_true``, the inference graph of
predict/evaluate keeps ``on_false``): the switch's consumers read the chosen value, and
the nodes only the other branch needed are removed, so the later passes (masks, losses,
autodiff) and the runtime never see the branch that does not run.
"""
from __future__ import annotations

import networkx as nx

from graphmask.ir.graph import Graph

NAME = "branches"
SWITCH = "training_switch"


def select_training_branch(g: Graph) -> Graph:
    """``g`` with every ``training_switch`` replaced by its chosen input."""
    g = g.copy()
    switches = g.nodes_by_op(SWITCH)
    if switches:
        port = "on_true" if g.meta.get("training") else "on_false"
        chosen: dict[tuple, tuple] = {}
        for sid in switches:  # topological order: a switch may feed another
            src = tuple(g.in_ports(sid)[port])
            src = chosen.get(src, src)
            chosen[(sid, 0)] = src
            for dst, dport, data in g.consumers(sid):
                g.nx.remove_edge(sid, dst, key=dport)
                g.connect(src, dst, dport, kind=data["kind"])
            g.nx.remove_node(sid)
        _remap_meta(g, chosen)
        _drop_dead(g)
    g.meta["passes"].append(NAME)
    return g


def _remap_meta(g: Graph, chosen: dict) -> None:
    g.meta["outputs"] = [chosen.get(tuple(o), tuple(o)) for o in g.meta["outputs"]]

    def node(nid):
        return None if nid is None else chosen.get((nid, 0), (nid, 0))[0]

    for info in (g.meta.get("groups") or {}).values():
        info["mask_in"] = [node(m) for m in info["mask_in"]]
        info["mask_out"] = [node(m) for m in info["mask_out"]]
        info["outputs"] = [list(chosen.get((n, i), (n, i))) if n is not None else [n, i]
                           for n, i in info["outputs"]]


def _drop_dead(g: Graph) -> None:
    """Remove the nodes nothing kept depends on any more (the branch not taken)."""
    roots = {n for n, _ in g.meta["outputs"]} | set(g.meta["inputs"]) \
        | set(g.meta.get("losses") or ()) | {r for _, _, r in g.meta.get("metrics") or ()} \
        | set((g.meta.get("targets") or {}).values()) \
        | set((g.meta.get("weights") or {}).values())
    live = set(roots)
    for r in roots:
        live |= nx.ancestors(g.nx, r)
    g.nx.remove_nodes_from([n for n in list(g.nx.nodes) if n not in live])
    groups = g.meta.get("groups")
    if groups:
        present = {gid for n in g.nx.nodes for gid in g.node(n).get("groups", ())}
        g.meta["groups"] = {gid: info for gid, info in groups.items() if gid in present}
