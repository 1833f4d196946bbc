"""The order of a functional model's layers (and so of ``get_weights``), as Keras 3's."""
from __future__ import annotations

from graphmask.layers.base import Call, Layer, SymbolicTensor


def keras_layer_order(inputs, outputs) -> list[Layer]:
    """The layers of a functional model in Keras 3's order (so ``get_weights`` lines up).

    Keras sorts layers by depth (the longest path from the layer to an output; deepest
    first), and layers of equal depth by when a depth-first walk from the outputs, in
    order, first reaches them. Input layers the outputs do not use get depth 0.
    """
    first_seen: dict[int, int] = {}
    post_order: list[Call] = []
    done: set[int] = set()

    def walk(t):
        c = t.call
        if id(c) in done:
            return
        first_seen.setdefault(id(c.layer), len(first_seen))
        for v in c.inputs.values():
            if isinstance(v, SymbolicTensor):
                walk(v)
        done.add(id(c))
        post_order.append(c)

    for t in outputs:
        walk(t)
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    layers: dict[int, Layer] = {}
    for c in reversed(post_order):
        depth = max(node_depth.setdefault(id(c), 0), layer_depth.get(id(c.layer), 0))
        layer_depth[id(c.layer)] = depth
        node_depth[id(c)] = depth
        layers[id(c.layer)] = c.layer
        for v in c.inputs.values():
            if isinstance(v, SymbolicTensor):
                node_depth[id(v.call)] = max(depth + 1, node_depth.get(id(v.call), 0))
    for t in inputs:
        if id(t.call.layer) not in layer_depth:
            layer_depth[id(t.call.layer)], first_seen[id(t.call.layer)] = 0, -1
            layers[id(t.call.layer)] = t.call.layer
    return sorted(layers.values(),
                  key=lambda layer: (-layer_depth[id(layer)], first_seen[id(layer)]))
