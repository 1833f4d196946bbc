"""Rebuild a graphmask model from a Keras 3 model config (``Functional`` or ``Sequential``).

Every layer call of the config (``inbound_nodes``: arguments with ``__keras_tensor__``
references ``[layer name, node index, output index]``) is replayed on graphmask layers.
Calls are replayed in dependency order, so shared layers and configs listing a layer
before the layers it reads work as in Keras. ``training=`` recorded at call time is
dropped (graphmask follows fit/predict) and automatic masks are derived again (see
``keras_config``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphmask.errors import ConfigError, FileFormatError, GraphmaskError
from graphmask.io import keras_config as kc
from graphmask.layers.base import InputLayer
from graphmask.layers.tensors import flatten

#: ``call(layer, args, kwargs) -> outputs``: how a layer call is replayed (the doctor
#: passes one that records and survives mask errors).
CallFn = Callable[[Any, list, dict], Any]


def _plain_call(layer, args, kwargs):
    return layer(*args, **kwargs)


def _bad(path, what) -> FileFormatError:
    return FileFormatError(f"{path!r}: invalid Keras model config: {what}")


def check_supported(config: dict, path) -> None:
    bad = kc.unsupported(config)
    if bad:
        listed = "; ".join(f"{name!r} ({cls})" for name, cls in bad)
        raise kc.UnsupportedLayers(
            f"{path!r}: graphmask cannot build {len(bad)} layer(s) of this Keras model: "
            f"{listed}. graphmask has: {sorted(kc.layer_classes())}")


def build_model(config: dict, path, call: CallFn | None = None):
    """The graphmask model of a Keras model config (``{"class_name", "config"}``)."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise _bad(path, f"expected {{'class_name': ..., 'config': {{...}}}}, got "
                         f"{type(config).__name__}")
    check_supported(config, path)
    return _build(config, path, call or _plain_call)


def _build(config: dict, path, call: CallFn):
    cls = config.get("class_name")
    if cls == "Sequential":
        return _sequential(config["config"], path, call)
    if cls in ("Functional", "Model"):
        return _functional(config["config"], path, call)
    raise _bad(path, f"the model class {cls!r} is not a Functional or Sequential model "
                     f"(a subclassed Keras model holds Python code graphmask cannot read)")


def _layer(entry, path, call):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise _bad(path, f"layer entry {entry!r}")
    if entry["class_name"] in kc.MODEL_CLASSES:
        return _build(entry, path, call)
    return kc.make_layer(entry, path)


def _sequential(cfg: dict, path, call: CallFn):
    from graphmask.models.sequential import Sequential
    entries = cfg.get("layers")
    if not isinstance(entries, list) or not entries:
        raise _bad(path, "a Sequential model needs a non-empty 'layers' list")
    layers = [_layer(e, path, call) for e in entries]
    if not isinstance(layers[0], InputLayer):
        shape = cfg.get("build_input_shape")
        if not isinstance(shape, list) or not shape:
            raise _bad(path, f"Sequential {cfg.get('name')!r} has no InputLayer and no "
                             f"build_input_shape: its input shape is unknown")
        from graphmask.layers.base import Input
        layers.insert(0, Input(shape=shape[1:]).call.layer)
    if call is _plain_call:
        model = Sequential([layers[0].output, *layers[1:]], name=cfg.get("name"))
        try:
            model._ensure_built()
        except GraphmaskError as e:
            raise type(e)(f"{path!r}: building Sequential {model.name!r}: {e}") from None
        return model
    from graphmask.models.functional import Model
    x = layers[0].output  # replayed call by call (the doctor's calls)
    for layer in layers[1:]:
        x = _call(call, layer, [x], {}, path)
    return Model(layers[0].output, x, name=cfg.get("name"))


def _call(call, layer, args, kwargs, path):
    try:
        return call(layer, args, kwargs)
    except GraphmaskError as e:
        raise type(e)(f"{path!r}: calling layer {layer.name!r}: {e}") from None


def _is_ref(x) -> bool:
    return isinstance(x, dict) and x.get("class_name") == "__keras_tensor__"


def _history(x, path) -> tuple[str, int, int]:
    hist = (x.get("config") or {}).get("keras_history")
    if (not isinstance(hist, list) or len(hist) != 3 or not isinstance(hist[0], str)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in hist[1:])):
        raise _bad(path, f"bad tensor reference {x!r}")
    return hist[0], hist[1], hist[2]


class _NotYet(Exception):
    """A call reads a tensor whose layer call has not been replayed yet."""


def _functional(cfg: dict, path, call: CallFn):
    from graphmask.models.functional import Model
    entries = cfg.get("layers")
    if not isinstance(entries, list):
        raise _bad(path, "'layers' must be a list")
    layers: dict[str, Any] = {}
    ops: dict[str, str] = {}
    pending: list[tuple[Any, int, dict]] = []
    tensors: dict[tuple[str, int], list] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise _bad(path, f"layer entry {entry!r}")
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        if kc.is_operation(entry):
            ops[name] = entry.get("class_name")
            continue
        layer = _layer(entry, path, call)
        if name in layers:
            raise _bad(path, f"layer names must be unique, got {name!r} twice")
        layers[name] = layer
        nodes = entry.get("inbound_nodes") or []
        if not isinstance(nodes, list):
            raise _bad(path, f"layer {name!r}: inbound_nodes must be a list")
        if isinstance(layer, InputLayer):
            tensors[(name, 0)] = [layer.output]
            continue
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or "args" not in node:
                raise _bad(path, f"layer {name!r}: node {node!r} is not a Keras 3 node (a "
                                 f"file from Keras 2 / tf.keras is not supported)")
            pending.append((layer, i, node))

    def decode(x, mask_arg=False):
        if _is_ref(x):
            name, ni, ti = _history(x, path)
            if name in ops:
                if mask_arg:
                    return None
                raise kc.UnsupportedLayers(
                    f"{path!r}: the operation {name!r} ({ops[name]}) is applied outside any "
                    f"layer; graphmask reads only layers from a Keras file (wrap it in a "
                    f"layer, e.g. a custom Layer registered with graphmask)")
            if name not in layers:
                raise _bad(path, f"tensor {[name, ni, ti]} names no layer of the model")
            outs = tensors.get((name, ni))
            if outs is None:
                raise _NotYet
            if not 0 <= ti < len(outs):
                raise _bad(path, f"tensor {[name, ni, ti]}: layer {name!r} has "
                                 f"{len(outs)} output(s)")
            return outs[ti]
        if isinstance(x, dict) and x.get("class_name") == "__tuple__":
            return tuple(decode(v, mask_arg) for v in (x.get("config") or {}).get("value", []))
        if isinstance(x, list):
            return [decode(v, mask_arg) for v in x]
        if isinstance(x, dict):
            return {k: decode(v, mask_arg) for k, v in x.items()}
        return x

    while pending:
        progress, later = False, []
        for layer, i, node in pending:
            try:
                args = decode(node.get("args"))
                kwargs = {k: decode(v, mask_arg=(k == "mask"))
                          for k, v in (node.get("kwargs") or {}).items() if k != "training"}
            except _NotYet:
                later.append((layer, i, node))
                continue
            if not isinstance(args, list):
                raise _bad(path, f"layer {layer.name!r}: node args must be a list")
            if kwargs.get("mask") is None or all(m is None for m in flatten(kwargs["mask"])):
                kwargs.pop("mask", None)
            if i != len([k for k in tensors if k[0] == layer.name]):
                later.append((layer, i, node))  # node i after node i - 1
                continue
            tensors[(layer.name, i)] = flatten(_call(call, layer, args, kwargs, path))
            progress = True
        if not progress:
            stuck = sorted({f"{layer.name!r}" for layer, _, _ in later})
            raise _bad(path, f"the calls of layer(s) {', '.join(stuck)} read tensors no call "
                             f"makes (a cycle or a missing layer)")
        pending = later

    def refs(value, what):
        if isinstance(value, list) and value and isinstance(value[0], str):
            return [value], True
        if isinstance(value, dict):
            value = list(value.values())
        if not isinstance(value, list) or not value:
            raise _bad(path, f"{what} must list [layer, node, output] references")
        return value, False

    def lookup(ref):
        if not (isinstance(ref, list) and len(ref) == 3):
            raise _bad(path, f"bad reference {ref!r}")
        outs = tensors.get((ref[0], ref[1]))
        if outs is None or not isinstance(ref[2], int) or not 0 <= ref[2] < len(outs):
            raise _bad(path, f"reference {ref!r} names no tensor of the model")
        return outs[ref[2]]

    ins, single_in = refs(cfg.get("input_layers"), "input_layers")
    outs, single_out = refs(cfg.get("output_layers"), "output_layers")
    inputs = [lookup(r) for r in ins]
    outputs = [lookup(r) for r in outs]
    try:
        return Model(inputs[0] if single_in else inputs, outputs[0] if single_out else outputs,
                     name=cfg.get("name"))
    except ConfigError as e:
        raise _bad(path, f"building the model: {e}") from None
