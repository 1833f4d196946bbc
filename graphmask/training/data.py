"""Checking and converting user data at the boundary of predict / evaluate / fit.

Everything is validated before any kernel runs or any weight changes; errors name the
model input or output, the argument and the offending value or position.
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError, InputError, InputTypeError, ShapeError

#: Set ``graphmask.training.data.ALLOW_NONFINITE = True`` to let NaN/inf in inputs and targets
#: through (they are an error by default: they would silently poison the loss).
ALLOW_NONFINITE = False


def _to_array(value, what: str) -> np.ndarray:
    if value is None:
        raise InputError(f"{what}: no data given (None)")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputTypeError(f"{what}: cannot be read as an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise InputTypeError(f"{what}: must hold numbers, got dtype {arr.dtype} "
                             f"(strings and objects are not accepted)")
    return arr


def _check_finite(arr: np.ndarray, what: str) -> None:
    if ALLOW_NONFINITE or arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{what}: contains {arr[pos]} at position {pos} (NaN/inf are not "
                         f"accepted; set graphmask.training.data.ALLOW_NONFINITE = True to allow)")


def _cast(arr: np.ndarray, dtype: str, what: str) -> np.ndarray:
    target = np.dtype(dtype)
    if target.kind in "iu" and arr.dtype.kind == "f":
        _check_finite(arr, what)
        frac = arr != np.round(arr)
        if frac.any():
            pos = tuple(int(i) for i in np.argwhere(frac)[0])
            raise InputError(f"{what}: expects whole numbers (dtype {dtype}), got {arr[pos]!r} "
                             f"at position {pos}")
    return np.ascontiguousarray(arr, dtype=target)


def _by_name(value, names: list[str], what: str) -> list:
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        if missing:
            raise InputError(f"{what}: missing entries for {missing}; given {sorted(value)}")
        return [value[n] for n in names]
    if len(names) == 1:
        if isinstance(value, (list, tuple)) and len(value) == 1 \
                and isinstance(value[0], np.ndarray):
            return [value[0]]  # a one-element list of arrays, as Keras accepts
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != len(names):
        raise InputError(f"{what}: the model has {len(names)} of them ({names}); pass a list "
                         f"or dict with one array each")
    return list(value)


def prepare_inputs(model, x, whole: bool = False) -> list[np.ndarray]:
    """Model inputs as contiguous arrays of the Inputs' dtypes, shapes checked.

    ``whole``: ``x`` is a whole data set cut into batches later, so a fixed batch size
    (``Input(batch_shape=(8, ...))``) is checked against the batches, not here."""
    names = [t.call.layer.name for t in model.inputs]
    arrays = []
    for t, name, value in zip(model.inputs, names, _by_name(x, names, "x")):
        what = f"input {name!r}"
        arr = _to_array(value, what)
        shape = t.shape
        if arr.ndim != len(shape):
            raise ShapeError(f"{what}: expects arrays of rank {len(shape)} (shape "
                             f"{_fmt(shape)}), got shape {arr.shape}")
        for axis, (want, got) in enumerate(zip(shape, arr.shape)):
            if want is not None and want != got and not (whole and axis == 0):
                raise ShapeError(f"{what}: expects shape {_fmt(shape)}, got {arr.shape} "
                                 f"(axis {axis} is {got}, must be {want})")
        if arr.shape[0] == 0:
            raise InputError(f"{what}: the batch is empty (shape {arr.shape})")
        if 0 in arr.shape:
            raise InputError(f"{what}: has a zero-length axis (shape {arr.shape})")
        arr = _cast(arr, t.dtype, what)
        _check_finite(arr, what)
        arrays.append(arr)
    _check_embedding_ids(model, arrays)
    n = {a.shape[0] for a in arrays}
    if len(n) > 1:
        raise ShapeError(f"x: inputs have different batch sizes {[a.shape[0] for a in arrays]}")
    return arrays


def _check_embedding_ids(model, arrays) -> None:
    """Ids that feed an Embedding directly are range-checked for the whole data set up
    front, so ``fit`` cannot fail on a bad id halfway, after some weights changed."""
    from graphmask.errors import GraphmaskError
    from graphmask.ops.embedding import check_ids
    g = model._forward
    for nid, arr in zip(g.meta["inputs"], arrays):
        for dst, port, _ in g.consumers(nid):
            node = g.node(dst)
            if node["op"] == "embedding" and port == "ids":
                try:
                    check_ids(arr, node["attrs"]["input_dim"])
                except GraphmaskError as e:
                    raise type(e)(f"layer {node['layer']!r}: {e}") from None


def _fmt(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _float_dtype(model, k) -> np.dtype:
    """Targets and weights follow the output's float dtype (float64 for gradient checks)."""
    return np.dtype("float64" if model.outputs[k].dtype == "float64" else "float32")


def _sparse(model, k) -> bool:
    objs = getattr(model, "loss_objects", None) or []
    return k < len(objs) and objs[k] is not None and \
        objs[k].fn == "sparse_categorical_crossentropy"


def prepare_targets(model, y, batch: int, xs=None) -> list:
    """One target array per output that has a loss or metric (None for the others).

    Sparse class ids are checked where they count: at the positions the loss and the
    sparse crossentropy metrics keep, i.e. where the prediction's mask (computed from the
    inputs ``xs``) is True and the label is not the ``ignore_class``. Ids at masked
    positions may be anything (99, -1, -100); they are never used. Without ``xs`` every
    position is checked.
    """
    targets = model.graph.meta.get("targets", {})
    names = model.output_names
    if y is None:
        raise InputError("y: targets are required to compute the loss")
    values = _by_name(y, names, "y")
    out = [None] * len(names)
    for k, _tid in targets.items():
        what = f"target for output {names[k]!r}"
        arr = _to_array(values[k], what)
        pshape = model.outputs[k].shape
        if _sparse(model, k):
            if arr.ndim == len(pshape) and arr.shape[-1] == 1:
                arr = arr[..., 0]
            want = pshape[:-1]
            if arr.dtype.kind == "f":
                _cast(arr, "int64", what)  # whole numbers, finite
        else:
            if arr.ndim == len(pshape) - 1 and pshape[-1] == 1:
                arr = arr[..., None]
            want = pshape
            _check_finite(arr, what)
            arr = np.ascontiguousarray(arr, dtype=_float_dtype(model, k))
        if arr.ndim != len(want) or any(w is not None and w != a for w, a in
                                        zip(want[1:], arr.shape[1:])):
            raise ShapeError(f"{what}: expects shape {_fmt(want)}, got {arr.shape}")
        if arr.shape[0] != batch:
            raise ShapeError(f"{what}: has {arr.shape[0]} samples but x has {batch}")
        if _sparse(model, k):
            _check_class_ids(model, k, arr, xs, what)
            arr = _as_int32_ids(arr)
        out[k] = arr
    return out


def _id_readers(model, k) -> list[tuple[int | None, int | None]]:
    """``(mask node or None, ignore_class or None)`` for each op of the compiled graph
    that indexes with the class ids of output ``k`` (the sparse loss and metrics)."""
    from graphmask.ops.base import get_op
    from graphmask.ops.losses import ignore_class
    g = model.graph
    tid = g.meta["targets"][k]
    readers = []
    for dst, port, _ in g.consumers(tid):
        n = g.node(dst)
        if port != "y_true" or n["op"] not in ("loss_score", "metric_score") or \
                not get_op(n["op"]).mask_rule(n["attrs"]).uses:
            continue
        mask = g.in_ports(dst).get("mask")
        readers.append((None if mask is None else mask[0], ignore_class(n["attrs"])))
    return readers or [(None, None)]


def _masks(model, mask_ids: list[int], xs) -> dict:
    """The boolean value of each mask node for the inputs ``xs``, computed in batches."""
    from graphmask import passes
    from graphmask.runtime import run
    if not mask_ids:
        return {}
    key = ("label_masks", tuple(mask_ids))
    if key not in model._plans:
        model._plans[key] = passes.make_plan(model.graph, [(m, 0) for m in mask_ids])
    plan, inputs = model._plans[key], model.graph.meta["inputs"]
    parts = [run(plan, dict(zip(inputs, [a[sl] for a in xs])), model._variables())
             for sl in batches(len(xs[0]), 4096, "labels")]
    return {m: np.concatenate([p[i] for p in parts]) for i, m in enumerate(mask_ids)}


def _check_class_ids(model, k, ids: np.ndarray, xs, what: str) -> None:
    """Range-check ``ids`` at the positions some id reader keeps (first offender named)."""
    readers = _id_readers(model, k)
    masks = {} if xs is None else _masks(model, sorted({m for m, _ in readers
                                                        if m is not None}), xs)
    classes = model.outputs[k].shape[-1]
    outside = (ids < 0) | (ids >= classes)
    bad = np.zeros(ids.shape, bool)
    for mask, ignore in readers:
        keep = masks[mask].copy() if mask in masks else np.ones(ids.shape, bool)
        if ignore is not None:
            keep &= ids != ignore
        bad |= keep & outside
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{what}: class id {int(ids[pos])} at position {pos} is outside "
                         f"[0, {classes}) (the output has {classes} classes)")


def _as_int32_ids(ids: np.ndarray) -> np.ndarray:
    """The targets as int32. Checked ids fit; ids nobody reads are clipped into range."""
    if ids.dtype.kind == "b":
        return ids.astype(np.int32)
    info = np.iinfo(np.int32)
    if ids.dtype.kind in "iu":
        ids = np.clip(ids, info.min if ids.dtype.kind == "i" else 0, info.max)
    else:
        ids = np.clip(ids, info.min, info.max)
    return np.ascontiguousarray(ids, dtype=np.int32)


def prepare_weights(model, sample_weight, ys: list) -> list:
    """Per-position weights, broadcast to each output's score shape (B,) or (B, T)."""
    targets = model.graph.meta.get("targets", {})
    names = model.output_names
    values = [None] * len(names) if sample_weight is None else \
        _by_name(sample_weight, names, "sample_weight")
    out = [None] * len(names)
    for k in targets:
        score_shape = ys[k].shape if _sparse(model, k) else ys[k].shape[:-1]
        batch = score_shape[0]
        if values[k] is None:
            out[k] = np.ones(score_shape, dtype=_float_dtype(model, k))
            continue
        what = f"sample_weight for output {names[k]!r}"
        arr = _to_array(values[k], what).astype(_float_dtype(model, k))
        _check_finite(arr, what)
        if arr.shape[:1] != (batch,):
            raise ShapeError(f"{what}: expects {batch} samples, got shape {arr.shape}")
        while arr.ndim < len(score_shape):
            arr = arr[..., None]
        try:
            arr = np.broadcast_to(arr, score_shape)
        except ValueError:
            raise ShapeError(f"{what}: shape {np.shape(values[k])} does not fit the loss "
                             f"scores of shape {score_shape}") from None
        out[k] = np.ascontiguousarray(arr)
    return out


def batches(n: int, batch_size, who: str):
    """Slices of ``range(n)`` of ``batch_size`` (default 32) items."""
    if batch_size is None:
        batch_size = 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ConfigError(f"{who}: batch_size must be a positive int, got {batch_size!r}")
    return [slice(i, min(i + int(batch_size), n)) for i in range(0, n, int(batch_size))]


def check_class_weight(model, class_weight, who: str) -> dict | None:
    """``{class id: weight}`` checked (int ids, finite non-negative weights), or None."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise ConfigError(f"{who}: class_weight must be a dict {{class id: weight}}, got "
                          f"{type(class_weight).__name__}")
    targets = model.graph.meta.get("targets", {})
    if len(model.outputs) > 1 or len(targets) != 1:
        raise ConfigError(f"{who}: class_weight is only supported for models with a single "
                          f"output (this one has {len(model.outputs)}: {model.output_names}); "
                          f"give sample_weight per output")
    out = {}
    for key, val in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise ConfigError(f"{who}: class_weight keys must be int class ids, got {key!r}")
        if isinstance(val, bool) or not isinstance(val, (int, float, np.number)) \
                or not np.isfinite(val) or val < 0:
            raise ConfigError(f"{who}: class_weight[{key}] must be a finite number >= 0, got "
                              f"{val!r}")
        out[int(key)] = float(val)
    return out


def class_weights(model, ys: list, class_weight: dict) -> list:
    """``sample_weight`` from ``class_weight``, as Keras 3: the class of a target is its id
    (sparse), its argmax (one-hot, last axis > 1) or its rounded value (last axis 1);
    classes missing from the dict weigh 1. Per sample for a (B,) score, and per position
    for sequence outputs (B, T) (Keras 3 only handles per-sample targets)."""
    out = [None] * len(ys)
    for k in model.graph.meta.get("targets", {}):
        y = ys[k]
        if _sparse(model, k):
            ids = y.astype(np.int64)
        elif y.shape[-1] > 1:
            ids = np.argmax(y, axis=-1)
        else:
            ids = np.round(y[..., 0]).astype(np.int64)
        uniq, inv = np.unique(ids, return_inverse=True)
        w = np.array([class_weight.get(int(c), 1.0) for c in uniq])[inv].reshape(ids.shape)
        out[k] = np.ascontiguousarray(w, dtype=_float_dtype(model, k))
    return out
