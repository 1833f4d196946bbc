"""Keras 3 model configs (``config.json`` of a ``.keras`` file) to graphmask and back.

The translation is generic: a Keras layer class maps to the graphmask layer of the same
name in :data:`graphmask.io.saving.LAYER_CLASSES` (the allow-list of classes a file may
name; ``Lambda`` is refused here because Keras stores its function as Python bytecode),
and its config to the keyword arguments of that class. A key graphmask's class does not
take is dropped only when it holds Keras's neutral default (:data:`NEUTRAL`: no
regularizer, ``data_format="channels_last"``, ...); any other value is an error naming
the layer, the argument and the value. The few classes whose config or weights need more
than that have one entry each in :data:`CONFIG_HOOKS` (config) and
``keras_h5.WEIGHT_PATHS`` (where Keras keeps their weights).

Masks are not read from the file: Keras records each automatic mask as a ``mask=``
argument computed by ``keras.ops`` operations (``NotEqual``, ``Any``, ``LogicalOr``...);
graphmask derives the same masks from the layers, so those operations are skipped. Any
other operation applied outside a layer is refused with its class named.
"""
from __future__ import annotations

import inspect

from graphmask.errors import ConfigError, FileFormatError, GraphmaskError
from graphmask.layers import initializers as inits
from graphmask.layers.base import KERAS_ONLY, Input, InputLayer, Layer, SymbolicTensor
from graphmask.layers.tensors import layer_nodes_of

#: Keras config keys graphmask drops when they hold this value (Keras's default: the
#: feature is off). Any other value of a key graphmask does not take is an error.
NEUTRAL: dict[str, tuple] = {
    "sparse": (False,), "ragged": (False,), "optional": (False,),
    "quantization_config": (None,), "seed": (None,), "use_cudnn": ("auto", False),
    "data_format": ("channels_last",), "keepdims": (False,), "lora_rank": (None,),
    "lora_alpha": (None,), "input_length": (None,), "autocast": (True,),
    "embeddings_regularizer": (None,), "embeddings_constraint": (None,),
    "activity_regularizer": (None,), "kernel_regularizer": (None,),
    "bias_regularizer": (None,), "kernel_constraint": (None,), "bias_constraint": (None,),
    "recurrent_regularizer": (None,), "recurrent_constraint": (None,),
    "noise_shape": (None,),
}
#: The Keras classes that are models (a model used as a layer, or the file's model).
MODEL_CLASSES = ("Functional", "Sequential", "Model")
#: Layers graphmask has but cannot take from a Keras file (and why).
REFUSED = {"Lambda": "Keras stores a Lambda's function as Python bytecode, which graphmask "
                     "never loads or runs"}


class UnsupportedLayers(FileFormatError):
    """A Keras file names layers or operations graphmask does not have."""


def where(path, name, cls) -> str:
    return f"{path!r}: layer {name!r} ({cls})"


# ---- small helpers -----------------------------------------------------------------------
def strip_ids(value):
    """A Keras config without its ``shared_object_id`` keys (bookkeeping, no meaning)."""
    if isinstance(value, dict):
        return {k: strip_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


def dtype_name(value, what: str) -> str | None:
    """The dtype of a Keras ``dtype`` entry (a name or a ``DTypePolicy`` config)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = (value.get("config") or {}).get("name")
        if isinstance(name, str) and not name.startswith("mixed_"):
            return name
    raise ConfigError(f"{what}: dtype policy {value!r} is not supported (graphmask runs one "
                      f"dtype per layer, e.g. 'float32')")


def keras_dtype(name: str) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
            "registered_name": None}


def layer_classes() -> dict[str, type]:
    from graphmask.io.saving import LAYER_CLASSES
    return {k: v for k, v in LAYER_CLASSES.items() if k not in REFUSED}


def _accepted(cls) -> tuple[set, bool]:
    """The keyword arguments ``cls.__init__`` takes, and whether they reach ``Layer``."""
    names, var_kw = set(), False
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__ or klass is object:
            continue
        params = inspect.signature(klass.__dict__["__init__"]).parameters
        names |= {p for p in params if p != "self"}
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if not var_kw:
            break
    if var_kw or Layer in cls.__mro__:
        names |= {"name", "trainable", "dtype", *KERAS_ONLY}
    return names, var_kw


# ---- Keras -> graphmask ------------------------------------------------------------------
def gm_kwargs(cls_name: str, cls, kcfg: dict, what: str) -> dict:
    """The graphmask keyword arguments of a Keras layer config (checked, generic)."""
    accepted, var_kw = _accepted(cls)
    out = {}
    kcfg = strip_ids(kcfg)
    hook = CONFIG_HOOKS.get(cls_name)
    if hook:
        kcfg = hook[0](dict(kcfg), what)
    for key, value in kcfg.items():
        if key == "dtype":
            value = dtype_name(value, what)
            if value is not None:
                out["dtype"] = value
        elif key.endswith("_initializer") and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k in ("class_name", "config")}
        elif key in accepted:
            out[key] = value
        elif key in NEUTRAL and any(value == v and type(value) is type(v)
                                    for v in NEUTRAL[key]):
            continue
        elif var_kw and key not in NEUTRAL:
            out[key] = value  # the class's **kwargs may take it; make_layer names it if not
        elif key in NEUTRAL or value is not None:
            raise ConfigError(f"{what}: argument {key}={value!r} is not supported by "
                              f"graphmask's {cls_name}")
    return out


def _input_from_keras(cfg: dict, what: str) -> dict:
    shape = cfg.pop("batch_shape", None)
    if shape is None:
        shape = [cfg.pop("batch_size", None), *(cfg.pop("shape", None) or [])]
    if not isinstance(shape, list) or not shape:
        raise ConfigError(f"{what}: batch_shape must be a list, got {shape!r}")
    return {"shape": shape[1:], "batch_size": shape[0], "dtype": cfg.get("dtype", "float32"),
            "name": cfg.get("name")}


def _wrapped_from_keras(key: str):
    def convert(cfg: dict, what: str) -> dict:
        inner = cfg.get(key)
        if not isinstance(inner, dict) or not isinstance(inner.get("class_name"), str):
            raise ConfigError(f"{what}: {key} must be a layer config, got {inner!r}")
        name = inner["class_name"]
        classes = layer_classes()
        if name not in classes:
            raise ConfigError(f"{what}: wraps a {name}, which graphmask does not have")
        icfg = inner.get("config") or {}
        sub = f"layer {icfg.get('name')!r} ({name}) inside {what}"
        cfg[key] = {"class_name": name, "config": gm_kwargs(name, classes[name], icfg, sub)}
        return cfg
    return convert


def _input_to_keras(cfg: dict) -> dict:
    return {"batch_shape": [cfg.get("batch_size"), *cfg["shape"]], "dtype": cfg["dtype"],
            "sparse": False, "ragged": False, "name": cfg["name"]}


def _wrapped_to_keras(key: str):
    def convert(cfg: dict, layer) -> dict:
        cfg[key] = layer_entry(getattr(layer, key))
        return cfg
    return convert


def _cells_from_keras(cfg: dict, what: str) -> dict:
    cells = cfg.get("cells")
    if not isinstance(cells, list):
        raise ConfigError(f"{what}: cells must be a list of cell configs, got {cells!r}")
    cfg["cells"] = [_wrapped_from_keras("cell")({"cell": c}, what)["cell"] for c in cells]
    return cfg


def _cells_to_keras(cfg: dict, layer) -> dict:
    cfg["cells"] = [layer_entry(c) for c in layer.cells]
    return cfg


#: class name -> (Keras config -> graphmask kwargs, graphmask config -> Keras config)
CONFIG_HOOKS: dict[str, tuple] = {
    "RNN": (_wrapped_from_keras("cell"), _wrapped_to_keras("cell")),
    "StackedRNNCells": (_cells_from_keras, _cells_to_keras),
    "InputLayer": (_input_from_keras, lambda cfg, layer: _input_to_keras(cfg)),
    "TimeDistributed": (_wrapped_from_keras("layer"), _wrapped_to_keras("layer")),
    "Bidirectional": (_wrapped_from_keras("layer"), _wrapped_to_keras("layer")),
}


def is_operation(entry: dict) -> bool:
    """Whether a functional config entry is a ``keras.ops`` operation, not a layer."""
    module = entry.get("module") or ""
    return module.startswith(("keras.src.ops", "keras.ops"))


def make_layer(entry: dict, path) -> Layer:
    """A graphmask layer from one Keras layer entry (not a model)."""
    name = entry["class_name"]
    cls = layer_classes()[name]
    kcfg = entry.get("config")
    what = where(path, (kcfg or {}).get("name"), name)
    if not isinstance(kcfg, dict):
        raise FileFormatError(f"{what}: config must be an object, got {kcfg!r}")
    kwargs = gm_kwargs(name, cls, kcfg, what)
    accepted, _ = _accepted(cls)
    extra = {k: v for k, v in kwargs.items() if k not in accepted}
    try:
        if cls is InputLayer:
            return Input(**kwargs).call.layer
        return cls.from_config(kwargs)
    except (GraphmaskError, TypeError, ValueError) as e:
        if extra:
            listed = ", ".join(f"{k}={v!r}" for k, v in extra.items())
            raise ConfigError(f"{what}: argument(s) {listed} not supported by graphmask's "
                              f"{name} ({e})") from None
        if isinstance(e, GraphmaskError):
            raise type(e)(f"{what}: {e}") from None
        raise ConfigError(f"{what}: {e}") from None


def unsupported(config: dict) -> list[tuple[str, str]]:
    """Every ``(name, class)`` of a model config that graphmask cannot build, nested
    models included (so one error can list them all)."""
    classes = layer_classes()
    bad: list[tuple[str, str]] = []
    cfg = config.get("config") if isinstance(config, dict) else None
    entries = cfg.get("layers") if isinstance(cfg, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        cls = entry.get("class_name")
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        if cls in MODEL_CLASSES:
            bad += unsupported(entry)
        elif is_operation(entry):
            continue  # judged by use: masks are skipped, data operations refused later
        elif cls not in classes:
            bad.append((name, f"{cls}: {REFUSED[cls]}" if cls in REFUSED else cls))
        else:
            for key in ("layer",):  # wrappers name their inner layer
                inner = (entry.get("config") or {}).get(key)
                if isinstance(inner, dict) and inner.get("class_name") not in classes:
                    bad.append(((inner.get("config") or {}).get("name"),
                                str(inner.get("class_name"))))
    return bad


# ---- graphmask -> Keras ------------------------------------------------------------------
def keras_initializer(value):
    if isinstance(value, dict):
        return {"module": "keras.initializers", "class_name": value["class_name"],
                "config": value.get("config", {}), "registered_name": None}
    if inits.is_custom(value):
        return "zeros"  # a user's function: the saved weights replace what it draws
    return value


def layer_config(layer) -> dict:
    """The Keras config of a graphmask built-in layer."""
    name = type(layer).__name__
    if name in REFUSED or layer_classes().get(name) is not type(layer):
        why = REFUSED.get(name, "a layer Keras does not know (save it as .gmz)")
        raise ConfigError(f"save: layer {layer.name!r} ({name}) cannot be written to a Keras "
                          f"file: {why}")
    cfg = dict(layer.get_config())
    for key, value in list(cfg.items()):
        if key == "dtype":
            cfg[key] = keras_dtype(value)
        elif key.endswith("_initializer"):
            cfg[key] = keras_initializer(value)
    hook = CONFIG_HOOKS.get(name)
    return hook[1](cfg, layer) if hook else cfg


def layer_entry(layer) -> dict:
    from graphmask.models.functional import Model
    if isinstance(layer, Model) and not isinstance(layer, InputLayer):
        return model_config(layer)
    return {"module": "keras.layers", "class_name": type(layer).__name__,
            "config": layer_config(layer), "registered_name": None}


def _tensor(t: SymbolicTensor, index: dict) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype,
                       "keras_history": [t.node.layer.name, index[id(t.node)],
                                         t.node.outputs.index(t)]}}


def _encode(x, index, what):
    if isinstance(x, SymbolicTensor):
        return _tensor(x, index)
    if isinstance(x, (list, tuple)):
        return [_encode(v, index, what) for v in x]
    if isinstance(x, dict):
        return {str(k): _encode(v, index, what) for k, v in x.items()}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise ConfigError(f"save: {what} passes {type(x).__name__} {x!r}, which a Keras file "
                      f"cannot hold")


def _refs(tensors, index, single: bool):
    refs = [_tensor(t, index)["config"]["keras_history"] for t in tensors]
    return refs[0] if single else refs


def model_config(model) -> dict:
    """The Keras config (``Functional`` or ``Sequential``) of a graphmask model."""
    from graphmask.models.sequential import Sequential
    if isinstance(model, Sequential):
        model._ensure_built()  # an unbuilt Sequential says why it cannot be built yet
    nodes = layer_nodes_of(model.outputs)
    index: dict[int, int] = {}
    counts: dict[int, int] = {}
    for n in nodes:
        index[id(n)] = counts.get(id(n.layer), 0)
        counts[id(n.layer)] = index[id(n)] + 1
    if isinstance(model, Sequential):
        first = model.inputs[0].call.layer
        layers = [{"module": "keras.layers", "class_name": "InputLayer",
                   "config": _input_to_keras(first.get_config()), "registered_name": None}]
        layers += [layer_entry(layer) for layer in model._stack]
        return {"module": "keras", "class_name": "Sequential", "registered_name": None,
                "config": {"name": model.name, "trainable": model.trainable,
                           "dtype": keras_dtype("float32"), "layers": layers,
                           "build_input_shape": [None, *model.inputs[0].shape[1:]]},
                "build_config": {"input_shape": [None, *model.inputs[0].shape[1:]]}}
    entries, seen = [], []
    for n in nodes:
        if any(n.layer is s for s in seen):
            continue
        seen.append(n.layer)
        entry = layer_entry(n.layer)
        calls = [m for m in nodes if m.layer is n.layer and not isinstance(m.layer, InputLayer)]
        what = f"the call of layer {n.layer.name!r}"
        entry["name"] = n.layer.name
        entry["inbound_nodes"] = [{"args": _encode(list(m.args), index, what),
                                   "kwargs": _encode(dict(m.kwargs), index, what)}
                                  for m in calls]
        entries.append(entry)
    names = [e["name"] for e in entries]
    dup = sorted({nm for nm in names if names.count(nm) > 1})
    if dup:
        raise ConfigError(f"save: layer names must be unique, found {dup} more than once")
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "registered_name": "Functional",
            "config": {"name": model.name, "trainable": model.trainable, "layers": entries,
                       "input_layers": _refs(model.inputs, index, model._single_input),
                       "output_layers": _refs(model.outputs, index, model._single_output)},
            "build_config": {"input_shape": None}}


__all__ = ["CONFIG_HOOKS", "MODEL_CLASSES", "NEUTRAL", "REFUSED", "UnsupportedLayers",
           "gm_kwargs", "is_operation", "layer_config", "make_layer", "model_config",
           "unsupported"]
