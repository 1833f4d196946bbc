"""User-facing losses (graphmask.losses) and metric resolution (graphmask.metrics)."""
from __future__ import annotations

import math
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
