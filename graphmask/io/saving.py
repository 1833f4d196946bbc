"""Saving and loading models: one zip file, JSON and ``.npz`` inside, never pickle.

A model file (``model.save(path)``, suggested suffix ``.gmz``) is a zip archive holding

* ``config.json`` -- the format name and version, the model config (each layer's class
  name and ``get_config()``, the call graph as connectivity: which layer was called on
  which tensors, each tensor named by ``[layer name, call index, output index]``; the
  model's inputs and outputs) and the compile config (losses, metrics, loss weights,
  optimizer config), plus the name, shape and dtype of every weight and optimizer array;
* ``weights.npz`` -- the weights, in ``model.get_weights()`` order;
* ``optimizer.npz`` -- the optimizer state (``optimizer.get_state()``: the iteration
  count, then every slot of every weight), present when the model was compiled.

Loading never executes anything from the file: the JSON is plain data, layer classes are
looked up in an explicit allow-list of graphmask layers (never imported by name), and
arrays are read with ``np.load(..., allow_pickle=False)``. Anything unexpected (not a
zip, bad JSON, a missing member, arrays of the wrong shape, another program's file)
raises :class:`graphmask.errors.FileFormatError`. So does a file whose members would
inflate past :data:`MAX_MEMBER_BYTES` each or :data:`MAX_TOTAL_BYTES` together (a zip
bomb): the sizes the zip declares are checked before anything is read, and every read is
bounded, so a header that lies cannot make graphmask read more.

A ``.keras`` name (``save``, ``load_model``) or a ``.weights.h5`` name (``save_weights``,
``load_weights``) means Keras 3's own format instead, read and written by
:mod:`graphmask.io.keras_format` (needs h5py). Other ``.h5`` and ``.hdf5`` names are
refused when saving: those are Keras 2's legacy formats.

Files are written atomically: to a temporary file in the destination folder, then moved
over the destination with ``os.replace``, so a crash mid-write leaves the old file intact.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from graphmask import layers as L
from graphmask.errors import (
    ConfigError,
    FileFormatError,
    GraphmaskError,
    InputTypeError,
    ShapeError,
)
from graphmask.layers.base import InputLayer, SymbolicTensor
from graphmask.layers.initializers import is_custom
from graphmask.layers.tensors import flatten, layer_nodes_of
from graphmask.training import losses as losses_mod
from graphmask.training import optimizers as optimizers_mod
from graphmask.utils import rng

__all__ = ["FORMAT", "LAYER_CLASSES", "VERSION", "ModelFileExistsError", "get_registered_name",
           "load_model", "load_weights", "read_config", "register_keras_serializable",
           "register_serializable", "save_model", "save_weights"]

FORMAT = "graphmask.model"
WEIGHTS_FORMAT = "graphmask.weights"
VERSION = 2  # 2: layer calls with their argument structure (custom layers)

#: The only classes a model file may name. Nothing else is ever instantiated on load.
LAYER_CLASSES: dict[str, type] = {c.__name__: c for c in (
    InputLayer, L.Embedding, L.Dense, L.LSTM, L.Masking, L.Flatten, L.Activation,
    L.Dropout, L.GlobalAveragePooling1D, L.GlobalMaxPooling1D, L.TimeDistributed, L.Add,
    L.GRU, L.SimpleRNN, L.RNN, L.LSTMCell, L.GRUCell, L.SimpleRNNCell, L.StackedRNNCells,
    L.Concatenate, L.Lambda, L.LayerNormalization, L.Subtract, L.Multiply, L.Average,
    L.Maximum, L.Minimum, L.Dot, L.RepeatVector, L.Reshape, L.Permute,
    L.Conv1D, L.MaxPooling1D, L.AveragePooling1D, L.SpatialDropout1D, L.BatchNormalization,
    L.Bidirectional,
    L.EinsumDense, L.MultiHeadAttention, L.Attention, L.AdditiveAttention)}

_MAX_CONFIG_BYTES = 64 * 2**20
#: Largest uncompressed size of one member of a model file (``weights.npz`` holds all
#: the weights): raise it to load a bigger model.
MAX_MEMBER_BYTES = 2 << 30
#: Largest uncompressed size of all the members of a model file together.
MAX_TOTAL_BYTES = 4 << 30
#: Names Keras gives its own files (``model.keras``, ``x.weights.h5``, legacy HDF5).
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


class ModelFileExistsError(GraphmaskError, FileExistsError):
    """``save(..., overwrite=False)`` found a file already at the destination."""


# ---- writing ------------------------------------------------------------------------------
# ---- custom classes --------------------------------------------------------------------
_REGISTRY: dict[str, type] = {}


def register_serializable(package: str = "Custom", name: str | None = None):
    """Class decorator: let :func:`load_model` rebuild this custom layer by name, as
    ``keras.saving.register_keras_serializable``. The class must rebuild itself from
    ``cls.from_config(layer.get_config())`` (override ``get_config`` to add the
    arguments of ``__init__``)."""
    if not isinstance(package, str) or not package or ">" in package:
        raise ConfigError(f"register_serializable: package must be a non-empty str without "
                          f"'>', got {package!r}")

    def decorate(cls):
        key = f"{package}>{name or cls.__name__}"
        known = _REGISTRY.get(key)
        if known is not None and known is not cls and \
                f"{known.__module__}.{known.__qualname__}" != \
                f"{cls.__module__}.{cls.__qualname__}":
            raise ConfigError(f"register_serializable: {key!r} is already registered for "
                              f"{known.__module__}.{known.__qualname__}")
        _REGISTRY[key] = cls
        cls._registered_name = key
        return cls
    return decorate


register_keras_serializable = register_serializable


def get_registered_name(cls) -> str:
    """``package>Name`` for a registered class, else the class name."""
    return cls.__dict__.get("_registered_name", cls.__name__)


def _class_entry(layer) -> dict:
    from graphmask.models.functional import Model
    if isinstance(layer, Model) and not isinstance(layer, InputLayer):
        return {"class_name": "Functional", "config": _model_config(layer)}
    cls = type(layer)
    entry = {"class_name": cls.__name__, "config": layer.get_config()}
    if LAYER_CLASSES.get(cls.__name__) is not cls:
        entry["registered_name"] = get_registered_name(cls)
    try:
        json.dumps(entry["config"], allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"save: the config of layer {layer.name!r} ({cls.__name__}) is not "
                          f"plain JSON data ({e}); return only numbers, strings, lists and "
                          f"dicts from get_config()") from None
    return entry


# ---- writing ------------------------------------------------------------------------------
def _model_config(model) -> dict:
    """The model as layer configs plus its layer calls (each argument structure with its
    tensors as references ``[layer name, call index, output index]``)."""
    nodes = layer_nodes_of(model.outputs)
    layers: list = []
    for n in nodes:
        if all(n.layer is not known for known in layers):
            layers.append(n.layer)
    names = [layer.name for layer in layers]
    dup = sorted({nm for nm in names if names.count(nm) > 1})
    if dup:
        raise ConfigError(f"save: layer names must be unique, found {dup} more than once")
    index: dict[int, int] = {}
    per_layer: dict[str, int] = {}
    for n in nodes:  # call index = position among this layer's calls within the model
        index[id(n)] = per_layer.get(n.layer.name, 0)
        per_layer[n.layer.name] = index[id(n)] + 1

    def ref(t: SymbolicTensor) -> list:
        return [t.node.layer.name, index[id(t.node)], t.node.outputs.index(t)]

    def encode(x, where):
        if isinstance(x, SymbolicTensor):
            return {"__tensor__": ref(x)}
        if isinstance(x, (list, tuple)):
            return [encode(v, where) for v in x]
        if isinstance(x, dict):
            return {"__dict__": {str(k): encode(v, where) for k, v in x.items()}}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise ConfigError(f"save: {where} passes {type(x).__name__} {x!r}, which a model "
                          f"file cannot hold (tensors, numbers, strings, lists only)")

    calls = [{"layer": n.layer.name, "call_index": index[id(n)],
              "args": encode(list(n.args), f"the call of layer {n.layer.name!r}"),
              "kwargs": encode(dict(n.kwargs), f"the call of layer {n.layer.name!r}")["__dict__"]}
             for n in nodes if not isinstance(n.layer, InputLayer)]
    return {
        "name": model.name,
        "layers": [_class_entry(layer) for layer in layers],
        "calls": calls,
        "inputs": [ref(t) for t in model.inputs],
        "outputs": [ref(t) for t in model.outputs],
        "single_input": bool(model._single_input),
        "single_output": bool(model._single_output),
    }


def _metric_entry(m) -> Any:
    if isinstance(m, (str, dict)):
        return m
    raise ConfigError(f"save: cannot save metric {m!r}; give metrics by name")


def _compile_config(model) -> dict | None:
    if not model.compiled:
        return None
    g = model.graph
    n = len(model.outputs)
    loss_weights = [1.0] * n
    for nid, w in zip(g.meta["losses"], g.meta["loss_weights"]):
        loss_weights[g.node(nid)["loss_of"]] = float(w)
    given = model.compiled_metrics
    return {
        "loss": [None if lo is None else losses_mod.serialize(lo)
                 for lo in model.loss_objects],
        "metrics": [[_metric_entry(m) for m in per] for per in given["metrics"]],
        "weighted_metrics": [[_metric_entry(m) for m in per]
                             for per in given["weighted_metrics"]],
        "loss_weights": loss_weights,
        "optimizer": optimizers_mod.serialize(model.optimizer),
    }


def _describe(arrays: list[np.ndarray], names: list[str]) -> list[dict]:
    return [{"name": nm, "shape": list(a.shape), "dtype": str(a.dtype)}
            for nm, a in zip(names, arrays)]


def _npz_bytes(arrays: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i:05d}": np.asarray(a) for i, a in enumerate(arrays)})
    return buf.getvalue()


def _keras_file(filepath, suffixes) -> bool:
    """Whether ``filepath`` names a Keras 3 file (dispatched to ``keras_format``)."""
    try:
        return os.fsdecode(os.fspath(filepath)).lower().endswith(suffixes)
    except TypeError:
        return False


def _refuse_keras_names(filepath, who: str) -> None:
    """Refuse Keras's file names before anything is computed or written."""
    try:
        name = os.fspath(filepath)
    except TypeError:
        raise InputTypeError(f"{who}: filepath must be a str or os.PathLike, got "
                             f"{type(filepath).__name__}") from None
    name = os.fsdecode(name)
    suffix = next((s for s in KERAS_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is not None:
        raise ConfigError(f"{who}: filepath {name!r} ends with {name[-len(suffix):]!r}, a Keras "
                          f"file name graphmask does not write with {who} (Keras 3 files are "
                          f"'.keras' for save and '.weights.h5' for save_weights); for "
                          f"graphmask's own format use a '.gmz' name, e.g. "
                          f"{name[:-len(suffix)] + '.gmz'!r}")


def _write_atomic(path, members: dict[str, bytes], overwrite: bool) -> None:
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise ModelFileExistsError(f"save: {path!r} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, data in members.items():
                    zf.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_model(model, filepath, overwrite: bool = True) -> None:
    """Write ``model`` (graph config, weights, compile config, optimizer state) to one file.

    Parameters
    ----------
    model : graphmask.Model
    filepath : str or os.PathLike
        Destination; by convention ending in ``.gmz``.
    overwrite : bool
        When False and the file exists, raise :class:`ModelFileExistsError`.

    Raises
    ------
    ConfigError
        ``filepath`` ends with ``.keras``, ``.h5`` or ``.hdf5`` (Keras's names for files
        graphmask does not write); nothing is written.
    """
    if _keras_file(filepath, ".keras"):
        from graphmask.io.keras_format import save_keras_model
        return save_keras_model(model, filepath, overwrite)
    _refuse_keras_names(filepath, "save")
    weights = model.get_weights()
    config = {"format": FORMAT, "version": VERSION, "model": _model_config(model),
              "compile": _compile_config(model),
              "weights": _describe(weights, [v.name for v in model.weights])}
    members = {"weights.npz": _npz_bytes(weights)}
    if model.compiled:
        state = model.optimizer.get_state()
        config["optimizer_state"] = _describe(state, [f"state_{i}" for i in range(len(state))])
        members["optimizer.npz"] = _npz_bytes(state)
    members = {"config.json": json.dumps(config, indent=1, allow_nan=True).encode(), **members}
    _write_atomic(filepath, members, overwrite)


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Write only the weights of ``model`` (in ``get_weights()`` order) to one file.

    ``filepath`` must not end with ``.keras``, ``.h5`` or ``.hdf5`` (``ConfigError``,
    nothing written): graphmask writes its own format, not Keras's ``.weights.h5``.
    """
    if _keras_file(filepath, ".weights.h5"):
        from graphmask.io.keras_format import save_keras_weights
        return save_keras_weights(model, filepath, overwrite)
    _refuse_keras_names(filepath, "save_weights")
    weights = model.get_weights()
    config = {"format": WEIGHTS_FORMAT, "version": VERSION,
              "weights": _describe(weights, [v.name for v in model.weights])}
    _write_atomic(filepath, {"config.json": json.dumps(config, indent=1).encode(),
                             "weights.npz": _npz_bytes(weights)}, overwrite)


# ---- reading ------------------------------------------------------------------------------
def _open(path) -> tuple[dict, zipfile.ZipFile]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise FileFormatError(f"{path!r} is not a graphmask model file: not a readable zip "
                              f"archive ({e}); it may be truncated or corrupted") from None
    try:
        info = zf.getinfo("config.json")
    except KeyError:
        zf.close()
        raise FileFormatError(f"{path!r} is not a graphmask model file: it has no "
                              f"config.json") from None
    if info.file_size > _MAX_CONFIG_BYTES:
        zf.close()
        raise FileFormatError(f"{path!r}: config.json is implausibly large "
                              f"({info.file_size} bytes)")
    try:
        _check_declared_sizes(zf, path)
    except FileFormatError:
        zf.close()
        raise
    try:
        config = json.loads(_read_member(zf, "config.json", path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        zf.close()
        raise FileFormatError(f"{path!r}: config.json is not valid JSON ({e})") from None
    except FileFormatError:
        zf.close()
        raise
    if not isinstance(config, dict) or config.get("format") not in (FORMAT, WEIGHTS_FORMAT):
        zf.close()
        raise FileFormatError(f"{path!r} is not a graphmask model file (config.json has format "
                              f"{config.get('format') if isinstance(config, dict) else None!r})")
    version = config.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        zf.close()
        raise FileFormatError(f"{path!r}: bad format version {version!r}")
    if version > VERSION:
        zf.close()
        raise FileFormatError(f"{path!r} was written by a newer graphmask (format version "
                              f"{version}; this graphmask reads up to {VERSION})")
    return config, zf


def _check_declared_sizes(zf: zipfile.ZipFile, path) -> None:
    """Refuse an archive whose members declare more than the limits, before reading."""
    infos = zf.infolist()
    for info in infos:
        if info.file_size > MAX_MEMBER_BYTES:
            raise FileFormatError(
                f"{path!r}: the member {info.filename!r} declares {info.file_size} bytes "
                f"uncompressed, over the limit of {MAX_MEMBER_BYTES} bytes per member "
                f"(graphmask.io.saving.MAX_MEMBER_BYTES); not reading it")
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise FileFormatError(
            f"{path!r}: the members declare {total} bytes uncompressed in all, over the "
            f"limit of {MAX_TOTAL_BYTES} bytes (graphmask.io.saving.MAX_TOTAL_BYTES); not "
            f"reading them")


def _read_member(zf: zipfile.ZipFile, name: str, path) -> bytes:
    """The bytes of member ``name``: never more than it declares nor than the limit."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise FileFormatError(f"{path!r}: the member {name!r} is missing") from None
    limit = min(info.file_size, MAX_MEMBER_BYTES)
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError) as e:
        raise FileFormatError(f"{path!r}: the member {name!r} is corrupted ({e})") from None
    if len(data) != info.file_size:
        raise FileFormatError(f"{path!r}: the member {name!r} is corrupted: it holds "
                              f"{'more' if len(data) > limit else len(data)} bytes, its "
                              f"header says {info.file_size}")
    return data


def _check_npz_members(data: bytes, member: str, described: list, path) -> None:
    """Check each array of an npz member against config.json *before* NumPy reads it:
    stored, not compressed (so it cannot inflate), and with the described shape and dtype
    in its header (so no allocation is sized by an unchecked header)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            infos = {i.filename: i for i in inner.infolist()}
            want = [f"a{i:05d}.npy" for i in range(len(described))]
            if sorted(infos) != want:
                raise FileFormatError(f"{path!r}: {member} holds {len(infos)} arrays, "
                                      f"config.json describes {len(described)}")
            for name, d in zip(want, described):
                info = infos[name]
                if info.compress_type != zipfile.ZIP_STORED:
                    raise FileFormatError(f"{path!r}: {member} is corrupted: array {name} "
                                          f"is compressed (graphmask stores arrays as is)")
                with inner.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy format version {version} is not supported")
                    stored = info.file_size - f.tell()  # bytes after the header
                if dtype.hasobject:
                    raise FileFormatError(f"{path!r}: {member} is corrupted: array "
                                          f"{d.get('name')!r} holds Python objects (refused: "
                                          f"reading them would need pickle)")
                if list(shape) != d.get("shape") or str(dtype) != d.get("dtype"):
                    raise FileFormatError(
                        f"{path!r}: array {d.get('name')!r} in {member} has shape "
                        f"{list(shape)} and dtype {dtype}; config.json says {d.get('shape')} "
                        f"{d.get('dtype')}")
                need = math.prod(shape) * dtype.itemsize
                if stored < need:
                    raise FileFormatError(
                        f"{path!r}: {member} is corrupted: array {d.get('name')!r} is "
                        f"{need} bytes by its header, but only {stored} bytes are stored")
    except FileFormatError:
        raise
    except (ValueError, OSError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile,
            zlib.error) as e:
        raise FileFormatError(f"{path!r}: {member} is corrupted ({type(e).__name__}: {e})") \
            from None


def _read_arrays(zf, member: str, described, path) -> list[np.ndarray]:
    """The arrays of an npz member, checked against their description in config.json."""
    if not isinstance(described, list) or not all(isinstance(d, dict) for d in described):
        raise FileFormatError(f"{path!r}: config.json does not describe the arrays of {member}")
    data = _read_member(zf, member, path)
    _check_npz_members(data, member, described, path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = [npz[f"a{i:05d}"] for i in range(len(described))]
    except (ValueError, OSError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile,
            zlib.error) as e:
        # zip, header or pickle-refusal errors from np.load
        raise FileFormatError(f"{path!r}: {member} is corrupted ({type(e).__name__}: {e})") \
            from None
    for d, a in zip(described, arrays):
        if list(a.shape) != d.get("shape") or str(a.dtype) != d.get("dtype"):
            raise FileFormatError(f"{path!r}: array {d.get('name')!r} in {member} has shape "
                                  f"{list(a.shape)} and dtype {a.dtype}; config.json says "
                                  f"{d.get('shape')} {d.get('dtype')}")
    return arrays


def read_config(filepath) -> dict:
    """The parsed ``config.json`` of a model or weights file (checked format and version)."""
    config, zf = _open(filepath)
    zf.close()
    return config


def _bad(path, what) -> FileFormatError:
    return FileFormatError(f"{path!r}: invalid model config: {what}")


def _ref(value, path) -> tuple[str, int, int]:
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])):
        raise _bad(path, f"a tensor reference must be [layer name, call index, output index], "
                         f"got {value!r}")
    return value[0], value[1], value[2]


def _resolve_class(entry: dict, path, custom_objects: dict):
    """The class a layer entry names: graphmask's own layers, registered classes, or
    ``custom_objects``; nothing is imported by name from the file."""
    cls_name, registered = entry.get("class_name"), entry.get("registered_name")
    if not isinstance(cls_name, str):
        raise _bad(path, f"layer entry {entry!r} has no class_name")
    if cls_name in LAYER_CLASSES and registered is None:
        return LAYER_CLASSES[cls_name]
    for key in (registered, cls_name):
        if isinstance(key, str) and key in custom_objects:
            return custom_objects[key]
    if isinstance(registered, str) and registered in _REGISTRY:
        return _REGISTRY[registered]
    raise _bad(path, f"unknown layer class {cls_name!r}"
                     f"{f' (registered as {registered!r})' if registered else ''}: register "
                     f"it with @graphmask.saving.register_serializable() or pass "
                     f"custom_objects={{{cls_name!r}: {cls_name}}} to load_model")


def _function(spec, what: str, path, custom_objects: dict, safe_mode: bool):
    """A Lambda's Python function, from ``custom_objects`` by its saved name: graphmask
    never imports or runs code a file names."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _bad(path, f"{what}: bad function reference {spec!r}")
    name, module = spec["name"], spec.get("module")
    if name in custom_objects:
        return custom_objects[name]
    if safe_mode:
        raise ConfigError(
            f"load_model: {what} holds the Python function {module}.{name}, which a model "
            f"file cannot carry safely; it is refused in safe mode. Pass the function as "
            f"custom_objects={{{name!r}: fn}} (a file never makes graphmask import or run "
            f"code)")
    raise ConfigError(f"load_model: {what} needs its Python function {module}.{name}: "
                      f"graphmask never loads code from a file, even with safe_mode=False; "
                      f"pass it as custom_objects={{{name!r}: fn}}")


def _make_layer(entry: dict, path, custom_objects: dict, safe_mode: bool):
    if entry.get("class_name") == "Functional" and "registered_name" not in entry:
        return _build_model(entry.get("config"), path, custom_objects, safe_mode)
    cls = _resolve_class(entry, path, custom_objects)
    cfg = dict(entry["config"])
    for k, v in cfg.items():  # a custom initializer is saved by name only; the saved
        if k.endswith("_initializer") and is_custom(v):  # weights replace what it draws
            cfg[k] = "zeros"
    if cls is L.Lambda:
        what = f"Lambda {cfg.get('name')!r}"
        cfg["function"] = _function(cfg.get("function"), what, path, custom_objects,
                                    safe_mode)
        if isinstance(cfg.get("mask"), dict):
            cfg["mask"] = _function(cfg["mask"], what, path, custom_objects, safe_mode)
    try:
        return cls.from_config(cfg)
    except (GraphmaskError, TypeError, ValueError) as e:
        hint = "" if LAYER_CLASSES.get(cls.__name__) is cls else \
            " (a custom layer must rebuild from cls.from_config(layer.get_config()))"
        raise _bad(path, f"layer {cfg.get('name')!r} ({entry.get('class_name')}): "
                         f"{e}{hint}") from None


def _v1_calls(call_cfgs: list) -> list:
    """Format 1 stored one call per built-in layer call with its inbound tensors."""
    out = []
    for c in call_cfgs:
        if not isinstance(c, dict) or not c.get("inbound"):
            continue  # the input layers: their tensors come from the layer itself
        inbound = [{"__tensor__": r} for r in c["inbound"]]
        out.append({"layer": c.get("layer"), "call_index": c.get("call_index"),
                    "args": [inbound if c.get("as_list") is True else inbound[0]],
                    "kwargs": {}})
    return out


def _build_model(mcfg: dict, path, custom_objects: dict | None = None, safe_mode=True,
                 version: int = VERSION):
    from graphmask.models.functional import Model
    custom_objects = dict(custom_objects or {})
    if not isinstance(mcfg, dict):
        raise _bad(path, "'model' must be an object")
    layer_cfgs, call_cfgs = mcfg.get("layers"), mcfg.get("calls")
    if not isinstance(layer_cfgs, list) or not isinstance(call_cfgs, list):
        raise _bad(path, "'layers' and 'calls' must be lists")
    if version == 1:
        call_cfgs = _v1_calls(call_cfgs)
    layers: dict[str, Any] = {}
    tensors: dict[tuple[str, int], list] = {}
    for entry in layer_cfgs:
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise _bad(path, f"layer entry {entry!r}")
        layer = _make_layer(entry, path, custom_objects, safe_mode)
        if layer.name in layers:
            raise _bad(path, f"layer names must be unique, got {layer.name!r} twice")
        layers[layer.name] = layer
        if isinstance(layer, InputLayer):
            tensors[(layer.name, 0)] = [layer.output]

    def decode(x):
        if isinstance(x, dict) and "__tensor__" in x:
            return _lookup(tensors, _ref(x["__tensor__"], path), path)
        if isinstance(x, dict) and "__dict__" in x:
            return {k: decode(v) for k, v in x["__dict__"].items()}
        if isinstance(x, list):
            return [decode(v) for v in x]
        if isinstance(x, dict):
            raise _bad(path, f"unexpected object {x!r} in a call's arguments")
        return x

    counts: dict[str, int] = {}
    for c in call_cfgs:
        if not isinstance(c, dict) or c.get("layer") not in layers:
            raise _bad(path, f"call {c!r} names no known layer")
        layer = layers[c["layer"]]
        ci = counts.get(layer.name, 0)
        if c.get("call_index") != ci or isinstance(layer, InputLayer):
            raise _bad(path, f"call {ci} of layer {layer.name!r} is out of order")
        counts[layer.name] = ci + 1
        args, kwargs = c.get("args"), c.get("kwargs", {})
        if not isinstance(args, list) or not args or not isinstance(kwargs, dict):
            raise _bad(path, f"call {ci} of layer {layer.name!r} has no inputs")
        args = decode(args)
        kwargs = {k: decode(v) for k, v in kwargs.items()}
        try:
            out = layer(*args, **kwargs)
        except GraphmaskError as e:
            raise _bad(path, f"calling layer {layer.name!r}: {e}") from None
        tensors[(layer.name, ci)] = flatten(out)
    ins = [_lookup(tensors, _ref(r, path), path) for r in _list(mcfg.get("inputs"), path)]
    outs = [_lookup(tensors, _ref(r, path), path) for r in _list(mcfg.get("outputs"), path)]
    single_in, single_out = mcfg.get("single_input") is True, mcfg.get("single_output") is True
    if (single_in and len(ins) != 1) or (single_out and len(outs) != 1):
        raise _bad(path, "single_input/single_output do not match inputs/outputs")
    name = mcfg.get("name")
    try:
        return Model(ins[0] if single_in else ins, outs[0] if single_out else outs,
                     name=name if isinstance(name, str) else None)
    except GraphmaskError as e:
        raise _bad(path, f"building the model: {e}") from None


def _list(value, path) -> list:
    if not isinstance(value, list) or not value:
        raise _bad(path, f"expected a non-empty list, got {value!r}")
    return value


def _lookup(tensors, ref, path):
    name, ci, oi = ref
    outs = tensors.get((name, ci))
    if outs is None or not 0 <= oi < len(outs):
        raise _bad(path, f"tensor {list(ref)} is used before it is made")
    return outs[oi]


def _compile(model, ccfg: dict, path) -> None:
    if not isinstance(ccfg, dict):
        raise _bad(path, "'compile' must be an object or null")
    try:
        n = len(model.outputs)
        loss, metrics, lw = ccfg.get("loss"), ccfg.get("metrics"), ccfg.get("loss_weights")
        if not (isinstance(loss, list) and isinstance(metrics, list) and isinstance(lw, list)
                and len(loss) == len(metrics) == len(lw) == n):
            raise _bad(path, "compile config must list loss, metrics and loss_weights per "
                             "output")
        weighted = ccfg.get("weighted_metrics") or [[] for _ in range(n)]
        if not isinstance(weighted, list) or len(weighted) != n:
            raise _bad(path, "compile config: weighted_metrics must list one entry per output")
        mets = [per if isinstance(per, list) else [] for per in metrics]
        wmets = [per if isinstance(per, list) else [] for per in weighted]
        for per in mets + wmets:
            if not all(isinstance(m, (str, dict)) for m in per):
                raise _bad(path, f"metrics must be names, got {per!r}")
        loss = [None if lo is None else losses_mod.deserialize(lo) for lo in loss]
        model.compile(optimizer=optimizers_mod.deserialize(ccfg.get("optimizer") or {}),
                      loss=loss if n > 1 else loss[0],
                      metrics=mets if n > 1 else mets[0],
                      weighted_metrics=wmets if n > 1 else wmets[0],
                      loss_weights=lw)
    except FileFormatError:
        raise
    except (GraphmaskError, TypeError, ValueError, KeyError) as e:
        raise _bad(path, f"compile config: {e}") from None


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """Rebuild a model saved by :func:`save_model` / ``Model.save``.

    The result predicts exactly as the saved model did and, when it was compiled, is
    compiled with the same losses, metrics and optimizer, whose state (moments, iteration
    count) is restored, so training continues exactly where it stopped.

    Parameters
    ----------
    filepath : str or os.PathLike
    custom_objects : dict, optional
        Custom layer classes (and Lambda functions) by name, for classes not registered
        with :func:`register_serializable`.
    compile : bool
        When False, return the model uncompiled (weights only, no optimizer).
    safe_mode : bool
        When True (the default), a ``Lambda`` whose function is not in ``custom_objects``
        is refused: a file must not make graphmask import and run code. Pass False for
        files you trust (the function is imported from its module by name).

    Raises
    ------
    FileFormatError
        The file is truncated, corrupted or not a graphmask model file.
    """
    if _keras_file(filepath, ".keras"):
        from graphmask.io.keras_format import load_keras_model
        return load_keras_model(filepath, compile=compile)
    config, zf = _open(filepath)
    with zf:
        if config["format"] != FORMAT:
            raise FileFormatError(f"{os.fspath(filepath)!r} holds only weights; load them with "
                                  f"model.load_weights(path)")
        weights = _read_arrays(zf, "weights.npz", config.get("weights"), filepath)
        state = None
        if compile and config.get("compile") is not None:
            state = _read_arrays(zf, "optimizer.npz", config.get("optimizer_state"), filepath)
    saved_rng = rng().bit_generator.state  # building layers draws initial weights:
    try:                                  # loading must not move the user's random stream
        model = _build_model(config.get("model"), filepath, custom_objects, safe_mode,
                             version=config["version"])
        names = [v.name for v in model.weights]
        if names != [d.get("name") for d in config["weights"]]:
            raise _bad(filepath, f"the weights {[d.get('name') for d in config['weights']]} "
                                 f"do not match the model's {names}")
        try:
            model.set_weights(weights)
        except ShapeError as e:
            raise _bad(filepath, str(e)) from None
        if state is not None:
            _compile(model, config["compile"], filepath)
            _restore_optimizer(model, state, filepath)
    finally:
        rng().bit_generator.state = saved_rng
    return model


def _restore_optimizer(model, state, path) -> None:
    opt = model.optimizer
    try:
        if len(state) > 1:  # the saved optimizer had taken steps: build its slots now
            opt.build([v.value for v in model.trainable_weights])
        opt.set_state(state)
    except (GraphmaskError, ValueError) as e:
        raise _bad(path, f"optimizer state: {e}") from None


def load_weights(model, filepath) -> None:
    """Set ``model``'s weights from a weights file or a full model file (matched by order);
    a Keras ``.weights.h5`` or ``.keras`` file is matched by Keras's layout."""
    if _keras_file(filepath, (".h5", ".keras")):
        from graphmask.io.keras_format import load_keras_weights
        return load_keras_weights(model, filepath)
    config, zf = _open(filepath)
    with zf:
        weights = _read_arrays(zf, "weights.npz", config.get("weights"), filepath)
    own = model.weights
    if len(weights) != len(own) or any(w.shape != v.shape for w, v in zip(weights, own)):
        held = [(d.get("name"), tuple(w.shape)) for d, w in zip(config["weights"], weights)]
        raise ShapeError(f"load_weights: {os.fspath(filepath)!r} holds weights {held}, the "
                         f"model has {[(v.name, v.shape) for v in own]}")
    model.set_weights(weights)
