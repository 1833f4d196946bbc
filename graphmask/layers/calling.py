"""What happens when a layer is called: Keras 3's ``Layer.__call__``, step by step.

1. NumPy arrays and no symbolic tensor: compute at once (``eager.py``).
2. Build the layer on first call (built-in layers get a ``Spec``, custom layers Keras's
   shape tuples).
3. Hand over masks as Keras 3 does: a ``call`` with a ``mask`` parameter and one tensor
   argument receives that argument's mask; a ``call`` with several tensor arguments
   receives ``{arg}_mask`` for each it declares; an explicit ``mask=`` wins.
4. graphmask's policy: a mask reaching a layer that neither takes it (no ``mask``
   parameter) nor supports masking is a :class:`MaskError` naming both layers (Keras 3
   only warns and drops it). Override ``compute_mask`` to return ``None`` to drop a mask
   on purpose.
5. Trace ``call`` with the layer on the scope stack: everything it records is part of
   the layer's group.
6. Output masks as Keras's ``_set_mask_metadata``: outputs that already carry a mask keep
   it; otherwise, if the layer supports masking, ``compute_mask(inputs, previous_mask)``
   is attached to them (an ``attach_mask`` node).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from graphmask.errors import ConfigError, GraphmaskError, MaskError
from graphmask.layers.tensors import (
    Group,
    LayerNode,
    SymbolicTensor,
    Variable,
    attach_mask,
    current_training,
    flatten,
    in_eager_trace,
    keeps_records,
    map_structure,
    mask_creator,
    next_order,
    quiet_trace,
    record,
    tracing,
    training_context,
    training_pinned,
)


@dataclass(eq=False)
class LayerCall:
    """One call of a custom layer for ``layer.input`` / ``layer.output``: its tensor
    arguments and its outputs."""

    layer: object
    inputs: dict
    outputs: list = field(default_factory=list)




def _mask_of(x):
    return x.keras_mask if isinstance(x, SymbolicTensor) else None


def _who(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _is_symbolic_leaf(x) -> bool:
    return isinstance(x, (SymbolicTensor, Variable))


def call_layer(layer, args: tuple, kwargs: dict):
    """``layer(*args, **kwargs)``: trace, or compute at once on NumPy arrays."""
    leaves = flatten((list(args), kwargs))
    if not args and not any(isinstance(t, (SymbolicTensor, np.ndarray)) for t in leaves):
        raise ConfigError(f"{_who(layer)}: call it on a tensor, e.g. layer(x)")
    if not any(isinstance(t, SymbolicTensor) for t in leaves):
        from graphmask.layers.eager import eager_call
        return eager_call(layer, args, kwargs)
    if layer._builtin:
        out = _call_builtin(layer, args, kwargs)
    else:
        out = _call_custom(layer, args, kwargs)
    return _record_node(layer, args, kwargs, out)


def _fresh_outputs(layer, out, start: int):
    """An output that is a tensor from before the call (``call`` returned its input) gets
    its own identity node, as each Keras layer call makes new tensors."""
    fresh = {}
    for t in flatten(out):
        if isinstance(t, SymbolicTensor) and t.call.order < start and id(t) not in fresh:
            copy = record(layer, "identity", {}, {"x": t}, keep=False)
            copy.keras_mask = t.keras_mask
            fresh[id(t)] = copy
    return map_structure(lambda t: fresh.get(id(t), t), out) if fresh else out


def _record_node(layer, args, kwargs, out):
    """Mark each output with this layer call (Keras's ``_keras_history``)."""
    node = LayerNode(layer, tuple(args), dict(kwargs), flatten(out))
    for t in node.outputs:
        t.node = node
    if keeps_records():
        layer._nodes.append(node)
    return out


def _check_mask_arg(layer, mask):
    """An explicit ``mask=`` must be a symbolic bool tensor (or a structure of them)."""
    for m in flatten(mask):
        if m is None:
            continue
        if not isinstance(m, SymbolicTensor):
            raise MaskError(f"{_who(layer)}: mask= must be a symbolic bool tensor (or None) "
                            f"while tracing, got {type(m).__name__}")
        if m.dtype != "bool":
            raise MaskError(f"{_who(layer)}: mask= must have dtype bool, got {m.dtype}")
    return mask


# ---- built-in layers -------------------------------------------------------------------
def _call_builtin(layer, args, kwargs):
    kwargs = dict(kwargs)
    mask = kwargs.pop("mask", None)
    training = kwargs.pop("training", None)
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in layer._call_kwargs}
    forced = _forced_training(layer, training)
    if forced is not None:
        extra["training"] = forced
    if kwargs or len(args) != 1:
        bad = sorted(kwargs) or [f"{len(args)} positional arguments"]
        raise ConfigError(f"{_who(layer)}: unexpected call argument(s) {bad}")
    inputs = args[0]
    tensors = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    for t in tensors:
        if not isinstance(t, SymbolicTensor):
            raise ConfigError(f"layer {layer.name!r}: expected a symbolic tensor (from Input "
                              f"or another layer), got {type(t).__name__}")
    if mask is not None:
        _check_mask_arg(layer, mask)
        masks = mask if isinstance(inputs, (list, tuple)) else [mask]
        if not isinstance(masks, (list, tuple)) or len(masks) != len(tensors):
            raise MaskError(f"{_who(layer)}: mask= needs one mask (or None) per input "
                            f"tensor ({len(tensors)}), got {mask!r}")
        tensors = [t if m is None else attach_mask(layer, t, m) for t, m in zip(tensors, masks)]
        inputs = type(inputs)(tensors) if isinstance(inputs, (list, tuple)) else tensors[0]
    if not layer.built:
        layer.build(tensors[0].spec if len(tensors) == 1 and not isinstance(inputs, (list, tuple))
                    else [t.spec for t in tensors])
        layer.built = True
    return layer.call(inputs, **extra)


def _forced_training(layer, training):
    """The ``training`` a built-in layer's op must use regardless of the plan, or None.

    A built-in op such as dropout follows the plan (on in ``fit``, off in ``predict`` and
    ``evaluate``). That is what ``training`` means inside a call graphmask traces for the
    train or the inference graph; a value the user gave (``Dropout(0.5)(x,
    training=True)``, or ``training=True`` given to an enclosing custom layer) pins the
    op, as in Keras.
    """
    if training is None or not layer._training_sensitive:
        return None
    if not isinstance(training, (bool, np.bool_)):
        raise ConfigError(f"{_who(layer)}: training must be True, False or None, got "
                          f"{training!r}")
    if current_training() is not None and bool(training) == current_training() \
            and not training_pinned():
        return None  # the value graphmask traces this graph with: the plan's
    if "training" not in inspect.signature(layer.call).parameters:
        raise ConfigError(f"{_who(layer)}: training={training!r} at call time is not "
                          f"supported by this layer: it is active while fitting and off in "
                          f"predict/evaluate")
    return bool(training)


# ---- custom layers ---------------------------------------------------------------------
def _signature(layer) -> inspect.Signature:
    try:
        return inspect.signature(layer.call)
    except (TypeError, ValueError):
        raise ConfigError(f"{_who(layer)}: call() has no inspectable signature") from None


def _call_custom(layer, args, kwargs):
    sig = _signature(layer)
    params = sig.parameters
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise ConfigError(f"{_who(layer)}: the arguments do not fit call{sig}: {e}") from None
    arguments = bound.arguments
    tensor_args = {k: v for k, v in arguments.items()
                   if k not in ("mask", "training") and not k.endswith("_mask")
                   and any(isinstance(t, SymbolicTensor) for t in flatten(v))}
    # Keras's first_arg: the first positional argument, else the first tensor argument
    first_arg = args[0] if args else next(iter(tensor_args.values()), None)
    if first_arg is None:
        raise ConfigError(f"{_who(layer)}: call it on a tensor, e.g. layer(x)")
    # 3. mask hand-over
    if arguments.get("mask") is not None:
        _check_mask_arg(layer, arguments["mask"])
    if len(tensor_args) == 1:
        if "mask" in params and arguments.get("mask") is None:
            only = next(iter(tensor_args.values()))
            arguments["mask"] = map_structure(_mask_of, only)
    else:
        for k, v in tensor_args.items():
            if f"{k}_mask" in params and arguments.get(f"{k}_mask") is None:
                arguments[f"{k}_mask"] = map_structure(_mask_of, v)
    if arguments.get("mask") is not None:
        previous_mask = arguments["mask"]
    else:
        previous_mask = map_structure(_mask_of, first_arg)
    # 4. the mask policy
    takes = "mask" in params or any(f"{k}_mask" in params for k in tensor_args)
    arriving = [m for m in flatten(previous_mask) if m is not None]
    if arriving and not takes and not layer.supports_masking:
        raise MaskError(
            f"the mask created by {mask_creator(arriving[0])} reaches {_who(layer)}, whose "
            f"call() takes no mask and which does not support masking. Keras 3 would only "
            f"warn and drop it. Give call() a `mask=None` parameter to use it, set "
            f"`self.supports_masking = True` to pass it on, or override compute_mask() to "
            f"return None to drop it on purpose.")
    group = Group(next_order(), layer, takes_mask=takes,
                  mask_in=[m for m in flatten(previous_mask)])
    # Keras 3's training: explicit, else the enclosing call's, else (eager) the default;
    # a symbolic call with none of these is traced for both values (see _trace_both)
    # a given value equal to the enclosing call's (the Keras idiom `self.inner(x,
    # training=training)`) is that call's, pinned only if it was
    given = arguments.get("training")
    pinned = given is not None and (current_training() is None or training_pinned()
                                    or bool(given) != current_training())
    both = False
    if "training" in params and arguments.get("training") is None:
        if current_training() is not None:
            arguments["training"], pinned = current_training(), training_pinned()
        elif in_eager_trace():
            default = params["training"].default
            arguments["training"] = None if default is inspect.Parameter.empty else default
        else:
            both = True
    # 2. build
    if not layer.built and hasattr(layer, "_build_from_tensors"):  # a Sequential
        layer._build_from_tensors(first_arg)
    if not layer.built:
        shapes = map_structure(lambda t: tuple(t.shape) if _is_symbolic_leaf(t) else t, first_arg)
        try:
            with tracing(layer, group):
                layer.build(shapes)
        except GraphmaskError:
            raise
        except Exception as e:
            raise ConfigError(f"{_who(layer)}: build({shapes}) raised "
                              f"{type(e).__name__}: {e}") from e
        layer.built = True
    # 5. trace call
    if both:
        out = _trace_both(layer, bound, group)
    else:
        out = _trace(layer, bound, group, arguments.get("training"), pinned)[0]
    flat = flatten(out)
    # 6. output masks
    already = all(t.keras_mask is not None for t in flat)
    if layer.supports_masking and not already:
        out = _set_output_masks(layer, first_arg, out, previous_mask, group)
    group.outputs = flatten(out)
    group.mask_out = [t.keras_mask for t in group.outputs]
    group.how = _how(layer, takes, already, group)
    if keeps_records():
        layer._calls.append(LayerCall(layer, dict(tensor_args), flatten(out)))
    return out


def _trace(layer, bound, group, training, pinned=False):
    """Run ``call`` once with the layer on the scope stack: its outputs and the number
    every call it recorded is at least (to tell its calls from earlier ones)."""
    if "training" in bound.signature.parameters:
        bound.arguments["training"] = training
    start = next_order()
    try:
        with tracing(layer, group), training_context(training, pinned and training is not None):
            out = _fresh_outputs(layer, layer.call(*bound.args, **bound.kwargs), start)
    except GraphmaskError as e:
        if f"{layer.name!r}" in str(e):
            raise
        raise type(e)(f"in call() of {_who(layer)}: {e}") from e
    except Exception as e:
        raise ConfigError(f"{_who(layer)}: call() raised {type(e).__name__}: {e}") from e
    flat = flatten(out)
    bad = [type(t).__name__ for t in flat if not isinstance(t, SymbolicTensor)]
    if not flat or bad:
        raise ConfigError(f"{_who(layer)}: call() must return symbolic tensors (made with "
                          f"graphmask.ops or layers), got {bad or out!r}")
    return out, start


def _trace_both(layer, bound, group):
    """Keras runs ``call`` with ``training=True`` in ``fit`` and ``False`` in ``predict``
    and ``evaluate``; a symbolic call is traced both ways. Traces that record the same
    calls are one (the usual case: ``training`` only reaches built-in layers, whose ops
    follow the plan); otherwise each output is a ``training_switch`` of the two, which
    the ``branches`` pass resolves for the train and the inference graph."""
    off, start_off = _trace(layer, bound, group, False)
    with quiet_trace():
        on, start_on = _trace(layer, bound, group, True)
    flat_off, flat_on = flatten(off), flatten(on)
    if len(flat_off) != len(flat_on):
        raise ConfigError(f"{_who(layer)}: call() returns {len(flat_on)} tensor(s) with "
                          f"training=True but {len(flat_off)} with training=False")
    if _same_trace(flat_off, start_off, flat_on, start_on):
        return off
    switched = {}
    with tracing(layer, group):
        for a, b in zip(flat_on, flat_off):
            key, ma, mb = id(b), a.keras_mask, b.keras_mask
            if (ma is None) != (mb is None):
                # masked one way only (e.g. `x * 3.0 if training else x`): no mask either
                # way; compute_mask (supports_masking) gives the output its mask after
                a, b = (_unmasked(layer, t) for t in (a, b))
                ma = mb = None
            s = record(layer, "training_switch", {}, {"on_true": a, "on_false": b}, keep=False)
            s.keras_mask = ma if ma is mb else record(
                layer, "training_switch", {}, {"on_true": ma, "on_false": mb}, keep=False)
            switched[key] = s
    return map_structure(lambda t: switched.get(id(t), t), off)


def _unmasked(layer, t):
    """``t`` without its mask (a same-dtype cast: primitives carry no mask)."""
    if t.keras_mask is None:
        return t
    return record(layer, "prim.cast", {"dtype": t.dtype}, {"x": t}, keep=False)


def _same_trace(outs_a, start_a, outs_b, start_b) -> bool:
    """Whether two traces recorded the same calls: same ops, attrs and wiring, reading
    the same tensors from outside the trace, with outputs (and their masks) at the same
    places."""
    def inner(outs, start):
        seen, stack = {}, list(outs) + [t.keras_mask for t in outs if t.keras_mask is not None]
        while stack:
            c = stack.pop().call
            if c.order < start or id(c) in seen:
                continue
            seen[id(c)] = c
            stack.extend(v for v in c.inputs.values() if isinstance(v, SymbolicTensor))
        return sorted(seen.values(), key=lambda c: c.order)

    calls_a, calls_b = inner(outs_a, start_a), inner(outs_b, start_b)
    if len(calls_a) != len(calls_b):
        return False
    pos_a = {id(c): i for i, c in enumerate(calls_a)}
    pos_b = {id(c): i for i, c in enumerate(calls_b)}

    def where(v, pos):
        if isinstance(v, SymbolicTensor) and id(v.call) in pos:
            return ("inner", pos[id(v.call)], v.index)
        return ("outer", id(v))

    for ca, cb in zip(calls_a, calls_b):
        if ca.op != cb.op or not _same_attrs(ca.attrs, cb.attrs) \
                or list(ca.inputs) != list(cb.inputs):
            return False
        if any(where(ca.inputs[p], pos_a) != where(cb.inputs[p], pos_b) for p in ca.inputs):
            return False
    for ta, tb in zip(outs_a, outs_b):
        if where(ta, pos_a) != where(tb, pos_b):
            return False
        ma, mb = ta.keras_mask, tb.keras_mask
        if (ma is None) != (mb is None):
            return False
        if ma is not None and where(ma, pos_a) != where(mb, pos_b):
            return False
    return True


def _same_attrs(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same_attrs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_attrs(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b) and np.asarray(a).dtype == np.asarray(b).dtype
    return type(a) is type(b) and a == b


def _how(layer, takes: bool, already: bool, group) -> str:
    """How a custom layer call treated masks, in words (for summary and explain_mask)."""
    received = any(m is not None for m in group.mask_in)
    carried = any(m is not None for m in group.mask_out)
    parts = []
    if received:
        parts.append("read by call()" if takes else "not read by call()")
    if not carried:
        parts.append("no output mask")
    elif already:
        parts.append("output mask from the layers inside")
    elif any(m is not None and all(m is not i for i in group.mask_in)
             for m in group.mask_out):
        parts.append("output mask computed by compute_mask()")
    else:
        parts.append("mask passed on (supports_masking)")
    return ", ".join(parts)


def _set_output_masks(layer, inputs, out, previous_mask, group=None):
    try:
        with tracing(layer, group):
            masks = layer.compute_mask(inputs, previous_mask)
    except GraphmaskError:
        raise
    except Exception as e:
        raise ConfigError(f"{_who(layer)}: compute_mask() raised {type(e).__name__}: "
                          f"{e}") from e
    if masks is None:
        return out
    # as Keras's _set_mask_metadata: masks pair with outputs in order (zip), so one mask
    # for several outputs goes to the first, and surplus masks are ignored
    flat_out, flat_masks = flatten(out), flatten(masks)
    replaced = {}
    with tracing(layer, group):
        for t, m in zip(flat_out, flat_masks):
            if t.keras_mask is None and m is not None:
                replaced[id(t)] = attach_mask(layer, t, m)
    return map_structure(lambda t: replaced.get(id(t), t), out)
