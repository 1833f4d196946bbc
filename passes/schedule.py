"""Pass 5: from a compiled graph and the values wanted, an executable :class:`Plan`.

Only the nodes the fetched values depend on are scheduled, in the graph's stable
topological order. For each step the plan records when every value is read for the last
time, so the runtime frees it right after (buffer lifetimes). Forward nodes whose
residual outputs nobody reads run with ``attrs['_residuals'] = False`` so an op may
skip storing them (inference); forward nodes of a train plan get
``attrs['_training'] = True`` (dropout).

Side by side: two long-running steps (ops with ``side_by_side``, such as the LSTM, or
their VJPs) that do not depend on each other are placed next to each other, the first
marked ``with_next``; the runtime then runs them at once, one thread each (the forward
and backward LSTMs of a Bidirectional layer, and their gradients), instead of one after
the other with both threads each. Recurrent kernels synchronise their threads at every
timestep, so one thread per independent loop does the same work with no barriers.
The ops' results do not depend on their thread count, so this only changes speed.
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
    with_next: bool = False  # runs at the same time as the next step (see above)


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
    order = _pair_side_by_side(g, [n for n in g.order() if n in wanted], training)
    pairs = set(order.pairs)
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
        steps.append(Step(nid, get_op(node["op"]), attrs, g.in_ports(nid), g.label(nid),
                          with_next=nid in pairs))
    last_use = {}
    for i, st in enumerate(steps):
        for key in st.ports.values():
            last_use[key] = i
    keep = set(map(tuple, fetches))
    for key, i in sorted(last_use.items()):
        if key not in keep and key[0] not in variables:
            steps[i].free.append(key)
    return Plan(steps, [tuple(f) for f in fetches], feeds, variables)


class _Order(list):
    """A node order plus ``pairs``: the first node of each side-by-side pair."""

    pairs: tuple = ()


def _long_running(g: Graph, nid: int, training: bool) -> bool:
    """A node the runtime may run beside another: a ``side_by_side`` op or its VJP. Not a
    training step drawing unseeded dropout masks: those come from the one global
    generator, and two loops drawing at once would draw in an order set by timing."""
    node = g.node(nid)
    if node["op"] == "vjp":
        return get_op(node["attrs"]["op"]).side_by_side
    attrs = node["attrs"]
    active = bool(attrs["training"]) if "training" in attrs else training  # pinned or not
    draws = active and attrs.get("seed") is None and bool(
        attrs.get("dropout") or attrs.get("recurrent_dropout"))
    return get_op(node["op"]).side_by_side and not draws


def _one_state(g: Graph, a: int, b: int) -> bool:
    """Two calls of one stateful layer (one ``state_key``): never side by side, since
    each starts from the state the other leaves (they run one after the other)."""
    key = g.node(a)["attrs"].get("state_key") if g.node(a)["op"] != "vjp" else None
    return key is not None and g.node(b)["op"] != "vjp" and \
        g.node(b)["attrs"].get("state_key") == key


def _pair_side_by_side(g: Graph, order: list, training: bool = False) -> _Order:
    """``order`` with independent long-running nodes moved next to each other.

    Greedy, in order: each long-running node ``a`` not yet paired takes the first later
    long-running node ``b`` that does not depend on it; ``b``'s ancestors still after
    ``a`` move before ``a`` (none depends on ``a``, else ``b`` would), then ``b`` right
    after ``a``. Everything else keeps its relative order, so the result is still a
    topological order, and the same graph always gives the same pairs.
    """
    order = list(order)
    pairs = []
    paired = set()
    i = 0
    while i < len(order):
        a = order[i]
        if a in paired or not _long_running(g, a, training):
            i += 1
            continue
        after_a = nx.descendants(g.nx, a)
        partner = next((b for b in order[i + 1:] if b not in paired and b not in after_a
                        and _long_running(g, b, training) and not _one_state(g, a, b)),
                       None)
        if partner is None:
            i += 1
            continue
        before_b = nx.ancestors(g.nx, partner)
        rest = order[i + 1:]
        moved = [n for n in rest if n in before_b]
        kept = [n for n in rest if n not in before_b and n != partner]
        order[i:] = moved + [a, partner] + kept
        i += len(moved)
        pairs.append(a)
        paired |= {a, partner}
        i += 2
    result = _Order(order)
    result.pairs = tuple(pairs)
    return result
