"""User-facing losses (graphmask.losses) and metric resolution (graphmask.metrics)."""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

from graphmask import losses, metrics
from graphmask.errors import ConfigError, InputError


@pytest.mark.parametrize("name,cls", [
    ("mse", losses.MeanSquaredError), ("MSE", losses.MeanSquaredError),
    ("mean_squared_error", losses.MeanSquaredError), ("MeanSquaredError", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("bce", losses.BinaryCrossentropy), ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
])
def test_get_by_name(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls
    assert loss.attrs()["fn"] == cls.fn


def test_get_unknown_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'sparse_categorical_crossentropy'"):
        losses.get("sparse_categorial_crossentropy")
    with pytest.raises(ConfigError, match="unknown loss 'hinge'"):
        losses.get("hinge")
    with pytest.raises(ConfigError):
        losses.get(3)


def test_instance_config_roundtrip_and_attrs():
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    assert losses.get(loss) is loss
    assert loss.attrs() == {"fn": "categorical_crossentropy", "from_logits": True,
                            "label_smoothing": 0.1}
    again = losses.deserialize(losses.serialize(loss))
    assert again == loss and again.get_config() == loss.get_config()
    assert losses.get({"class_name": "BinaryCrossentropy",
                       "config": {"from_logits": True}}).from_logits is True
    assert losses.SparseCategoricalCrossentropy().attrs() == {
        "fn": "sparse_categorical_crossentropy", "from_logits": False}
    scce = losses.SparseCategoricalCrossentropy(True, -100, name="seg")
    assert scce.attrs() == {"fn": "sparse_categorical_crossentropy", "from_logits": True,
                            "ignore_class": -100}
    assert scce.get_config() == {"name": "seg", "reduction": "sum_over_batch_size",
                                 "from_logits": True, "ignore_class": -100}
    assert losses.SparseCategoricalCrossentropy().get_config()["ignore_class"] is None
    again = losses.deserialize(losses.serialize(scce))
    assert again == scce and again.ignore_class == -100 and again.name == "seg"
    assert again != losses.SparseCategoricalCrossentropy(True, 255, name="seg")
    with pytest.raises(ConfigError, match="label_smoothing"):
        losses.BinaryCrossentropy(label_smoothing=2)
    with pytest.raises(ConfigError, match="from_logits"):
        losses.BinaryCrossentropy(from_logits="yes")


def test_call_mask_and_weights():
    rng = np.random.default_rng(0)
    y = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    p = rng.standard_normal((1, 4, 3)).astype(np.float32)
    mask = np.array([[True, True, False, False]])
    mse = losses.MeanSquaredError()
    got = mse(y, p, mask=mask)
    assert isinstance(got, np.float32)
    np.testing.assert_allclose(got, np.mean((y[0, :2] - p[0, :2]) ** 2), rtol=1e-6)
    np.testing.assert_allclose(mse(y, p), np.mean((y - p) ** 2), rtol=1e-6)
    # per-sample weight broadcasts over time; the masked denominator counts kept steps
    y2, p2 = np.concatenate([y, y]), np.concatenate([p, p + 1])
    m2 = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    w = np.array([2.0, 0.5])
    s = np.mean((y2 - p2) ** 2, -1)
    np.testing.assert_allclose(mse(y2, p2, sample_weight=w, mask=m2),
                               np.sum(s * m2 * w[:, None]) / 5, rtol=1e-6)
    np.testing.assert_allclose(mse(y2, p2, sample_weight=w),
                               np.sum(s * w[:, None]) / 8, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mse(y2, p2, mask=np.zeros((2, 4), bool)) == 0.0


def test_call_crossentropies_hand_values():
    assert math.isclose(losses.BinaryCrossentropy()([[1.0]], [[0.5]]), math.log(2),
                        rel_tol=1e-6)
    assert math.isclose(losses.BinaryCrossentropy(from_logits=True)([[0.0]], [[1e30]]), 1e30,
                        rel_tol=1e-6)
    scce = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert math.isclose(scce([[2], [0]], np.zeros((2, 3))), math.log(3), rel_tol=1e-6)
    with pytest.raises(InputError, match=r"class id 3 at y_true\[1, 0\]"):
        scce([[2], [3]], np.zeros((2, 3)))
    cce = losses.CategoricalCrossentropy()
    assert math.isclose(cce([[0, 1]], [[0.5, 0.5]]), math.log(2), rel_tol=1e-6)


def test_metrics_resolution():
    bce, cce = losses.BinaryCrossentropy(), losses.CategoricalCrossentropy()
    scce = losses.SparseCategoricalCrossentropy()
    # Keras 3 picks the accuracy from the shapes
    assert metrics.get("accuracy", None, (8, 1), (8, 1))["fn"] == "binary_accuracy"
    assert metrics.get("acc", None, (8, 5), (8, 5, 3))["fn"] == "sparse_categorical_accuracy"
    assert metrics.get("accuracy", None, (8, 5, 1), (8, 5, 3))["fn"] == \
        "sparse_categorical_accuracy"
    assert metrics.get("accuracy", None, (8, 3), (8, 3))["fn"] == "categorical_accuracy"
    # shapes win over the loss (Keras looks at shapes only)
    assert metrics.get("accuracy", cce, y_true_shape=(8, 1), y_pred_shape=(8, 1)) == {
        "fn": "binary_accuracy", "threshold": 0.5}
    # without shapes, the loss decides
    assert metrics.get("accuracy", bce) == {"fn": "binary_accuracy", "threshold": 0.5}
    assert metrics.get("acc", cce)["fn"] == "categorical_accuracy"
    assert metrics.get("accuracy", scce)["fn"] == "sparse_categorical_accuracy"
    with pytest.raises(ConfigError, match="needs the target and prediction shapes"):
        metrics.get("accuracy", losses.MeanSquaredError())
    assert metrics.get("mse") == {"fn": "mean_squared_error"}
    assert metrics.get("MAE")["fn"] == "mean_absolute_error"
    assert metrics.get("bce") == {"fn": "binary_crossentropy", "from_logits": False,
                                  "label_smoothing": 0.0}
    assert metrics.get({"fn": "mean_squared_error"}) == {"fn": "mean_squared_error"}
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        metrics.get("acuracy")


@pytest.mark.parametrize("bad", [1.5, True, "255", 2**31, -2**31 - 1, [0]])
def test_ignore_class_must_be_an_int32_class_id(bad):
    words = r"SparseCategoricalCrossentropy: ignore_class must be None or an integer class id"
    with pytest.raises(ConfigError, match=rf"{words} .*got {re.escape(repr(bad))}"):
        losses.SparseCategoricalCrossentropy(ignore_class=bad)
    with pytest.raises(ConfigError, match=r"metric SparseCategoricalCrossentropy: ignore_class"):
        metrics.SparseCategoricalCrossentropy(ignore_class=bad)
    assert losses.SparseCategoricalCrossentropy(ignore_class=np.int64(-1)).ignore_class == -1


def test_call_ignore_class_with_mask_and_weights():
    # Keras 3: ignored positions are dropped like masked ones (out of the sum and count)
    p = np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]],
                  [[0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]],
                 np.float32)
    y = np.array([[0, -1, 2, 99], [2, 1, -1, -1]])
    m = np.array([[True, True, True, False], [True, True, True, True]])
    w = np.array([2.0, 0.5], np.float32)
    scce = losses.SparseCategoricalCrossentropy(ignore_class=-1)
    logq = -np.log(np.float64(p))
    kept = [(0, 0, 0, 2.0), (0, 2, 2, 2.0), (1, 0, 2, 0.5), (1, 1, 1, 0.5)]
    want = sum(wt * logq[b, t, c] for b, t, c, wt in kept) / 4
    np.testing.assert_allclose(scce(y, p, sample_weight=w, mask=m), want, rtol=1e-6)
    np.testing.assert_allclose(scce(y[..., None], p, sample_weight=w, mask=m), want, rtol=1e-6)
    no_w = sum(logq[b, t, c] for b, t, c, _ in kept) / 4
    np.testing.assert_allclose(scce(y, p, mask=m), no_w, rtol=1e-6)
    # without a mask, 99 at (0, 3) counts: it is outside the 3 classes
    with pytest.raises(InputError, match=r"class id 99 at y_true\[0, 3\] is outside \[0, 3\)"):
        scce(y, p)
    y2 = np.where(y == 99, -1, y)
    np.testing.assert_allclose(scce(y2, p), no_w, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scce(np.full((2, 4), -1), p) == 0.0
    # a masked class id is not checked, ignore_class or not
    plain = losses.SparseCategoricalCrossentropy()
    np.testing.assert_allclose(plain(np.where(m, 1, -100), p, mask=m),
                               np.mean(logq[..., 1][m]), rtol=1e-6)
    with pytest.raises(InputError, match=r"mask of shape \(2, 3\) does not fit"):
        plain(y, p, mask=m[:, :3])


def test_functional_sparse_categorical_crossentropy():
    logits = np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]], np.float32)
    s = losses.sparse_categorical_crossentropy(np.array([[-1, 2]]), logits, from_logits=True,
                                               ignore_class=-1)
    assert s.shape == (1, 2) and s.dtype == np.float32
    np.testing.assert_allclose(s, [[0.0, 1.480129]], rtol=1e-6)


def test_metric_objects_and_their_configs():
    m = metrics.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    assert m.name == "sparse_categorical_crossentropy"
    assert metrics.get(m) == {"fn": "sparse_categorical_crossentropy", "from_logits": True,
                              "ignore_class": 0}
    cfg = metrics.serialize(m)
    assert cfg == {"class_name": "SparseCategoricalCrossentropy", "config": {
        "name": "sparse_categorical_crossentropy", "from_logits": True, "ignore_class": 0}}
    assert metrics.deserialize(cfg) == m and metrics.get(cfg) == metrics.get(m)
    assert metrics.standardize(m) == cfg and metrics.standardize("acc") == "acc"
    assert metrics.name_of(m) == metrics.name_of(cfg) == "sparse_categorical_crossentropy"
    assert metrics.name_of(metrics.SparseCategoricalCrossentropy(name="xent")) == "xent"
    assert metrics.name_of({"fn": "mean_squared_error"}) == "mean_squared_error"
    assert metrics.get(metrics.SparseCategoricalCrossentropy()) == \
        metrics.get("sparse_categorical_crossentropy")
    with pytest.raises(ConfigError, match="axis=1 is not supported"):
        metrics.SparseCategoricalCrossentropy(axis=1)
    with pytest.raises(ConfigError, match="dtype='float16' is not supported"):
        metrics.SparseCategoricalCrossentropy(dtype="float16")
    with pytest.raises(ConfigError, match="unknown metric class 'Hinge'"):
        metrics.get({"class_name": "Hinge", "config": {}})
    with pytest.raises(ConfigError, match="ignore_class applies to sparse_categorical_cross"):
        metrics.get({"fn": "sparse_categorical_accuracy", "ignore_class": 0})


def test_ignore_class_in_compile_names_and_saving(tmp_path):
    import graphmask as gm
    x = gm.Input(shape=(4,), dtype="int32")
    out = gm.Dense(3, activation="softmax")(gm.Embedding(6, 3, mask_zero=True)(x))
    model = gm.Model(x, out)
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1)
    xent = metrics.SparseCategoricalCrossentropy(ignore_class=-1)
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy", xent],
                  weighted_metrics=[xent])
    assert model._result_names() == ["loss", "accuracy", "sparse_categorical_crossentropy",
                                     "weighted_sparse_categorical_crossentropy"]
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    y = np.array([[1, -1, 2, 7], [0, 2, -5, 99]])
    sw = np.array([1.0, 3.0])
    before = model.evaluate(ids, y, sample_weight=sw, return_dict=True)
    path = tmp_path / "m.gmz"
    model.save(path)
    again = gm.load_model(path)
    assert again.loss_objects[0] == loss
    assert again.compiled_metrics == model.compiled_metrics
    assert again.evaluate(ids, y, sample_weight=sw, return_dict=True) == before


# ---------------------------------------------------------------- optional Keras oracle


def test_against_keras3():
    from tests.conformance.oracle import import_keras
    keras = import_keras()  # Keras 3 on torch; the skip names what is missing
    from keras.src.backend import set_keras_mask

    rng = np.random.default_rng(7)
    b, t, c = 3, 4, 5
    p = rng.random((b, t, c)).astype(np.float32)
    logits = (rng.standard_normal((b, t, c)) * 3).astype(np.float32)
    ids = rng.integers(0, c, (b, t))
    onehot = np.eye(c, dtype=np.float32)[ids]
    binary = rng.integers(0, 2, (b, t, c)).astype(np.float32)
    mask = rng.random((b, t)) < 0.6
    cases = [
        (losses.MeanSquaredError(), keras.losses.MeanSquaredError(), binary, p),
        (losses.MeanAbsoluteError(), keras.losses.MeanAbsoluteError(), binary, p),
        (losses.BinaryCrossentropy(label_smoothing=0.2),
         keras.losses.BinaryCrossentropy(label_smoothing=0.2), binary, p),
        (losses.BinaryCrossentropy(from_logits=True),
         keras.losses.BinaryCrossentropy(from_logits=True), binary, logits),
        (losses.CategoricalCrossentropy(label_smoothing=0.1),
         keras.losses.CategoricalCrossentropy(label_smoothing=0.1), onehot, p),
        (losses.CategoricalCrossentropy(from_logits=True),
         keras.losses.CategoricalCrossentropy(from_logits=True), onehot, logits),
        (losses.SparseCategoricalCrossentropy(), keras.losses.SparseCategoricalCrossentropy(),
         ids, p),
        (losses.SparseCategoricalCrossentropy(from_logits=True),
         keras.losses.SparseCategoricalCrossentropy(from_logits=True), ids, logits),
    ]
    for ours, theirs, y, pred in cases:
        np.testing.assert_allclose(ours(y, pred), np.asarray(theirs(y, pred)), rtol=2e-6)
        tp = keras.ops.convert_to_tensor(pred)
        set_keras_mask(tp, keras.ops.convert_to_tensor(mask))
        np.testing.assert_allclose(ours(y, pred, mask=mask), np.asarray(theirs(y, tp)),
                                   rtol=2e-6)


def test_keras_loss_configs_with_reduction_axis_and_dtype_load():
    """What Keras 3 writes for a loss object (``.keras`` compile configs): reduction,
    and axis / dtype where the class has them. Only Keras's default reduction exists here:
    another is refused by name, never silently reduced differently."""
    mse = losses.deserialize({"class_name": "MeanSquaredError", "config": {
        "name": "mean_squared_error", "reduction": "sum_over_batch_size"}})
    assert isinstance(mse, losses.MeanSquaredError) and mse.reduction == "sum_over_batch_size"
    bce = losses.deserialize({"class_name": "BinaryCrossentropy", "config": {
        "name": "bce", "reduction": "sum_over_batch_size", "from_logits": True,
        "label_smoothing": 0.0, "axis": -1, "dtype": None}})
    assert bce.from_logits and bce.name == "bce"
    for cls, kwargs, arg in [(losses.MeanSquaredError, {"reduction": "sum"}, "reduction='sum'"),
                             (losses.SparseCategoricalCrossentropy, {"reduction": None},
                              "reduction=None"),
                             (losses.CategoricalCrossentropy, {"axis": 1}, "axis=1"),
                             (losses.MeanAbsoluteError, {"dtype": "int8"}, "dtype must be")]:
        with pytest.raises(ConfigError, match=rf"{cls.__name__}: {re.escape(arg)}"):
            cls(**kwargs)
