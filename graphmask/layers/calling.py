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
    flatten,
    in_eager_trace,
    map_structure,
    mask_creator,
    next_order,
    record,
    tracing,
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
    if not in_eager_trace():
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
    if training is not None and layer._training_sensitive:
        raise ConfigError(f"{_who(layer)}: training={training!r} at call time is not supported: "
                          f"it is active while fitting and off in predict/evaluate")
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in layer._call_kwargs}
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
    if "training" in params and arguments.get("training") is None:
        default = params["training"].default
        arguments["training"] = None if default is inspect.Parameter.empty else default
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
    start = next_order()
    try:
        with tracing(layer, group):
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
    # 6. output masks
    already = all(t.keras_mask is not None for t in flat)
    if layer.supports_masking and not already:
        out = _set_output_masks(layer, first_arg, out, previous_mask, group)
    group.outputs = flatten(out)
    group.mask_out = [t.keras_mask for t in group.outputs]
    group.how = _how(layer, takes, already, group)
    if not in_eager_trace():
        layer._calls.append(LayerCall(layer, dict(tensor_args), flatten(out)))
    return out


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
