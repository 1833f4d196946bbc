"""Keras 3's metric classes: ``update_state`` / ``result`` / ``reset_state`` on NumPy arrays,
and usable in ``compile(metrics=[...])``.

Standalone, a metric accumulates over calls exactly as Keras 3's does: ``Mean``-based
metrics reduce each sample to one value (``reduce_to_samplewise_values``: values and
weights are averaged over the non-batch axes, so a (B, T) score with a (B, T) weight
gives each sample ``mean_t(v * w)`` and weight ``mean_t(w)``), then ``result`` is
``sum(values) / sum(weights)`` (0 when nothing was counted). A 0/1 ``sample_weight`` is
how a mask is given standalone.

In ``compile``, the metrics whose per-position score the graph computes
(``metric_score`` op: accuracies, MSE, MAE, crossentropies) run in the compiled graph
and count the kept positions of the output's mask; the others (``host = True``:
Precision, Recall, AUC, RMSE, top-k, ...) are updated after each batch from the output,
its mask and the targets, with ``sample_weight = mask`` (times the batch's sample weight
for ``weighted_metrics``). Keras 3 ignores the mask in its confusion-matrix metrics
(Precision, Recall, AUC, TruePositives...) and so counts padded positions; graphmask
leaves them out (docs/keras_api.md).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphmask.errors import ConfigError, InputError, ShapeError
from graphmask.ops.metrics import metric_reference
from graphmask.training.losses import _flag, check_ignore_class

F32 = np.float32
EPS = 1e-7  # Keras's backend.epsilon()


def _same_rank(x1, x2, expand_rank_1=True):
    """Keras's ``squeeze_or_expand_to_same_rank``."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _array(value, who: str, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{who}: {what} must hold numbers, got dtype {arr.dtype}")
    return arr


def samplewise(values, sample_weight, reduce_fn=np.mean):
    """Keras 3's ``reduce_to_samplewise_values``: (values per sample, weight per sample)."""
    values = np.asarray(values, dtype=F32)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=F32)
        values, sw = _same_rank(values, sw)
        if values.ndim > sw.ndim:
            values = reduce_fn(values, axis=tuple(range(sw.ndim, values.ndim)))
        try:
            sw = np.broadcast_to(sw, values.shape)
        except ValueError:
            raise ShapeError(f"sample_weight of shape {np.shape(sample_weight)} does not fit "
                             f"values of shape {values.shape}") from None
        values = values * sw
        if sw.ndim > 1:
            sw = reduce_fn(sw, axis=tuple(range(1, sw.ndim)))
        sample_weight = sw
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


class Metric:
    """Base class of the metric objects (Keras 3's ``keras.metrics.Metric`` protocol).

    Subclasses define ``update_state``, ``result`` and ``reset_state``; ``fn`` names the
    graph's ``metric_score`` function when the compiled graph can compute the metric.
    """

    fn: str = ""
    _args: tuple[str, ...] = ()
    host = False  # computed outside the graph in compile (see the module doc)
    default_name = ""

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        who = type(self).__name__
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{who}: name must be a string, got {name!r}")
        if dtype not in (None, "float32", np.float32):
            raise ConfigError(f"{who}: dtype={dtype!r} is not supported (float32 results)")
        self.name = name or self.default_name or self.fn
        self.reset_state()

    # ---- the Keras protocol --------------------------------------------------------------
    def reset_state(self) -> None:
        """Forget everything accumulated."""

    def update_state(self, *args, **kwargs) -> None:
        raise TypeError(f"{type(self).__name__} must define update_state")

    def result(self):
        raise TypeError(f"{type(self).__name__} must define result")

    def __call__(self, *args, **kwargs):
        """``update_state`` then ``result``, as Keras."""
        self.update_state(*args, **kwargs)
        return self.result()

    # ---- compile and files ----------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        """Attributes of the ``metric_score`` op (arguments left at None are omitted)."""
        if not self.fn or self.host:
            raise ConfigError(f"metric {self.name!r} ({type(self).__name__}) has no graph op")
        out: dict[str, Any] = {"fn": self.fn}
        out.update({k: getattr(self, k) for k in self._args if getattr(self, k) is not None})
        return out

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **{k: getattr(self, k) for k in self._args}}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Metric:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))


# ---- reductions -------------------------------------------------------------------------------
class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(values, sample_weight)``."""

    default_name = "mean"

    def reset_state(self):
        self.total, self.count = F32(0), F32(0)

    def update_state(self, values, sample_weight=None):
        values = _array(values, self.name, "values")
        values, sw = samplewise(values, sample_weight)
        self.total = F32(self.total + np.sum(values, dtype=F32))
        n = np.sum(sw, dtype=F32) if sw is not None else (values.shape[0] if values.ndim else 1)
        self.count = F32(self.count + F32(n))

    def result(self):
        return F32(self.total / self.count) if self.count else F32(0)


class Sum(Metric):
    """The (weighted) sum of the values given to ``update_state(values, sample_weight)``."""

    default_name = "sum"

    def reset_state(self):
        self.total = F32(0)

    def update_state(self, values, sample_weight=None):
        values, _ = samplewise(_array(values, self.name, "values"), sample_weight, np.sum)
        self.total = F32(self.total + np.sum(values, dtype=F32))

    def result(self):
        return self.total


class MeanMetricWrapper(Mean):
    """A per-position score averaged as Keras's ``MeanMetricWrapper``:
    ``update_state(y_true, y_pred, sample_weight=None)``."""

    default_name = ""  # the score function's name

    def values(self, y_true, y_pred) -> np.ndarray:
        """The per-sample or per-position score (the graph's ``metric_score``)."""
        y_pred = _array(y_pred, self.name, "y_pred")
        y_true = _array(y_true, self.name, "y_true")
        if self.fn.startswith("sparse_"):
            if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
            want = y_pred.shape[:-1]
        else:
            if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
                y_true = y_true[..., None]
            want = y_pred.shape
        if y_true.shape != want:
            raise ShapeError(f"{self.name}: y_true of shape {y_true.shape} does not fit y_pred "
                             f"of shape {y_pred.shape}")
        pred = y_pred if y_pred.dtype.kind == "f" else y_pred.astype(F32)
        return metric_reference(self.attrs(), {"y_pred": pred, "y_true": y_true})

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self.values(y_true, y_pred), sample_weight)


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels (elementwise)."""

    fn = "accuracy"

    def values(self, y_true, y_pred):
        y_true = _array(y_true, self.name, "y_true")
        y_pred = _array(y_pred, self.name, "y_pred")
        y_true, y_pred = _same_rank(y_true, y_pred)
        return (y_true == y_pred).astype(F32)


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches the 0/1 label."""

    fn = "binary_accuracy"
    _args = ("threshold",)

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or not 0 <= threshold <= 1:
            raise ConfigError(f"BinaryAccuracy: threshold must be in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(name, dtype)


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of ``y_pred`` is the argmax of the one-hot label."""

    fn = "categorical_accuracy"


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of ``y_pred`` is the integer label."""

    fn = "sparse_categorical_accuracy"


class MeanSquaredError(MeanMetricWrapper):
    """``mean((y_true - y_pred)**2)`` over the last axis, averaged."""

    fn = "mean_squared_error"


class MeanAbsoluteError(MeanMetricWrapper):
    """``mean(|y_true - y_pred|)`` over the last axis, averaged."""

    fn = "mean_absolute_error"


class _Crossentropy(MeanMetricWrapper):
    _args = ("from_logits", "label_smoothing")

    def __init__(self, name=None, dtype=None, from_logits=False, label_smoothing=0.0, axis=-1):
        who = type(self).__name__
        if axis != -1:
            raise ConfigError(f"{who}: axis={axis!r} is not supported (classes on axis -1)")
        self.from_logits = _flag("from_logits", from_logits)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0 <= label_smoothing <= 1:
            raise ConfigError(f"{who}: label_smoothing must be in [0, 1], got "
                              f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        super().__init__(name, dtype)


class BinaryCrossentropy(_Crossentropy):
    """Binary crossentropy as a metric."""

    fn = "binary_crossentropy"


class CategoricalCrossentropy(_Crossentropy):
    """Categorical crossentropy (one-hot labels) as a metric."""

    fn = "categorical_crossentropy"


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """Sparse categorical crossentropy as a metric (Keras 3's class of that name).

    Parameters
    ----------
    name : str
        The result's name; defaults to ``"sparse_categorical_crossentropy"``.
    dtype : None
        Accepted for Keras compatibility; only None (float32 results).
    from_logits : bool
        ``y_pred`` holds logits rather than probabilities.
    ignore_class : int or None
        Positions labelled with this id score 0 and are left out of the count when the
        output is masked or the metric is weighted (see ``graphmask.training.metrics``).
    axis : int
        Only -1 (classes on the last axis).
    """

    fn = "sparse_categorical_crossentropy"
    _args = ("from_logits", "ignore_class")

    def __init__(self, name: str = "sparse_categorical_crossentropy", dtype: Any = None,
                 from_logits: bool = False, ignore_class: int | None = None,
                 axis: int = -1) -> None:
        who = type(self).__name__
        if axis != -1:
            raise ConfigError(f"{who}: axis={axis!r} is not supported (classes are on the "
                              f"last axis, -1)")
        self.from_logits = _flag("from_logits", from_logits)
        self.ignore_class = check_ignore_class(ignore_class, f"metric {who}")
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.values(y_true, y_pred)
        if self.ignore_class is not None:  # ignored positions leave the count (Keras 3)
            ids = np.asarray(y_true)
            if ids.ndim == np.ndim(y_pred) and ids.shape[-1] == 1:
                ids = ids[..., 0]
            keep = (ids != self.ignore_class).astype(F32)
            sample_weight = keep if sample_weight is None else \
                np.asarray(sample_weight, F32).reshape(
                    np.shape(sample_weight) + (1,) * (keep.ndim - np.ndim(sample_weight))) * keep
        Mean.update_state(self, values, sample_weight)


# ---- metrics the graph has no score for (host metrics in compile) ----------------------------
class _HostMean(MeanMetricWrapper):
    host = True

    def values(self, y_true, y_pred):
        y_pred = _array(y_pred, self.name, "y_pred").astype(F32)
        y_true = _array(y_true, self.name, "y_true")
        return self._fn(y_true, y_pred)


class RootMeanSquaredError(_HostMean):
    """``sqrt`` of the (weighted) mean squared error, as Keras 3."""

    default_name = "root_mean_squared_error"

    def _fn(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true.astype(F32), y_pred)
        return np.square(y_pred - y_true)

    def result(self):
        return F32(math.sqrt(super().result()))


class MeanAbsolutePercentageError(_HostMean):
    """``100 * mean(|y_true - y_pred| / max(|y_true|, epsilon))`` over the last axis."""

    default_name = "mean_absolute_percentage_error"

    def _fn(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true.astype(F32), y_pred)
        diff = np.abs((y_true - y_pred) / np.maximum(np.abs(y_true), F32(EPS)))
        return F32(100) * np.mean(diff, axis=-1)


class MeanSquaredLogarithmicError(_HostMean):
    """``mean((log(y_pred + 1) - log(y_true + 1))**2)`` over the last axis (values below
    epsilon clipped), as Keras 3."""

    default_name = "mean_squared_logarithmic_error"

    def _fn(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true.astype(F32), y_pred)
        a = np.log(np.maximum(y_pred, F32(EPS)) + F32(1))
        b = np.log(np.maximum(y_true, F32(EPS)) + F32(1))
        return np.mean(np.square(a - b), axis=-1)


class _TopK(_HostMean):
    _args = ("k",)

    def __init__(self, k=5, name=None, dtype=None):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"{type(self).__name__}: k must be a positive int, got {k!r}")
        self.k = int(k)
        super().__init__(name, dtype)

    def _hit(self, ids, y_pred):
        kth = -np.sort(-y_pred, axis=-1)[..., min(self.k, y_pred.shape[-1]) - 1]
        target = np.take_along_axis(y_pred, ids[..., None].astype(np.int64), -1)[..., 0]
        return (target >= kth).astype(F32)  # ties with the k-th score count as hits


class TopKCategoricalAccuracy(_TopK):
    """How often the one-hot label's class is among the ``k`` highest scores."""

    default_name = "top_k_categorical_accuracy"

    def _fn(self, y_true, y_pred):
        return self._hit(np.argmax(y_true, axis=-1), y_pred)


class SparseTopKCategoricalAccuracy(_TopK):
    """How often the integer label is among the ``k`` highest scores."""

    default_name = "sparse_top_k_categorical_accuracy"

    def _fn(self, y_true, y_pred):
        ids = y_true[..., 0] if y_true.ndim == y_pred.ndim else y_true
        return self._hit(ids, y_pred)


# ---- confusion-matrix metrics -----------------------------------------------------------------
def _thresholds(who, thresholds, default):
    if thresholds is None:
        return [default]
    items = [thresholds] if isinstance(thresholds, (int, float)) else list(thresholds)
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ConfigError(f"{who}: thresholds must be in [0, 1], got {thresholds!r}")
    return [float(t) for t in items]


def confusion_counts(y_true, y_pred, thresholds, sample_weight=None, top_k=None,
                     class_id=None) -> dict[str, np.ndarray]:
    """Keras 3's ``update_confusion_matrix_variables``: weighted tp/fp/tn/fn per threshold
    (``y_pred > threshold`` is a positive prediction)."""
    y_pred = np.asarray(y_pred, F32)
    y_true = np.asarray(y_true, F32)
    y_pred, y_true = _same_rank(y_pred, y_true)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, F32)[..., None]
        _, sw = _same_rank(y_true, sw, expand_rank_1=False)
    else:
        sw = None
    if top_k is not None:
        order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :top_k]
        keep = np.zeros(y_pred.shape, bool)
        np.put_along_axis(keep, order, True, axis=-1)
        y_pred = np.where(keep, y_pred, -np.inf)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ShapeError(f"class_id needs y_pred of shape (samples, classes), got "
                             f"{y_pred.shape}")
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    pred = y_pred.reshape(-1)
    label = y_true.reshape(-1).astype(bool)
    w = np.ones(pred.shape, F32) if sw is None else \
        np.broadcast_to(sw, y_pred.shape).reshape(-1).astype(F32)
    th = np.asarray(thresholds, F32)[:, None]
    pos = pred[None, :] > th
    return {"tp": np.sum(w * (pos & label), axis=1, dtype=F32),
            "fp": np.sum(w * (pos & ~label), axis=1, dtype=F32),
            "tn": np.sum(w * (~pos & ~label), axis=1, dtype=F32),
            "fn": np.sum(w * (~pos & label), axis=1, dtype=F32)}


class _Confusion(Metric):
    host = True
    _keys: tuple[str, ...] = ()
    _args = ("thresholds",)

    def __init__(self, thresholds=None, name=None, dtype=None):
        self.thresholds = thresholds
        self._th = _thresholds(type(self).__name__, thresholds, 0.5)
        super().__init__(name, dtype)

    def reset_state(self):
        self.counts = {k: np.zeros(len(self._th), F32) for k in ("tp", "fp", "tn", "fn")}

    def _update(self, y_true, y_pred, sample_weight, **kw):
        y_pred = _array(y_pred, self.name, "y_pred")
        y_true = _array(y_true, self.name, "y_true")
        got = confusion_counts(y_true, y_pred, self._th, sample_weight, **kw)
        for k in self.counts:
            self.counts[k] = self.counts[k] + got[k]

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update(y_true, y_pred, sample_weight)

    def _one(self, values):
        return values[0] if len(self._th) == 1 else values


class TruePositives(_Confusion):
    """Weighted count of positive labels predicted positive (``y_pred > threshold``)."""

    default_name = "true_positives"

    def result(self):
        return self._one(self.counts["tp"])


class FalsePositives(_Confusion):
    """Weighted count of negative labels predicted positive."""

    default_name = "false_positives"

    def result(self):
        return self._one(self.counts["fp"])


class TrueNegatives(_Confusion):
    """Weighted count of negative labels predicted negative."""

    default_name = "true_negatives"

    def result(self):
        return self._one(self.counts["tn"])


class FalseNegatives(_Confusion):
    """Weighted count of positive labels predicted negative."""

    default_name = "false_negatives"

    def result(self):
        return self._one(self.counts["fn"])


def _ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, F32(0), a / np.where(b == 0, F32(1), b)).astype(F32)


class _PrecisionRecall(_Confusion):
    _args = ("thresholds", "top_k", "class_id")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        who = type(self).__name__
        for arg, val in (("top_k", top_k), ("class_id", class_id)):
            if val is not None and (isinstance(val, bool) or not isinstance(
                    val, (int, np.integer)) or val < (1 if arg == "top_k" else 0)):
                kind = "positive" if arg == "top_k" else "non-negative"
                raise ConfigError(f"{who}: {arg} must be a {kind} int or None, got {val!r}")
        self.top_k, self.class_id = top_k, class_id
        self.thresholds = thresholds
        self._th = _thresholds(who, thresholds, 0.5 if top_k is None else -np.inf)
        Metric.__init__(self, name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update(y_true, y_pred, sample_weight, top_k=self.top_k, class_id=self.class_id)


class Precision(_PrecisionRecall):
    """``tp / (tp + fp)`` over all positions (``y_pred > threshold`` is positive; optional
    ``top_k`` and ``class_id`` as Keras)."""

    default_name = "precision"

    def result(self):
        return self._one(_ratio(self.counts["tp"], self.counts["tp"] + self.counts["fp"]))


class Recall(_PrecisionRecall):
    """``tp / (tp + fn)`` over all positions."""

    default_name = "recall"

    def result(self):
        return self._one(_ratio(self.counts["tp"], self.counts["tp"] + self.counts["fn"]))


class AUC(Metric):
    """Area under the ROC or PR curve from confusion counts at ``num_thresholds``
    thresholds, as Keras 3 (``interpolation``, ``minoring`` or ``majoring`` sums; PR with
    interpolation uses Davis and Goadrich's rule). Only single-label data
    (``multi_label=False``)."""

    host = True
    default_name = "auc"
    _args = ("num_thresholds", "curve", "summation_method", "thresholds", "from_logits")

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        who = "AUC"
        if multi_label or num_labels is not None or label_weights is not None:
            raise ConfigError(f"{who}: multi_label, num_labels and label_weights are not "
                              f"supported (single-label AUC only)")
        if str(curve).upper() not in ("ROC", "PR"):
            raise ConfigError(f"{who}: curve must be 'ROC' or 'PR', got {curve!r}")
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise ConfigError(f"{who}: summation_method must be 'interpolation', 'minoring' "
                              f"or 'majoring', got {summation_method!r}")
        if thresholds is not None:
            inner = sorted(_thresholds(who, thresholds, 0.5))
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(
                    num_thresholds, (int, np.integer)) or num_thresholds <= 1:
                raise ConfigError(f"{who}: num_thresholds must be an int > 1, got "
                                  f"{num_thresholds!r}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
        self.thresholds = thresholds
        self._th = [0.0 - EPS] + inner + [1.0 + EPS]
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        self.from_logits = _flag("from_logits", from_logits)
        super().__init__(name, dtype)

    def get_config(self):
        cfg = super().get_config()
        if self.thresholds is not None:
            cfg.pop("num_thresholds")
        return cfg

    def reset_state(self):
        self.counts = {k: np.zeros(self.num_thresholds, F32) for k in ("tp", "fp", "tn", "fn")}

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = _array(y_pred, self.name, "y_pred").astype(F32)
        if self.from_logits:
            y_pred = (F32(1) / (F32(1) + np.exp(-y_pred))).astype(F32)
        got = confusion_counts(_array(y_true, self.name, "y_true"), y_pred, self._th,
                               sample_weight)
        for k in self.counts:
            self.counts[k] = self.counts[k] + got[k]

    def _pr_interpolated(self):
        tp, fp, fn = self.counts["tp"], self.counts["fp"], self.counts["fn"]
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _ratio(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _ratio(p[:-1], np.maximum(p[1:], 0)), F32(1))
        with np.errstate(divide="ignore"):
            inc = _ratio(slope * (dtp + intercept * np.log(ratio)),
                         np.maximum(tp[1:] + fn[1:], 0))
        return F32(np.sum(inc, dtype=F32))

    def result(self):
        c = self.counts
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._pr_interpolated()
        recall = _ratio(c["tp"], c["tp"] + c["fn"])
        if self.curve == "ROC":
            x, y = _ratio(c["fp"], c["fp"] + c["tn"]), recall
        else:
            x, y = recall, _ratio(c["tp"], c["tp"] + c["fp"])
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / F32(2)
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return F32(np.sum((x[:-1] - x[1:]) * heights, dtype=F32))


CLASSES = {c.__name__: c for c in (
    Mean, Sum, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
    SparseCategoricalCrossentropy, RootMeanSquaredError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall, AUC)}
