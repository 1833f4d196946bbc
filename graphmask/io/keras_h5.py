"""Keras 3's weight layout (``model.weights.h5``, ``x.weights.h5``), read and written with h5py.

Keras stores each layer's variables as datasets ``vars/0``, ``vars/1``, ... of a group
named after the *class* of the layer, in the order of ``model.layers``
(``layers/dense``, ``layers/dense_1``, ``layers/lstm``), never after the layer's own name;
variables of a nested object sit under the attribute that holds it (an LSTM's under
``layers/lstm/cell/vars``, a wrapped layer's under ``layers/time_distributed/layer``), and a
model used as a layer has its own ``layers/...`` inside. :data:`WEIGHT_PATHS` says, per
class, where each of a graphmask layer's weights goes; every other layer keeps its
weights, in ``layer.weights`` order, in its own ``vars`` group.

h5py is optional (``pip install graphmask[keras]``); only these functions import it.
"""
from __future__ import annotations

import io
import re

import numpy as np

from graphmask.errors import FileFormatError, ShapeError

INSTALL = "pip install 'graphmask[keras]' (or pip install h5py)"


def h5py():
    """The h5py module, or an ImportError saying what to install."""
    try:
        import h5py as mod
    except ImportError:
        raise ImportError(f"reading and writing Keras files needs h5py: {INSTALL}") from None
    return mod


def keras_snake(name: str) -> str:
    """A class name as Keras names its weight group (``GlobalAveragePooling1D`` ->
    ``global_average_pooling1d``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _cell(sub: str):
    return lambda layer: [("vars", []), (f"{sub}/vars", list(layer.weights))]


def _wrapper(layer) -> list:
    inner = layer.layer
    return [("vars", [])] + [(f"layer/{p}", ws) for p, ws in layer_paths(inner)]


def _bidirectional(layer) -> list:
    out = [("vars", [])]
    for attr in ("forward_layer", "backward_layer"):
        out += [(f"{attr}/{p}", ws) for p, ws in layer_paths(getattr(layer, attr))]
    return out


def _rnn(layer) -> list:
    return [("vars", [])] + [(f"cell/{p}", ws) for p, ws in layer_paths(layer.cell)]


def _stacked_cells(layer) -> list:
    out: list = [("vars", [])]
    used: dict[str, int] = {}
    for cell in layer.cells:
        base = keras_snake(type(cell).__name__)
        used[base] = used.get(base, -1) + 1
        name = base if used[base] == 0 else f"{base}_{used[base]}"
        out += [(f"cells/{name}/{p}", ws) for p, ws in layer_paths(cell)]
    return out


#: class name -> layer -> [(path inside the layer's group, [weights])]
WEIGHT_PATHS = {
    "LSTM": _cell("cell"), "GRU": _cell("cell"), "SimpleRNN": _cell("cell"),
    "RNN": _rnn, "StackedRNNCells": _stacked_cells,
    "TimeDistributed": _wrapper, "Bidirectional": _bidirectional,
}


def keras_class(layer) -> str:
    from graphmask.models.functional import Model
    from graphmask.models.sequential import Sequential
    if isinstance(layer, Sequential):
        return "Sequential"
    if isinstance(layer, Model) and type(layer).__name__ in ("Model", "Functional"):
        return "Functional"
    return type(layer).__name__


def layer_paths(layer) -> list[tuple[str, list]]:
    """Where each weight of ``layer`` lives, relative to the layer's group."""
    from graphmask.layers.base import InputLayer
    from graphmask.models.functional import Model
    if isinstance(layer, Model) and not isinstance(layer, InputLayer):
        return model_paths(layer)
    rule = WEIGHT_PATHS.get(type(layer).__name__)
    return rule(layer) if rule else [("vars", list(layer.weights))]


def model_paths(model) -> list[tuple[str, list]]:
    """Every weight group of a model (``vars``, ``layers/<class>/...``), in Keras's order."""
    from graphmask.layers.base import InputLayer
    from graphmask.models.sequential import Sequential
    layers = list(model.layers)
    if isinstance(model, Sequential):
        layers = [la for la in layers if not isinstance(la, InputLayer)]
    out: list[tuple[str, list]] = [("vars", [])]
    used: dict[str, int] = {}
    for layer in layers:
        base = keras_snake(keras_class(layer))
        used[base] = used.get(base, -1) + 1
        name = base if used[base] == 0 else f"{base}_{used[base]}"
        out += [(f"layers/{name}/{p}", ws) for p, ws in layer_paths(layer)]
    return out


# ---- writing ------------------------------------------------------------------------------
def write(model, target, optimizer: list | None = None) -> None:
    """Write ``model``'s weights in Keras's layout to ``target`` (a path or a file), and
    ``optimizer`` (Keras's optimizer variables, see :mod:`graphmask.io.keras_optimizer`)
    to ``optimizer/vars`` when given, as a ``.keras`` file holds them."""
    mod = h5py()
    with mod.File(target, "w") as f:
        for path, weights in model_paths(model):
            group = f.require_group(path)
            for i, v in enumerate(weights):
                group.create_dataset(str(i), data=np.asarray(v.value))
        if optimizer is not None:
            group = f.require_group("optimizer/vars")
            for i, a in enumerate(optimizer):
                group.create_dataset(str(i), data=np.asarray(a))


def to_bytes(model, optimizer: list | None = None) -> bytes:
    buf = io.BytesIO()
    write(model, buf, optimizer)
    return buf.getvalue()


def read_optimizer(source, label) -> list[np.ndarray] | None:
    """The arrays of ``optimizer/vars`` in a Keras weights file (in order), or None."""
    mod = h5py()
    with mod.File(source, "r") as f:
        group = f.get("optimizer/vars")
        if group is None:
            return None
        names = sorted(group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit()
                                                    else 0, k))
        if names != [str(i) for i in range(len(names))]:
            raise FileFormatError(f"{label}: optimizer/vars holds {names}, not 0..n-1")
        return [np.asarray(group[k][()]) for k in names]


# ---- reading ------------------------------------------------------------------------------
def _datasets(group) -> dict[str, object]:
    return {k: v for k, v in group.items()}


def read(model, source, label) -> list[np.ndarray]:
    """The weights for ``model`` from a Keras weights file, in ``model.weights`` order.

    Everything is checked before anything is set: each group the layout needs exists and
    holds exactly the datasets it should (count, shape, a numeric dtype), and the file has
    no layer group the model does not expect. Raises :class:`FileFormatError` (layout) or
    :class:`ShapeError` (shapes), naming the group.
    """
    mod = h5py()
    try:
        f = mod.File(source, "r")
    except (OSError, ValueError) as e:
        raise FileFormatError(f"{label}: the weights are not a readable HDF5 file ({e})") \
            from None
    with f:
        by_id: dict[int, np.ndarray] = {}
        expected = model_paths(model)
        for path, weights in expected:
            group = f.get(path)
            if group is None:
                if weights:
                    raise FileFormatError(f"{label}: the weights have no group {path!r} "
                                          f"(expected {len(weights)} array(s) for "
                                          f"{_owners(weights)}); the HDF5 layout does not "
                                          f"match the model config")
                continue
            if not isinstance(group, mod.Group):
                raise FileFormatError(f"{label}: {path!r} is not an HDF5 group")
            items = _datasets(group)
            names = sorted((k for k, v in items.items() if isinstance(v, mod.Dataset)),
                           key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
            if names != [str(i) for i in range(len(weights))]:
                raise FileFormatError(
                    f"{label}: the group {path!r} holds arrays {names}, the model expects "
                    f"{len(weights)} ({_owners(weights)}): the HDF5 layout does not match "
                    f"the model config")
            for i, v in enumerate(weights):
                ds = group[str(i)]
                if ds.dtype.kind not in "fiub":
                    raise FileFormatError(f"{label}: {path}/{i} has dtype {ds.dtype}, not a "
                                          f"number type")
                if tuple(ds.shape) != tuple(v.shape):
                    raise ShapeError(f"{label}: {path}/{i} (weight {v.name!r}) has shape "
                                     f"{tuple(ds.shape)}, the model expects {tuple(v.shape)}")
                by_id[id(v)] = np.asarray(ds[()], dtype=v.value.dtype)
        _check_extra(f, {p for p, _ in expected}, label, mod)
        return [by_id[id(v)] for v in model.weights]


def _owners(weights) -> str:
    return ", ".join(repr(v.name) for v in weights) or "none"


def _check_extra(f, known: set, label, mod) -> None:
    """Refuse a file with weight groups the model does not have (a different model)."""
    extra = []

    def visit(name, obj):
        if isinstance(obj, mod.Dataset):
            folder = name.rsplit("/", 1)[0]
            if folder not in known and not name.startswith("optimizer/"):
                extra.append(name)
    f.visititems(visit)
    if extra:
        raise FileFormatError(f"{label}: the weights hold arrays the model config does not "
                              f"have: {sorted(extra)[:6]}; the HDF5 layout does not match "
                              f"the model config")
