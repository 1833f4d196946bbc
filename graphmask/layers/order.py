"""The order of a functional model's layers (and so of ``get_weights``), as Keras 3's.

Keras 3 lists a functional model's layers by their depth in its graph of *operations*
(deepest first), and layers of equal depth in the order a depth-first walk from the
outputs first reaches them. That graph holds more than the layer calls: each layer's
``compute_mask`` records ops on the symbolic tensors (``Embedding``: ``not_equal``;
``Masking``: ``any(not_equal)``; the merges: ``logical_or``, ``ones_like``, ...), and a
layer whose ``call`` takes ``mask`` (``LSTM``, ``TimeDistributed``,
``GlobalAveragePooling1D``) has that mask as an input of its node. Those extra nodes
change depths: two same-shaped weights of different layers can swap places in
``get_weights`` if they are left out.

:func:`keras_layer_order` rebuilds that operation graph from the recorded layer calls.
What each layer type adds is one :class:`KerasRule` in :data:`KERAS_RULES` (keyed by op
name) or :data:`WRAPPER_RULES` (keyed by layer class, for wrappers that record the op of
the layer they wrap). A layer type without a rule is an error, never a guess.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphmask.errors import GraphError
from graphmask.layers.base import Layer, SymbolicTensor, calls_of

__all__ = ["KERAS_RULES", "WRAPPER_RULES", "KerasRule", "KerasTensor", "MaskOps",
           "keras_layer_order", "rule_for"]


class _Op:
    """A Keras operation that is not a layer (``not_equal``, ``cast``, ...); each is
    called once, so it has exactly one node."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Node:
    """One call in Keras's operation graph: the operation (a graphmask :class:`Layer` or
    an :class:`_Op`) and the nodes producing its tensor arguments, in argument order."""

    __slots__ = ("op", "parents")

    def __init__(self, op, parents):
        self.op = op
        self.parents = parents


@dataclass(frozen=True, eq=False)
class KerasTensor:
    """A symbolic tensor of Keras's graph, as far as the order needs it.

    Attributes
    ----------
    node : _Node
        The node that produced it.
    rank : int
        Its number of axes, batch included.
    dtype : str
        Keras's dtype for it (a layer's compute dtype, not necessarily graphmask's).
    """

    node: _Node
    rank: int
    dtype: str


class MaskOps:
    """The Keras ops a :attr:`KerasRule.compute_mask` may record; each call adds one
    operation node to the graph and returns its :class:`KerasTensor` (always ``bool``).

    Rules for new layers use the named helpers or :meth:`record` for any other op.
    """

    def record(self, name: str, inputs, rank: int) -> KerasTensor:
        """Record op ``name`` on ``inputs`` (tensors, in argument order)."""
        return KerasTensor(_Node(_Op(name), [t.node for t in inputs]), int(rank), "bool")

    def not_equal(self, x):
        return self.record("not_equal", [x], x.rank)

    def any(self, x):
        """``any(x, axis=-1)`` (no ``keepdims``)."""
        return self.record("any", [x], x.rank - 1)

    def logical_or(self, a, b):
        return self.record("logical_or", [a, b], max(a.rank, b.rank))

    def expand_dims(self, x):
        return self.record("expand_dims", [x], x.rank + 1)

    def zeros_like(self, x):
        return self.record("zeros_like", [x], x.rank)

    def ones_like(self, x):
        return self.record("ones_like", [x], x.rank)

    def concatenate(self, xs):
        return self.record("concatenate", list(xs), xs[0].rank)


def pass_mask(ops, call, inputs, masks):
    """Keras's default ``compute_mask``: the output carries the input's mask."""
    return masks[0]


def _compute_dtype(call, in_dtypes) -> str:
    return call.layer.dtype


@dataclass(frozen=True)
class KerasRule:
    """How calls of one layer type appear in Keras 3's operation graph.

    Parameters
    ----------
    mask_arg : bool
        Keras's ``call`` takes a ``mask`` argument, so the input's mask (when there is
        one and the input needed no dtype conversion) is an input of the layer's node.
    compute_mask : callable or None
        ``compute_mask(ops, call, inputs, masks)`` returns the output mask (for the first
        output) or a list with one mask per output, each a :class:`KerasTensor` or None.
        ``ops`` is a :class:`MaskOps` recording the ops Keras's ``compute_mask`` records;
        ``inputs`` are the call's tensor arguments as Keras's ``compute_mask`` sees them
        (after its float cast to the layer's dtype); ``masks`` their masks. None: the
        outputs carry no mask (the Keras layer does not support masking, or its
        ``compute_mask`` returns None). The default passes the mask through.
    out_dtype : callable
        ``out_dtype(call, in_dtypes)``: Keras's dtype for the call's outputs (by default
        the layer's dtype, which is Keras's compute dtype).
    """

    mask_arg: bool = False
    compute_mask: Callable | None = pass_mask
    out_dtype: Callable = _compute_dtype


def _embedding_mask(ops, call, inputs, masks):
    return ops.not_equal(inputs[0]) if call.attrs.get("mask_zero") else None


def _masking_mask(ops, call, inputs, masks):
    return ops.any(ops.not_equal(inputs[0]))


def _rnn_mask(ops, call, inputs, masks):
    out = masks[0] if call.attrs.get("return_sequences") else None
    states = 2 if call.op == "lstm" else 1  # LSTM: [h, c]; GRU, SimpleRNN: [h]
    return [out] + [None] * states if call.attrs.get("return_state") else out


def _or_mask(ops, call, inputs, masks):
    """Add and the other elementwise merges: the OR of the masks, none if one is missing."""
    if any(m is None for m in masks):
        return None
    out = masks[0]
    for m in masks[1:]:
        out = ops.logical_or(out, m)
    return out


def _concatenate_mask(ops, call, inputs, masks):
    """Concatenate: all-true masks stand in for unmasked inputs; then any over the last
    axis of the concatenated, input-shaped masks."""
    if all(m is None for m in masks):
        return None
    parts = []
    for x, m in zip(inputs, masks):
        if m is None:
            parts.append(ops.ones_like(x))
        elif m.rank < x.rank:
            parts.append(ops.logical_or(ops.expand_dims(m), ops.zeros_like(x)))
        else:
            parts.append(m)
    return ops.any(ops.concatenate(parts))


def _flatten_dtype(call, in_dtypes) -> str:
    # Flatten keeps a non-float input's dtype; floats are cast to the layer's dtype
    return in_dtypes[0] if np.dtype(in_dtypes[0]).kind != "f" else call.layer.dtype


#: One entry per op a layer records: how Keras 3's layer appears in its graph.
KERAS_RULES: dict[str, KerasRule] = {
    "input": KerasRule(compute_mask=None, out_dtype=lambda call, _: call.attrs["dtype"]),
    "embedding": KerasRule(compute_mask=_embedding_mask),
    "dense": KerasRule(),
    "activation": KerasRule(),
    "dropout": KerasRule(),
    "masking": KerasRule(compute_mask=_masking_mask),
    "flatten": KerasRule(compute_mask=None, out_dtype=_flatten_dtype),
    "global_max_pooling_1d": KerasRule(compute_mask=None),
    "global_average_pooling_1d": KerasRule(mask_arg=True, compute_mask=None),
    "lstm": KerasRule(mask_arg=True, compute_mask=_rnn_mask),
    "gru": KerasRule(mask_arg=True, compute_mask=_rnn_mask),
    "simple_rnn": KerasRule(mask_arg=True, compute_mask=_rnn_mask),
    "add": KerasRule(compute_mask=_or_mask),
    "concatenate": KerasRule(compute_mask=_concatenate_mask),
    "conv1d": KerasRule(compute_mask=None),
    "max_pooling_1d": KerasRule(compute_mask=None),
    "average_pooling_1d": KerasRule(compute_mask=None),
    "spatial_dropout_1d": KerasRule(),
    "batch_normalization": KerasRule(mask_arg=True),
}

#: Wrappers whose call records the wrapped layer's op, keyed by the wrapper's class name.
WRAPPER_RULES: dict[str, KerasRule] = {
    "TimeDistributed": KerasRule(mask_arg=True),
}


def rule_for(call) -> KerasRule:
    """The :class:`KerasRule` of a layer call; a :class:`GraphError` naming the layer if
    there is none (its place in Keras's order cannot be known)."""
    rule = WRAPPER_RULES.get(type(call.layer).__name__) or KERAS_RULES.get(call.op)
    if rule is None:
        raise GraphError(
            f"layer {call.layer.name!r} ({type(call.layer).__name__}, op {call.op!r}): "
            f"graphmask does not know which ops Keras 3 records for it (its compute_mask, "
            f"whether its call takes the mask), so the order of model.layers and "
            f"get_weights cannot be decided; add a KerasRule for {call.op!r} to "
            f"graphmask.layers.order.KERAS_RULES")
    return rule


def _is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind == "f"


def _who(call) -> str:
    return f"layer {call.layer.name!r} ({type(call.layer).__name__}, op {call.op!r})"


def _keras_leaves(x) -> list:
    """The leaves of a nest as Keras's ``tree.flatten`` orders them (dict keys sorted)."""
    if isinstance(x, (list, tuple)):
        return [leaf for item in x for leaf in _keras_leaves(item)]
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _keras_leaves(x[k])]
    return [x]


def _map(fn, x):
    if isinstance(x, (list, tuple)):
        return [_map(fn, item) for item in x]
    if isinstance(x, dict):
        return {k: _map(fn, v) for k, v in x.items()}
    return fn(x)


def _key(t) -> tuple[int, int]:
    return (id(t.call), t.index)


class _Builder:
    """Rebuilds Keras's operation graph from graphmask's recorded calls, in creation order.

    Besides the built-in layers' calls (one :class:`KerasRule` each), it knows the calls
    graphmask records around them: ``graphmask.ops`` functions applied outside any layer
    (a Keras operation each, taking no mask), constants (``literal``: not a Keras tensor),
    a built-in layer's explicit ``mask=`` (``attach_mask``, preceded by a bool
    ``prim.cast`` when the mask is not an op's first output), and custom layers (one node
    per call, from the layer call graphmask records on the outputs, plus the ops its
    ``compute_mask`` records). A mask graphmask recorded for a tensor stands for the mask
    Keras gives that tensor.
    """

    def __init__(self):
        self.ops = MaskOps()
        self.tensors: dict[tuple[int, int], KerasTensor | None] = {}  # None: a constant
        self.masks: dict[tuple[int, int], KerasTensor | None] = {}
        self.explicit: dict[tuple[int, int], tuple] = {}  # attach_mask -> (tensor, mask)
        self.built: set[int] = set()  # custom layer calls (id of graphmask's layer node)
        self.ambiguous: set[tuple[int, int]] = set()  # masks standing for two of Keras's

    def tensor(self, t, call) -> KerasTensor | None:
        key = _key(t)
        if key not in self.tensors and _in_custom_layer(t.call):
            self._custom(t)
        if key in self.ambiguous:
            raise GraphError(f"{_who(call)} reads the mask made by layer "
                             f"{t.call.layer.name!r}, which stands for two different masks "
                             f"in Keras 3's graph, so the order of model.layers and "
                             f"get_weights cannot be decided")
        if key not in self.tensors:
            raise GraphError(f"{_who(call)}: its input from layer {t.call.layer.name!r} "
                             f"({t.call.op}) has no counterpart in Keras 3's graph, so the "
                             f"order of model.layers and get_weights cannot be decided")
        return self.tensors[key]

    def add(self, call) -> None:
        outs = [(id(call), t.index) for t in call.outputs]
        if outs and all(k in self.tensors for k in outs):
            return  # a mask graphmask recorded for a tensor: already stands for Keras's
        if _in_custom_layer(call):
            return  # built as a whole when a later call reads the custom layer's outputs
        if call.op == "literal":
            for k in outs:
                self.tensors[k], self.masks[k] = None, None
        elif getattr(call.layer, "is_op", False):
            self._functional_op(call)
        elif call.op.startswith("mask_"):
            raise GraphError(
                f"{_who(call)}: this mask is used as a tensor, but Keras 3 gives the tensor "
                f"it belongs to a different mask (or none), so the order of model.layers "
                f"and get_weights cannot be decided")
        elif call.op == "attach_mask":
            x, m = call.inputs["x"], call.inputs["mask"]
            self.explicit[outs[0]] = (self.tensor(x, call), self.tensor(m, call))
            self.tensors[outs[0]] = self.tensor(x, call)
            self.masks[outs[0]] = self.tensor(m, call)
        elif call.op == "prim.cast" and call.attrs.get("dtype") == "bool":
            # attach_mask gives a mask that is not an op's first output its own node
            self.tensors[outs[0]] = self.tensor(call.inputs["x"], call)
            self.masks[outs[0]] = None
        else:
            self._layer(call)

    def _functional_op(self, call) -> None:
        args = [v for v in call.inputs.values() if isinstance(v, SymbolicTensor)]
        parents = [kt.node for kt in (self.tensor(t, call) for t in args) if kt is not None]
        node = _Node(_Op(call.op), parents)
        for t in call.outputs:
            k = (id(call), t.index)
            self.tensors[k], self.masks[k] = KerasTensor(node, len(t.shape), t.dtype), None

    def _layer(self, call) -> None:
        rule = rule_for(call)
        args = [v for v in call.inputs.values() if isinstance(v, SymbolicTensor)]
        keys = [(id(t.call), t.index) for t in args]
        explicit = [self.explicit.get(k) for k in keys]
        kts = [e[0] if e else self.tensor(t, call) for e, t in zip(explicit, args)]
        masks = [e[1] if e else self.masks[k] for e, k in zip(explicit, keys)]
        dtype = call.layer.dtype
        # Keras converts the arguments unless it is called on one tensor of the layer's
        # dtype and nothing else: floats of another dtype are cast (the cast is an op the
        # layer's compute_mask reads), and the mask it fills in is then not recorded on
        # the node. An explicit mask= is recorded.
        lnode = getattr(call.outputs[0], "node", None) if call.outputs else None
        kwargs = lnode.kwargs if lnode is not None and lnode.layer is call.layer else {}
        converted = len(args) != 1 or kts[0].dtype != dtype or any(explicit) or bool(kwargs)
        seen = [KerasTensor(_Node(_Op("cast"), [t.node]), t.rank, dtype)
                if _is_float(t.dtype) and t.dtype != dtype else t for t in kts]
        parents = [t.node for t in kts]
        if any(explicit):
            parents += [m.node for m in masks if m is not None]
        elif rule.mask_arg and not converted and masks[0] is not None:
            parents.append(masks[0].node)
        node = _Node(call.layer, parents)
        out_dtype = rule.out_dtype(call, [t.dtype for t in kts])
        out_masks = []
        if rule.compute_mask is not None:
            out_masks = rule.compute_mask(self.ops, call, seen, masks)
            if not isinstance(out_masks, list):
                out_masks = [out_masks]
        self._outputs(call.outputs, node, [out_dtype] * len(call.outputs), out_masks)

    def _outputs(self, outputs, node, dtypes, masks) -> None:
        for i, (t, dtype) in enumerate(zip(outputs, dtypes)):
            k = _key(t)
            self.tensors[k] = KerasTensor(node, len(t.shape), dtype)
            self.masks[k] = masks[i] if i < len(masks) else None
            recorded = getattr(t, "keras_mask", None)
            if recorded is not None and self.masks[k] is not None:
                # graphmask's mask of this tensor stands for Keras's (if used as a tensor)
                if self.tensors.setdefault(_key(recorded), self.masks[k]) is not self.masks[k]:
                    self.ambiguous.add(_key(recorded))

    # ---- custom layers ---------------------------------------------------------------
    def _custom(self, t) -> None:
        """Keras's node for the call of a custom layer that returned ``t``."""
        lnode = getattr(t, "node", None)
        if lnode is None or id(lnode) in self.built:
            owner = t.call.scope[0] if getattr(t.call, "scope", ()) else t.call.layer
            raise GraphError(
                f"layer {owner.name!r} ({type(owner).__name__}): no record of the call of "
                f"this custom layer that made the tensor, so its node in Keras 3's graph and "
                f"the order of model.layers and get_weights cannot be decided")
        self.built.add(id(lnode))
        layer = lnode.layer
        who = f"custom layer {layer.name!r} ({type(layer).__name__})"
        params = inspect.signature(layer.call).parameters
        bound = inspect.signature(layer.call).bind(*lnode.args, **lnode.kwargs).arguments
        first = next(iter(bound.values()))
        args = [x for x in _keras_leaves((list(lnode.args), lnode.kwargs))
                if isinstance(x, SymbolicTensor)]
        kts = [self.tensor(x, t.call) for x in args]
        parents = [kt.node for kt in kts if kt is not None]
        tensor_args = [v for k, v in bound.items() if k not in ("mask", "training") and any(
            isinstance(x, SymbolicTensor) for x in _keras_leaves(v))]
        keras_mask = self._keras_mask_of
        explicit = lnode.kwargs.get("mask")
        fast = (not lnode.kwargs and len(lnode.args) == 1 and kts
                and isinstance(lnode.args[0], SymbolicTensor)
                and kts[0] is not None and kts[0].dtype == layer.dtype)
        if explicit is not None:
            previous = _map(lambda m: None if m is None else self.tensor(m, t.call), explicit)
            gm_previous = explicit
        elif "mask" in params and len(tensor_args) == 1:
            previous = _map(keras_mask, tensor_args[0])
            gm_previous = _map(_recorded_mask, tensor_args[0])
            if fast and previous is not None:
                parents.append(previous.node)
        else:
            previous = _map(keras_mask, first)
            gm_previous = _map(_recorded_mask, first)
        node = _Node(layer, parents)
        outs = list(lnode.outputs)
        masks = []
        if layer.supports_masking:
            if type(layer).compute_mask is Layer.compute_mask:
                masks = _keras_leaves(previous)  # the default compute_mask
            elif getattr(layer, "_compute_mask_selects", False):
                # a compute_mask that only picks among its masks (Bidirectional) records
                # no op: run it on Keras's masks
                masks = _keras_leaves(layer.compute_mask(first, previous))
            else:
                masks = self._traced_masks(layer, who, outs, first, previous, gm_previous)
        self._outputs(outs, node, [x.dtype for x in outs], masks)

    def _keras_mask_of(self, x):
        return self.masks.get(_key(x)) if isinstance(x, SymbolicTensor) else None

    def _traced_masks(self, layer, who, outs, first, previous, gm_previous) -> list:
        """The masks an overridden ``compute_mask`` returned, rebuilt from the ops
        graphmask traced (an ``attach_mask`` per masked output)."""
        carried = [getattr(x, "keras_mask", None) for x in outs]
        if outs and all(m is not None for m in carried) and all(
                x.call.op == "identity" and x.call.layer is layer for x in outs):
            # call returned its inputs, masks and all: Keras calls no compute_mask (the
            # outputs' masks are already set) and the masks are the inputs' own
            return [self._keras_mask_of(x.call.inputs["x"]) for x in outs]
        kl, gl = _keras_leaves(previous), _keras_leaves(gm_previous)
        if len(kl) != len(gl) or any((a is None) != (b is None) for a, b in zip(kl, gl)):
            raise GraphError(f"{who}: its compute_mask was traced with other masks than "
                             f"Keras 3 would pass it, so the ops it records in Keras's graph "
                             f"and the order of model.layers and get_weights cannot be "
                             f"decided")
        attached = []
        for x in outs:
            c = x.call
            if c.op == "attach_mask" and c.layer is layer:
                m = c.inputs["mask"]
                if m.call.op == "prim.cast" and m.call.inputs["x"].index != 0:
                    m = m.call.inputs["x"]  # attach_mask's own cast (see _Builder)
                attached.append(m)
            elif getattr(x, "keras_mask", None) is not None:
                raise GraphError(f"{who}: an output already carried a mask, so graphmask did "
                                 f"not trace its compute_mask; the ops Keras 3 records for it "
                                 f"and the order of model.layers and get_weights cannot be "
                                 f"decided")
            else:
                attached.append(None)
        real = [m for m in attached if m is not None]
        if len(outs) > 1 and len(real) > 1 and len({id(m) for m in real}) == 1:
            raise GraphError(f"{who}: one mask for its {len(outs)} outputs: Keras 3 gives a "
                             f"single returned mask to the first output only, a list of them "
                             f"to each, and graphmask cannot tell which compute_mask returned")
        firsts = {_key(x): x for x in _keras_leaves(first) if isinstance(x, SymbolicTensor)}
        # a mask compute_mask received stands for the Keras mask passed in its place (one
        # graphmask mask may stand for several Keras masks elsewhere: a merge of inputs
        # sharing a mask reuses it, where each Keras merge makes its own)
        received: dict = {}
        for g, k in zip(gl, kl):
            if g is not None:
                key = _key(g)
                received[key] = k if received.get(key, k) is k else _AMBIGUOUS
        memo: dict[int, _Node] = {}
        return [None if m is None else self._mask_op(layer, who, m, firsts, memo, received)
                for m in attached]

    def _mask_op(self, layer, who, m, firsts, memo, received) -> KerasTensor | None:
        """The Keras tensor of ``m``, a value compute_mask computed from its arguments."""
        c = m.call
        if _key(m) in firsts:  # compute_mask reads the first argument after its float cast
            kt = self.tensor(m, c)
            if kt is not None and _is_float(kt.dtype) and kt.dtype != layer.dtype:
                kt = KerasTensor(_Node(_Op("cast"), [kt.node]), kt.rank, layer.dtype)
            return kt
        if _key(m) in received:
            if received[_key(m)] is _AMBIGUOUS:
                raise GraphError(f"{who}: its compute_mask reads a mask that stands for two "
                                 f"different masks of its inputs in Keras 3's graph, so the "
                                 f"order of model.layers and get_weights cannot be decided")
            return received[_key(m)]
        if not _in_custom_layer(c) or c.layer is not layer:
            return self.tensor(m, c)
        if c.op == "literal":
            return None
        if tuple(c.scope) != (layer,) or not c.op.startswith("prim."):
            raise GraphError(f"{who}: its compute_mask records {c.op!r} of layer "
                             f"{c.layer.name!r}, which has no counterpart among Keras 3's "
                             f"ops here; the order of model.layers and get_weights cannot "
                             f"be decided")
        if id(c) not in memo:
            args = [v for v in c.inputs.values() if isinstance(v, SymbolicTensor)]
            parents = [kt.node for kt in (self._mask_op(layer, who, a, firsts, memo, received)
                                          for a in args) if kt is not None]
            memo[id(c)] = _Node(_Op(c.op), parents)
        return KerasTensor(memo[id(c)], len(m.shape), m.dtype)


_AMBIGUOUS = object()  # a recorded mask standing for two Keras masks in one context


def _recorded_mask(x):
    return getattr(x, "keras_mask", None) if isinstance(x, SymbolicTensor) else None


def _in_custom_layer(call) -> bool:
    """Recorded while a custom layer's call or compute_mask was traced (or the identity
    node graphmask gives a layer call that returned an older tensor)."""
    return bool(getattr(call, "scope", ())) or call.op == "identity"


def _walk(roots):
    """Keras's depth-first walk from the outputs: the nodes in post-order (inputs first)
    and, per operation (by id), when the walk first reached it."""
    finished, post, first_seen = set(), [], {}
    for root in roots:
        if root in finished:
            continue
        first_seen.setdefault(id(root.op), len(first_seen))
        stack = [(root, iter(root.parents))]
        while stack:
            node, parents = stack[-1]
            for p in parents:
                if p not in finished:
                    first_seen.setdefault(id(p.op), len(first_seen))
                    stack.append((p, iter(p.parents)))
                    break
            else:
                stack.pop()
                finished.add(node)
                post.append(node)
    return post, first_seen


def keras_layer_order(inputs, outputs) -> list[Layer]:
    """The layers of a functional model in Keras 3's order (so ``get_weights`` lines up).

    Parameters
    ----------
    inputs, outputs : list of SymbolicTensor
        The model's inputs and outputs.

    Returns
    -------
    list of Layer
        Each layer once, deepest first (depth: the longest path to an output in Keras's
        graph of operations, mask ops included); equal depths in the order the walk from
        the outputs, in order, first reaches them. Inputs the outputs do not use come with
        depth 0, first among their depth.

    Raises
    ------
    GraphError
        Naming the layer, when its place cannot be known: a layer type without a
        :class:`KerasRule`; a custom layer whose call graphmask has no record of, or
        whose compute_mask was not traced as Keras would call it; a mask used as a
        tensor that has no single counterpart in Keras's graph.
    """
    b = _Builder()
    for call in calls_of(outputs):
        b.add(call)
    roots = [b.tensor(t, t.call).node for t in outputs]
    post, first_seen = _walk(roots)
    node_depth: dict[_Node, int] = {}
    op_depth: dict[int, int] = {}  # id(operation) -> depth
    ops = {id(node.op): node.op for node in post}
    for node in reversed(post):
        depth = max(node_depth.setdefault(node, 0), op_depth.get(id(node.op), 0))
        op_depth[id(node.op)] = node_depth[node] = depth
        for p in node.parents:
            node_depth[p] = max(depth + 1, node_depth.get(p, 0))
    for t in inputs:
        layer = t.call.layer
        if id(layer) not in op_depth:
            ops[id(layer)], op_depth[id(layer)], first_seen[id(layer)] = layer, 0, -1
    keys = sorted(op_depth, key=lambda k: (-op_depth[k], first_seen[k]))
    return [ops[k] for k in keys if isinstance(ops[k], Layer)
            and not getattr(ops[k], "is_op", False)]
