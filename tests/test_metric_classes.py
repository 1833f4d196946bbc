"""Keras 3's metric classes: standalone update_state/result/reset_state (exact values worked
out by hand) and in compile (graph metrics and metrics updated from the outputs)."""
from __future__ import annotations

import numpy as np
import pytest

import graphmask as gm
from graphmask import metrics
from graphmask.errors import ConfigError

F32 = np.float32


def test_mean_and_sum_reduce_per_sample_as_keras():
    m = metrics.Mean()
    m.update_state([1, 3, 5, 7])
    assert m.result() == 4
    m.update_state([[1, 2], [3, 4]], sample_weight=[[1, 0], [1, 1]])
    # per sample: mean_t(v*w) = [0.5, 3.5], weight mean_t(w) = [0.5, 1]
    assert m.result() == pytest.approx((16 + 0.5 + 3.5) / (4 + 0.5 + 1))
    m.reset_state()
    assert m.result() == 0
    s = metrics.Sum()
    s.update_state([[1, 2], [3, 4]], sample_weight=[2, 0])
    assert s.result() == 6  # sum over the row, weighted per sample


def test_accuracies_with_a_mask_as_sample_weight():
    y = np.array([[0, 2, 1], [1, 1, 0]])
    p = np.eye(3, dtype=F32)[[[0, 1, 1], [1, 2, 2]]] * 0.8 + 0.05
    mask = np.array([[1, 1, 0], [1, 1, 1]], F32)
    acc = metrics.SparseCategoricalAccuracy()
    acc.update_state(y, p)
    assert acc.result() == pytest.approx(3 / 6)  # hits: (0,0), (0,2), (1,0)
    acc.reset_state()
    acc.update_state(y, p, sample_weight=mask)
    # per sample: row 0 mean_t(hit*m) = 1/3, weight 2/3; row 1: 1/3, 1
    assert acc.result() == pytest.approx((1 / 3 + 1 / 3) / (2 / 3 + 1))
    cat = metrics.CategoricalAccuracy()
    cat.update_state(np.eye(3)[y], p)
    assert cat.result() == pytest.approx(0.5)
    b = metrics.BinaryAccuracy(threshold=0.7)
    b.update_state([[1], [0], [1]], [[0.8], [0.75], [0.2]])
    assert b.result() == pytest.approx(1 / 3)
    a = metrics.Accuracy()
    assert a([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)  # __call__: update, result


def test_regression_metrics():
    y, p = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.5, 2.0], [2.0, 6.0]])
    mse = metrics.MeanSquaredError()
    mse.update_state(y, p)
    assert mse.result() == pytest.approx((0.125 + 2.5) / 2)
    rmse = metrics.RootMeanSquaredError()
    rmse.update_state(y, p)
    assert rmse.result() == pytest.approx(np.sqrt((0.25 + 0 + 1 + 4) / 4))
    mae = metrics.MeanAbsoluteError()
    mae.update_state(y, p, sample_weight=[1, 0])
    assert mae.result() == pytest.approx(0.25)
    mape = metrics.MeanAbsolutePercentageError()
    mape.update_state([[2.0]], [[1.0]])
    assert mape.result() == pytest.approx(50.0)


def test_confusion_metrics_precision_recall_auc():
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.6, 0.1, 0.3], F32)
    pr, rc = metrics.Precision(), metrics.Recall()
    pr.update_state(y, p)
    rc.update_state(y, p)
    assert pr.result() == pytest.approx(2 / 3) and rc.result() == pytest.approx(2 / 3)
    pr.update_state(y, p, sample_weight=[0, 1, 1, 1, 1, 1])  # the first hit weighs 0 now
    assert pr.result() == pytest.approx((2 + 1) / (3 + 2))
    multi = metrics.Recall(thresholds=[0.35, 0.85])
    multi.update_state(y, p)
    np.testing.assert_allclose(multi.result(), [1.0, 1 / 3])
    auc = metrics.AUC(num_thresholds=1001)
    auc.update_state(y, p)
    # ranks: positive scores 0.9, 0.6, 0.4 vs negatives 0.8, 0.3, 0.1: 7 of 9 pairs ordered
    assert auc.result() == pytest.approx(7 / 9, abs=1e-3)
    tp = metrics.TruePositives(thresholds=0.5)
    tp.update_state(y, p)
    assert tp.result() == 2
    top = metrics.Precision(top_k=1)
    top.update_state([[0, 1, 0], [1, 0, 0]], [[0.2, 0.5, 0.3], [0.1, 0.7, 0.2]])
    assert top.result() == pytest.approx(0.5)
    cid = metrics.Recall(class_id=2)
    cid.update_state([[0, 0, 1], [0, 0, 1]], [[0.2, 0.1, 0.7], [0.6, 0.1, 0.3]])
    assert cid.result() == pytest.approx(0.5)


def test_top_k_accuracies_count_ties():
    sp = metrics.SparseTopKCategoricalAccuracy(k=2)
    sp.update_state([2, 0], [[0.1, 0.5, 0.5], [0.2, 0.4, 0.4]])
    assert sp.result() == pytest.approx(0.5)
    tk = metrics.TopKCategoricalAccuracy(k=1)
    tk.update_state([[0, 1, 0]], [[0.3, 0.3, 0.4]])
    assert tk.result() == 0


@pytest.mark.parametrize("make,msg", [
    (lambda: metrics.BinaryAccuracy(threshold=2), "BinaryAccuracy: threshold must be in [0, 1], "
                                                  "got 2"),
    (lambda: metrics.Precision(thresholds=[0.5, 1.5]), "Precision: thresholds must be in "
                                                       "[0, 1], got [0.5, 1.5]"),
    (lambda: metrics.Precision(top_k=0), "Precision: top_k must be a positive int or None, "
                                         "got 0"),
    (lambda: metrics.AUC(curve="ROCK"), "AUC: curve must be 'ROC' or 'PR', got 'ROCK'"),
    (lambda: metrics.AUC(num_thresholds=1), "AUC: num_thresholds must be an int > 1, got 1"),
    (lambda: metrics.AUC(multi_label=True), "AUC: multi_label, num_labels and label_weights "
                                            "are not supported (single-label AUC only)"),
    (lambda: metrics.TopKCategoricalAccuracy(k=0), "TopKCategoricalAccuracy: k must be a "
                                                   "positive int, got 0"),
    (lambda: metrics.Mean(dtype="float16"), "Mean: dtype='float16' is not supported "
                                            "(float32 results)"),
])
def test_metric_argument_errors(make, msg):
    with pytest.raises(ConfigError) as e:
        make()
    assert str(e.value) == msg


def test_config_round_trip_for_every_class():
    for name in sorted(metrics.__all__):
        cls = getattr(metrics, name)
        if not isinstance(cls, type) or cls in (metrics.Metric, metrics.MeanMetricWrapper):
            continue
        obj = cls(name=f"my_{name.lower()}")
        again = metrics.deserialize(metrics.serialize(obj))
        assert again == obj and again.name == f"my_{name.lower()}"


# ---- in compile ------------------------------------------------------------------------------
def _masked_binary_model():
    gm.set_random_seed(0)
    x = gm.Input(shape=(None,), dtype="int32")
    h = gm.LSTM(4, return_sequences=True)(gm.Embedding(6, 3, mask_zero=True)(x))
    return gm.Model(x, gm.Dense(1, activation="sigmoid")(h))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, (8, 5))
    x[::2, 3:] = 0  # padded tails
    return x, (rng.random((8, 5, 1)) < 0.5).astype(F32)


def test_compiled_metric_objects_equal_standalone_updates_on_kept_positions():
    model = _masked_binary_model()
    model.compile("sgd", "bce", metrics=["accuracy", metrics.AUC(), "precision",
                                         metrics.Recall(name="rec")],
                  weighted_metrics=[metrics.BinaryAccuracy(name="wacc")])
    x, y = _data()
    sw = np.linspace(0.5, 2, 8).astype(F32)
    got = model.evaluate(x, y, sample_weight=sw, batch_size=4, verbose=0, return_dict=True)
    assert list(got) == ["loss", "accuracy", "auc", "precision", "rec", "wacc"]
    pred, keep = model.predict(x), (x != 0).astype(F32)
    expected = {"accuracy": metrics.BinaryAccuracy(), "auc": metrics.AUC(),
                "precision": metrics.Precision(), "rec": metrics.Recall()}
    for sl in (slice(0, 4), slice(4, 8)):
        for obj in expected.values():
            obj.update_state(y[sl], pred[sl], sample_weight=keep[sl])
    for name, obj in expected.items():
        assert got[name] == pytest.approx(float(obj.result()), rel=1e-6), name
    wacc = metrics.BinaryAccuracy()
    for sl in (slice(0, 4), slice(4, 8)):
        wacc.update_state(y[sl], pred[sl], sample_weight=keep[sl] * sw[sl, None])
    assert got["wacc"] == pytest.approx(float(wacc.result()), rel=1e-6)
    h = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert sorted(h.history) == ["accuracy", "auc", "loss", "precision", "rec", "wacc"]
    assert list(model.test_on_batch(x, y, return_dict=True)) == list(got)


def test_compiled_metric_names_and_files(tmp_path):
    model = _masked_binary_model()
    model.compile("adam", "bce", metrics=["auc", metrics.Precision(thresholds=0.3)])
    x, y = _data(1)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.gmz")
    again = gm.load_model(tmp_path / "m.gmz")
    assert again.evaluate(x, y, return_dict=True, verbose=0) == \
        model.evaluate(x, y, return_dict=True, verbose=0)
    with pytest.raises(ConfigError, match="compile: Mean averages values given to "
                                          r"update_state\(values\)"):
        model.compile("sgd", "bce", metrics=[metrics.Mean()])


def test_default_names_are_keras_names():
    want = {"Mean": "mean", "Sum": "sum", "Accuracy": "accuracy",
            "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
            "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
            "MeanSquaredError": "mean_squared_error", "MeanAbsoluteError": "mean_absolute_error",
            "BinaryCrossentropy": "binary_crossentropy",
            "CategoricalCrossentropy": "categorical_crossentropy",
            "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
            "RootMeanSquaredError": "root_mean_squared_error",
            "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
            "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error",
            "TopKCategoricalAccuracy": "top_k_categorical_accuracy",
            "SparseTopKCategoricalAccuracy": "sparse_top_k_categorical_accuracy",
            "TruePositives": "true_positives", "FalsePositives": "false_positives",
            "TrueNegatives": "true_negatives", "FalseNegatives": "false_negatives",
            "Precision": "precision", "Recall": "recall", "AUC": "auc"}
    assert {n: getattr(metrics, n)().name for n in want} == want
