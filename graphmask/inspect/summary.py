"""``model.summary()``: Keras's layer table plus where every mask comes from and goes.

Columns: layer (name and type), output shape, *mask in* (the layer(s) that created the
mask this layer receives), *mask out* (what the layer does with masks: ``created``,
``merged``, ``passed``, ``used + passed``, ``consumed``, ``dropped`` or ``none``) and
parameter count; then the totals and, when the model has masks, the mask flow chains
of :func:`graphmask.inspect.explain_mask`.

A custom layer's call (or a model used as a layer) is one row however many primitive
nodes it recorded: the shape of its outputs, the creators of the masks it received, its
mask rule (``read by call(), no output mask``, ...) as *mask out*, and all its weights,
nested layers' included, each counted once.

Everything is read from ``model.graph`` (the compiled graph with the mask pass's
annotations), so the table shows exactly what runs.
"""
from __future__ import annotations

import textwrap

import numpy as np

from graphmask.inspect.explain import (
    MERGE_MASK_OPS,
    chain_text,
    creator_name,
    fmt_shape,
    group_calls,
    group_path,
    is_mask_node,
    mask_chains,
    mask_computes,
    node_status,
)

HEADERS = ("Layer (type)", "Output Shape", "Mask in", "Mask out", "Param #")
# how spare width is shared between the columns
WIDTHS = (26, 14, 12, 20, 10)
DEFAULT_LINE_LENGTH = 98
MIN_LINE_LENGTH = 60
NOT_ROWS = ("target", "sample_weight", "variable", "constant")


def _fmt_bytes(n: int) -> str:
    size, unit = float(n), "B"
    for nxt in ("KB", "MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, nxt
    return f"{size:.2f} {unit}"


def _widths(rows, line_length: int) -> list[int]:
    """Column widths filling ``line_length``: natural widths, then spread or shrunk."""
    content = line_length - 3 * len(HEADERS) - 1
    cols = list(zip(HEADERS, *rows))
    nat = [max(len(part) for v in col for part in v.split("\n")) for col in cols]
    ws = list(nat)
    words = max(len(w) for v in cols[0] for w in v.split())
    floor = {0: words, 2: 8, 3: 8}  # "name (Type)" wraps between words only
    while sum(ws) > content:  # shrink the widest wrappable column (never shape or params)
        k = max((i for i in floor if ws[i] > floor[i]), key=lambda i: ws[i], default=None)
        if k is None:
            break
        ws[k] -= 1
    extra = content - sum(ws)
    if extra > 0:
        add = [extra * w // sum(WIDTHS) for w in WIDTHS]
        add[0] += extra - sum(add)
        ws = [w + a for w, a in zip(ws, add)]
    return ws


def _mask_out(g, st) -> str:
    if st.status == "merged":
        return f"merged ({MERGE_MASK_OPS[g.node(st.out)['op']]})"
    if st.status == "created":
        return f"created: {mask_computes(g, st.out)}"
    if st.status == "passed" and st.used == st.out:
        return "used + passed"
    return st.status


def _size(g, nid: int) -> int:
    return int(np.prod(g.node(nid)["attrs"]["shape"]))


def _group_row(g, call, layer, shown: set) -> tuple[str, ...]:
    """One row for a whole custom-layer call: its outputs, the creators of the masks it
    received, its mask rule and all its weights (nested layers' included, each once; as
    Keras, also those its ``call`` does not use)."""
    shape = ", ".join(fmt_shape(g.spec(o, k).shape) for o, k in call.outputs)
    mask_in = ", ".join(dict.fromkeys(creator_name(g, m) for m in call.received))
    if layer is not None:
        size = sum(int(np.prod(w.shape)) for w in {id(w): w for w in layer.weights}.values())
    else:
        weights = dict.fromkeys(src for nid in call.nodes for src, _, _ in g.in_edges(nid)
                                if g.node(src)["op"] == "variable")
        size = sum(_size(g, v) for v in weights)
    count = "shared" if call.layer in shown else f"{size:,}"
    shown.add(call.layer)
    rule = call.rule
    if call.made and is_mask_node(g, call.made[0]):  # e.g. an Embedding inside the call
        rule += f" ({mask_computes(g, call.made[0])})"
    return (call.title, shape, mask_in or "-", rule, count)


def _rows(model, g) -> list[tuple[str, ...]]:
    layers = {layer.name: layer for layer in getattr(model, "layers", [])}
    types = {name: type(layer).__name__ for name, layer in layers.items()}
    params: dict[str, int] = {}
    for nid in g.order():
        n = g.node(nid)
        if n["op"] == "variable":
            params[n["layer"]] = params.get(n["layer"], 0) + _size(g, nid)
    calls = group_calls(g)
    rows, shown, done = [], set(), set()
    for nid in g.order():
        n = g.node(nid)
        name = n["layer"]
        if n["phase"] != "forward" or n["op"] in NOT_ROWS or is_mask_node(g, nid):
            continue
        path = group_path(g, nid)
        if path:  # a custom layer's call: one row, at its first node
            if path[0] not in done:
                done.add(path[0])
                call = calls[path[0]]
                rows.append(_group_row(g, call, layers.get(call.layer), shown))
            continue
        if not name or (types and name not in types) or (not types and ":" in name):
            continue
        st = node_status(g, nid)
        kind = types.get(name, n["op"])
        shape = ", ".join(fmt_shape(s.shape) for s in n.get("specs") or [])
        mask_in = ", ".join(creator_name(g, m) for m in st.received) or "-"
        count = "shared" if name in shown else f"{params.get(name, 0):,}"
        shown.add(name)
        rows.append((f"{name} ({kind})", shape, mask_in, _mask_out(g, st), count))
    return rows


def _table(rows, widths) -> list[str]:
    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values, align_last=True):
        wrapped = [[ln for para in v.split("\n")
                    for ln in textwrap.wrap(para, w, break_on_hyphens=False)] or [""]
                   for v, w in zip(values, widths)]
        out = []
        for i in range(max(len(c) for c in wrapped)):
            parts = []
            for k, (c, w) in enumerate(zip(wrapped, widths)):
                text = c[i] if i < len(c) else ""
                parts.append(text.rjust(w) if (k == len(widths) - 1 and align_last)
                             else text.ljust(w))
            out.append("│ " + " │ ".join(parts) + " │")
        return out

    out = [line("┏", "┳", "┓", "━")]
    out += [s.replace("│", "┃") for s in cells(HEADERS)]
    out.append(line("┡", "╇", "┩", "━"))
    for i, r in enumerate(rows):
        if i:
            out.append(line("├", "┼", "┤", "─"))
        out += cells(r)
    out.append(line("└", "┴", "┘", "─"))
    return out


def _weights(model, g) -> list[tuple[int, int, bool]]:
    """(size, bytes, trainable) of each weight: the graph's ``variable`` nodes, then the
    model's weights no node reads (a custom layer's weight its ``call`` does not use),
    which Keras counts too."""
    out, names = [], set()
    for nid in g.order():
        n = g.node(nid)
        if n["op"] == "variable":
            a = n["attrs"]
            size = int(np.prod(a["shape"]))
            names.add(a["var"])
            out.append((size, size * np.dtype(a.get("dtype", "float32")).itemsize,
                        bool(a.get("trainable", True))))
    if not hasattr(model, "trainable_weights"):
        return out
    trainable = {id(w) for w in model.trainable_weights}
    for w in {id(w): w for w in model.weights}.values():
        if w.name not in names:
            size = int(np.prod(w.shape))
            out.append((size, w.value.nbytes, id(w) in trainable))
    return out


def _totals(model, g) -> list[str]:
    total = trainable = total_b = trainable_b = 0
    for size, nbytes, train in _weights(model, g):
        total, total_b = total + size, total_b + nbytes
        if train:
            trainable, trainable_b = trainable + size, trainable_b + nbytes
    return [f" Total params: {total:,} ({_fmt_bytes(total_b)})",
            f" Trainable params: {trainable:,} ({_fmt_bytes(trainable_b)})",
            f" Non-trainable params: {total - trainable:,} ({_fmt_bytes(total_b - trainable_b)})"]


def _flow(g, line_length: int) -> list[str]:
    chains = mask_chains(g)
    if not chains:
        return [" Masks: none"]
    out = [" Mask flow:"]
    for path in chains:
        text = chain_text(g, path)
        out += textwrap.wrap(text, line_length, initial_indent="   ",
                             subsequent_indent="       ", break_on_hyphens=False)
    return out


def summary(model, print_fn=None, line_length=None, return_string=False):
    """Print (or return) the layer table with mask in/out, parameters and mask flow.

    Parameters
    ----------
    model : Model
    print_fn : callable, optional
        Called once with the whole text (default: ``print``).
    line_length : int, optional
        Total width of the table (default 98, at least 60).
    return_string : bool
        Return the text instead of printing it.
    """
    g = model.graph
    width = DEFAULT_LINE_LENGTH if line_length is None else max(MIN_LINE_LENGTH,
                                                                int(line_length))
    lines = [f'Model: "{getattr(model, "name", "functional")}"']
    rows = _rows(model, g)
    lines += _table(rows, _widths(rows, width))
    lines += _totals(model, g)
    lines += _flow(g, width)
    text = "\n".join(lines) + "\n"
    if return_string:
        return text
    (print_fn or print)(text.rstrip("\n"))
    return None
