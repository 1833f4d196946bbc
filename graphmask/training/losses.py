"""Keras-style loss objects.

A :class:`Loss` names the per-position score of the ``loss_score`` op (``.fn`` and
``.attrs()``); ``compile()`` turns it into a ``loss`` node, which the loss pass rewrites
into ``loss_score`` + ``masked_mean`` (a mask reaches the loss) or ``weighted_mean``.
Calling a loss computes the same value eagerly with the ops' numba kernels:

* with a ``mask``: ``sum(score * m * w) / sum(m)``, exactly 0 when nothing is kept;
* without: ``sum(score * w) / score.size``;

``sample_weight`` may be a scalar, per sample (shape (B,), broadcast over time) or of the
score's shape. Names accepted by :func:`get` are Keras 3's: function names
(``"mean_squared_error"``), class names (``"MeanSquaredError"``) and the aliases
``"mse"``, ``"mae"``, ``"bce"`` (upper case too).

``SparseCategoricalCrossentropy(ignore_class=c)`` drops the positions labelled ``c`` like
masked ones (Keras 3): they leave the sum and the count, and their score is 0. Class ids
at masked or ignored positions are not checked; any value may sit there.
"""
from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from graphmask.errors import ConfigError, InputError, InputTypeError
from graphmask.ops.base import get_op
from graphmask.ops.losses import ignore_keep

__all__ = ["BinaryCrossentropy", "CategoricalCrossentropy", "Loss", "MeanAbsoluteError",
           "MeanSquaredError", "SparseCategoricalCrossentropy", "deserialize", "get",
           "serialize", "sparse_categorical_crossentropy"]

_INT32 = np.iinfo(np.int32)
#: the one reduction graphmask implements (Keras 3's default)
REDUCTION = "sum_over_batch_size"


def _as_float_array(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise InputTypeError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


class Loss:
    """Base class. ``fn`` is the ``loss_score`` function name."""

    fn: str = ""
    _args: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, reduction: str = "sum_over_batch_size",
                 dtype: Any = None) -> None:
        self.name = name or self.fn
        if reduction != REDUCTION:
            raise ConfigError(
                f"{type(self).__name__}: reduction={reduction!r} is not supported; graphmask "
                f"reduces every loss as Keras's default {REDUCTION!r} (the mean over kept "
                f"positions of a masked output, else over the batch)")
        if dtype not in (None, "float32", "float64"):
            raise ConfigError(f"{type(self).__name__}: dtype must be None, 'float32' or "
                              f"'float64', got {dtype!r}")
        self.reduction = reduction

    def attrs(self) -> dict[str, Any]:
        """Attributes of the ``loss_score`` / ``loss`` op for this loss."""
        out: dict[str, Any] = {"fn": self.fn}
        out.update({k: getattr(self, k) for k in self._args})
        if out.get("ignore_class", 0) is None:
            del out["ignore_class"]  # the op's default: graphs without it stay as they were
        return out

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction,
                **{k: getattr(self, k) for k in self._args}}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None,
                 mask: Any = None) -> np.floating:
        """The reduced loss value (a NumPy scalar in y_pred's float dtype)."""
        p = _as_float_array("y_pred", y_pred)
        if p.dtype not in (np.float32, np.float64):  # ints, float16: Keras's floatx
            p = p.astype(np.float32)
        y = _as_float_array("y_true", y_true)
        inputs = {"y_pred": p, "y_true": y}
        m = None if mask is None else np.asarray(mask).astype(bool)
        if m is not None and m.shape != p.shape[:-1]:
            raise InputError(f"{self.name}: mask of shape {m.shape} does not fit y_pred of "
                             f"shape {p.shape} (it must be {p.shape[:-1]})")
        if m is not None and get_op("loss_score").mask_rule(self.attrs()).uses:
            inputs["mask"] = m  # class ids at masked positions are neither checked nor read
        score = get_op("loss_score").forward(self.attrs(), inputs)[0]
        red: dict[str, np.ndarray] = {"score": score}
        if sample_weight is not None:
            red["weight"] = _as_float_array("sample_weight", sample_weight)
        keep = ignore_keep(self.attrs(), y, score.shape)
        if keep is not None:
            m = keep if m is None else m & keep
        if m is not None:
            red["mask"] = m
            return get_op("masked_mean").forward({}, red)[0][()]
        return get_op("weighted_mean").forward({}, red)[0][()]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._args)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.attrs().items()))))


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_ignore_class(value: Any, who: str = "SparseCategoricalCrossentropy") -> int | None:
    """``ignore_class`` as an int (it must fit the int32 targets), or None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not _INT32.min <= int(value) <= _INT32.max:
        raise ConfigError(f"{who}: ignore_class must be None or an integer class id in "
                          f"[{_INT32.min}, {_INT32.max}], got {value!r}")
    return int(value)


def _smoothing(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
            0.0 <= float(value) <= 1.0):
        raise ConfigError(f"label_smoothing must be a number in [0, 1], got {value!r}")
    return float(value)


class MeanSquaredError(Loss):
    """``mean((y_true - y_pred) ** 2, axis=-1)`` per position."""

    fn = "mean_squared_error"


class MeanAbsoluteError(Loss):
    """``mean(|y_true - y_pred|, axis=-1)`` per position."""

    fn = "mean_absolute_error"


class _SmoothedCrossentropy(Loss):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 axis: int = -1, reduction: str = REDUCTION, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(name, reduction, dtype)
        if axis != -1:
            raise ConfigError(f"{type(self).__name__}: axis={axis!r} is not supported; the "
                              f"classes must be on the last axis (axis=-1)")
        self.from_logits = _flag("from_logits", from_logits)
        self.label_smoothing = _smoothing(label_smoothing)


class BinaryCrossentropy(_SmoothedCrossentropy):
    """Binary crossentropy, averaged over the last axis; labels smoothed towards 0.5."""

    fn = "binary_crossentropy"


class CategoricalCrossentropy(_SmoothedCrossentropy):
    """Crossentropy against one-hot targets; smoothing gives ``ls / num_classes`` to all."""

    fn = "categorical_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    """Crossentropy against integer class ids of shape (B, T) or (B, T, 1).

    Parameters
    ----------
    from_logits : bool
        ``y_pred`` holds logits (softmax applied inside) rather than probabilities.
    ignore_class : int or None
        Positions labelled with this id are dropped like masked positions (Keras 3):
        score 0, no gradient, and left out of the mean's denominator. Typical values are
        -1, 255 or -100. None (the default) ignores nothing.
    name : str or None
        The loss's name; defaults to ``"sparse_categorical_crossentropy"``.
    """

    fn = "sparse_categorical_crossentropy"
    _args = ("from_logits", "ignore_class")

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str = REDUCTION, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name, reduction, dtype)
        self.from_logits = _flag("from_logits", from_logits)
        self.ignore_class = check_ignore_class(ignore_class)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None) -> np.ndarray:
    """Per-position sparse categorical crossentropy, as Keras 3's function of that name.

    Parameters
    ----------
    y_true : array_like
        Class ids of shape ``y_pred.shape[:-1]`` (or with a trailing axis of 1).
    y_pred : array_like
        Probabilities (or logits with ``from_logits``) with classes on the last axis.
    from_logits : bool
        ``y_pred`` holds logits.
    ignore_class : int or None
        Positions labelled with it score 0 and their ids are not checked.

    Returns
    -------
    numpy.ndarray
        The scores, of shape ``y_pred.shape[:-1]`` in y_pred's float dtype (float32 for
        other inputs).
    """
    loss = SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore_class)
    p = _as_float_array("y_pred", y_pred)
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float32)
    y = _as_float_array("y_true", y_true)
    return get_op("loss_score").forward(loss.attrs(), {"y_pred": p, "y_true": y})[0]


_CLASSES = (MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
            SparseCategoricalCrossentropy)
ALIASES: dict[str, type[Loss]] = {c.fn: c for c in _CLASSES}
ALIASES.update({c.__name__: c for c in _CLASSES})
ALIASES.update({"mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError,
                "MAE": MeanAbsoluteError, "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy})


def serialize(loss: Loss) -> dict[str, Any]:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: dict[str, Any]) -> Loss:
    cls = _lookup(str(config.get("class_name", "")))
    return cls.from_config(dict(config.get("config", {})))


def _lookup(name: str) -> type[Loss]:
    if name in ALIASES:
        return ALIASES[name]
    lower = {k.lower(): v for k, v in ALIASES.items()}
    if name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown loss {name!r}{hint} (known: {sorted(c.fn for c in _CLASSES)} "
                      f"and the aliases 'mse', 'mae', 'bce')")


def get(identifier: str | dict | Loss) -> Loss:
    """A :class:`Loss` from a name, a ``{"class_name", "config"}`` dict or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return _lookup(identifier)()
    raise ConfigError(f"cannot interpret {identifier!r} as a loss; give a name such as "
                      f"'mse' or a graphmask.losses.Loss instance")
