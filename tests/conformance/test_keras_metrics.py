"""Metric classes against Keras 3: standalone results over two updates (with and without a
sample_weight mask), and compiled metric objects in evaluate / fit."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, C = 4, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((B, T, C)).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    ids = rng.integers(0, C, (B, T))
    return {
        "p": p, "ids": ids, "oh": np.eye(C, dtype=np.float32)[ids],
        "mask": (rng.random((B, T)) < 0.7).astype(np.float32),
        "pb": rng.random((B, T, 1)).astype(np.float32),
        "yb": (rng.random((B, T, 1)) < 0.5).astype(np.float32),
        "rp": rng.standard_normal((B, T, 2)).astype(np.float32),
        "ry": rng.standard_normal((B, T, 2)).astype(np.float32),
    }


CASES = [
    ("SparseCategoricalAccuracy", {}, "ids", "p"), ("CategoricalAccuracy", {}, "oh", "p"),
    ("BinaryAccuracy", {"threshold": 0.4}, "yb", "pb"), ("MeanSquaredError", {}, "ry", "rp"),
    ("MeanAbsoluteError", {}, "ry", "rp"), ("RootMeanSquaredError", {}, "ry", "rp"),
    ("MeanAbsolutePercentageError", {}, "ry", "rp"),
    ("BinaryCrossentropy", {}, "yb", "pb"), ("CategoricalCrossentropy", {}, "oh", "p"),
    ("SparseCategoricalCrossentropy", {}, "ids", "p"),
    ("TopKCategoricalAccuracy", {"k": 2}, "oh", "p"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "ids", "p"),
    ("Precision", {}, "yb", "pb"), ("Recall", {"thresholds": [0.3, 0.6]}, "yb", "pb"),
    ("Precision", {"top_k": 2}, "oh", "p"), ("Recall", {"class_id": 1}, "oh", "p"),
    ("AUC", {}, "yb", "pb"), ("AUC", {"curve": "PR"}, "yb", "pb"),
    ("AUC", {"curve": "PR", "summation_method": "minoring", "num_thresholds": 50}, "yb", "pb"),
    ("AUC", {"summation_method": "majoring", "thresholds": [0.2, 0.5, 0.7]}, "yb", "pb"),
    ("TruePositives", {}, "yb", "pb"), ("FalsePositives", {"thresholds": 0.3}, "yb", "pb"),
    ("TrueNegatives", {}, "yb", "pb"), ("FalseNegatives", {"thresholds": 0.7}, "yb", "pb"),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "mask-weighted"])
def test_standalone_metrics_match_keras(weighted):
    """Every case in one test (Keras's per-test session reset costs more than a case)."""
    d = _data()
    for name, cfg, yk, pk in CASES:
        what = f"{name}({cfg}), {'mask-weighted' if weighted else 'plain'}"
        ours, theirs = getattr(gm.metrics, name)(**cfg), getattr(keras.metrics, name)(**cfg)
        for sl in (slice(0, 2), slice(2, 4)):  # two updates accumulate
            sw = d["mask"][sl] if weighted else None
            ours.update_state(d[yk][sl], d[pk][sl], sample_weight=sw)
            theirs.update_state(d[yk][sl], d[pk][sl], sample_weight=sw)
        # float32 sums in a different order: a few ulps
        np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=2e-6,
                                   atol=1e-7, err_msg=what)
        ours.reset_state()
        theirs.reset_state()
        assert float(np.sum(ours.result())) == float(np.sum(np.asarray(theirs.result()))) \
            == 0, what


def test_mean_and_sum_match_keras():
    rng = np.random.default_rng(1)
    for cls in ("Mean", "Sum"):
        ours, theirs = getattr(gm.metrics, cls)(), getattr(keras.metrics, cls)()
        for v, w in [(np.array([1.0, 3.0]), None), (rng.random((2, 3)), rng.random((2, 3))),
                     (rng.random((3, 2, 2)), rng.random(3))]:
            ours.update_state(v, w)
            theirs.update_state(v, w)
        np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-6)


def _binary_twin(masked):
    spec = ([("embedding", {"input_dim": 7, "output_dim": 3, "mask_zero": masked})]
            + [("lstm", {"units": 4, "return_sequences": True}),
               ("dense", {"units": 1, "activation": "sigmoid"})])
    return tw.build_twin(spec, (T,), "int32", seed=4)


def _metric_objects(lib):
    m = lib.metrics
    return [m.BinaryAccuracy(), m.AUC(), m.Precision(), m.Recall(thresholds=[0.4, 0.6]),
            m.RootMeanSquaredError(), m.BinaryCrossentropy()]


def test_compiled_metric_objects_match_keras_on_unmasked_outputs():
    t = _binary_twin(masked=False)
    rng = np.random.default_rng(5)
    x = rng.integers(1, 7, (12, T))
    y = (rng.random((12, T, 1)) < 0.4).astype(np.float32)
    t.gm.compile(gm.optimizers.Adam(0.02), "bce", metrics=_metric_objects(gm))
    t.keras.compile(keras.optimizers.Adam(0.02), "binary_crossentropy",
                    metrics=_metric_objects(keras))
    hg = t.gm.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    hk = t.keras.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert sorted(hg.history) == sorted(hk.history)
    for key in hk.history:
        np.testing.assert_allclose(np.asarray(hg.history[key], dtype=np.float64),
                                   np.asarray(hk.history[key], dtype=np.float64),
                                   rtol=2e-4, atol=1e-6, err_msg=key)
    eg = t.gm.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    ek = t.keras.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    for key in ek:
        np.testing.assert_allclose(eg[key], ek[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_compiled_confusion_metrics_leave_padding_out():
    """On a masked output, graphmask's Precision/Recall/AUC equal Keras's metric updated
    with the mask as sample_weight; Keras 3's compiled ones count padded positions."""
    t = _binary_twin(masked=True)
    rng = np.random.default_rng(6)
    x = tw.ids_for(tw.mask_pattern("mixed", 12, T, rng), 7, rng)
    y = (rng.random((12, T, 1)) < 0.4).astype(np.float32)
    t.gm.compile("sgd", "bce", metrics=[gm.metrics.AUC(), gm.metrics.Precision(),
                                        gm.metrics.BinaryAccuracy()])
    t.keras.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.BinaryAccuracy()])
    got = t.gm.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    pred = tw.keras_predict(t.keras, x)
    keep = (x != 0).astype(np.float32)
    for name, obj in (("auc", keras.metrics.AUC()), ("precision", keras.metrics.Precision())):
        for sl in (slice(0, 4), slice(4, 8), slice(8, 12)):
            obj.update_state(y[sl], pred[sl], sample_weight=keep[sl])
        np.testing.assert_allclose(got[name], np.asarray(obj.result()), rtol=1e-5, err_msg=name)
    ek = t.keras.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["binary_accuracy"], ek["binary_accuracy"], rtol=1e-6)
