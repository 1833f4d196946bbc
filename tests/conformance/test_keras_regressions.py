"""Regression tests for graphmask vs Keras 3 discrepancies the conformance suite found.

All of them are fixed; each test pins the behaviour to Keras 3's. validation_data given
as a pair; result names with several outputs; metrics= vs weighted_metrics= (Keras 3
applies sample weights to weighted_metrics only).
"""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm
from tests.conformance import twin as tw

B, T, C, V = 6, 5, 3, 9


def _seq_twin():
    spec = [("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": True}),
            ("lstm", {"units": 4, "return_sequences": True}),
            ("dense", {"units": C, "activation": "softmax"})]
    return tw.build_twin(spec, (T,), "int32")


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = tw.ids_for(tw.mask_pattern("mixed", B, T, rng), V, rng)
    return x, tw.targets_for("cce", (B, T, C), rng), rng


def test_fit_validation_data_pair():
    """D1 (fixed): fit(validation_data=(x_val, y_val)) used to raise TypeError (the pair
    was unpacked without a sample_weight); it now gives Keras 3's val_loss."""
    t = _seq_twin()
    t.compile("sgd", "cce")
    x, y, _ = _data()
    theirs = t.keras.fit(x[:4], y[:4], batch_size=2, epochs=1, shuffle=False, verbose=0,
                         validation_data=(x[4:], y[4:]))
    ours = t.gm.fit(x[:4], y[:4], batch_size=2, epochs=1, shuffle=False, verbose=0,
                    validation_data=(x[4:], y[4:]))
    tw.assert_close(ours.history["val_loss"], theirs.history["val_loss"])


def _two_output_models():
    models = {}
    for lib in (gm, keras):
        layers = gm if lib is gm else keras.layers
        inp = (gm.Input if lib is gm else keras.Input)(shape=(3,), dtype="int32", name="a")
        h = layers.LSTM(3, name="l")(layers.Embedding(5, 2, mask_zero=True, name="e")(inp))
        o1 = layers.Dense(2, activation="softmax", name="o1")(h)
        o2 = layers.Dense(2, activation="softmax", name="o2")(h)
        models[lib] = (gm.Model if lib is gm else keras.Model)(inp, [o1, o2])
    models[keras].set_weights(models[gm].get_weights())
    return models[gm], models[keras]


def test_multi_output_metric_names():
    """D2 (fixed): with two outputs and metrics=[["accuracy"], ["accuracy"]], graphmask
    used to report one key 'accuracy' (o1's value was lost); it now reports Keras 3's
    loss, o1_loss, o2_loss, o1_accuracy, o2_accuracy, with Keras's values."""
    g, k = _two_output_models()
    rng = np.random.default_rng(0)
    x = rng.integers(1, 5, (4, 3)).astype(np.int32)
    y1, y2 = (np.eye(2, dtype=np.float32)[rng.integers(0, 2, 4)] for _ in range(2))
    for m in (g, k):
        m.compile("sgd", "categorical_crossentropy", metrics=[["accuracy"], ["accuracy"]])
    ours = g.evaluate(x, [y1, y2], return_dict=True)
    theirs = k.evaluate(x, [y1, y2], verbose=0, return_dict=True)
    assert set(ours) == set(theirs) == {"loss", "o1_loss", "o2_loss", "o1_accuracy",
                                        "o2_accuracy"}, (ours, theirs)
    for name in ours:
        tw.assert_close(ours[name], theirs[name], what=name)
    assert len(g.evaluate(x, [y1, y2])) == 5


def test_metrics_ignore_sample_weight_in_keras():
    """D3 (fixed): Keras 3 applies sample_weight only to compile(weighted_metrics=...);
    its compile(metrics=...) see the mask only. graphmask used to weight ``metrics``; it
    now leaves them unweighted, as Keras does."""
    t = _seq_twin()
    t.compile("sgd", "cce", metrics=["accuracy"])
    x, y, rng = _data()
    sw = rng.random((B, T)).astype(np.float32)
    ours = t.gm.evaluate(x, y, sample_weight=sw, batch_size=B, return_dict=True)
    theirs = t.keras.evaluate(x, y, sample_weight=sw, batch_size=B, verbose=0,
                              return_dict=True)
    tw.assert_close(ours["accuracy"], theirs["accuracy"])


def test_compile_weighted_metrics_match_keras():
    """D3b (fixed): compile(weighted_metrics=[...]) used to be refused. Now, as in Keras 3,
    a metric given in both lists is reported twice: ``accuracy`` over the kept positions,
    ``weighted_accuracy`` also weighted by sample_weight; without weights they agree."""
    t = _seq_twin()
    for m in (t.gm, t.keras):
        m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    x, y, rng = _data()
    sw = rng.random((B, T)).astype(np.float32)
    ours = t.gm.evaluate(x, y, sample_weight=sw, batch_size=B, return_dict=True)
    theirs = t.keras.evaluate(x, y, sample_weight=sw, batch_size=B, verbose=0,
                              return_dict=True)
    assert set(ours) == set(theirs) == {"loss", "accuracy", "weighted_accuracy"}
    for name in ours:
        tw.assert_close(ours[name], theirs[name], what=name)
    # the two definitions, from the predictions and the mask (ids != 0)
    kept = x != 0
    hit = (t.gm.predict(x).argmax(-1) == y.argmax(-1)) & kept
    assert ours["accuracy"] == pytest.approx(hit.sum() / kept.sum(), rel=1e-6)
    assert ours["weighted_accuracy"] == pytest.approx((hit * sw).sum() / (kept * sw).sum(),
                                                      rel=1e-6)
    assert ours["accuracy"] != pytest.approx(ours["weighted_accuracy"], rel=1e-3)
    plain = t.gm.evaluate(x, y, batch_size=B, return_dict=True)
    assert plain["weighted_accuracy"] == plain["accuracy"] == ours["accuracy"]


def test_branching_model_layer_order_and_outputs_match():
    """Keras orders layers by depth, then by a walk from the outputs: get_weights must
    line up for branching models too (a stacked go_backwards LSTM included)."""
    def build(lib):
        layers = gm if lib is gm else keras.layers
        x = (gm.Input if lib is gm else keras.Input)(shape=(6,), dtype="int32")
        e = layers.Embedding(9, 3, mask_zero=True)(x)
        h = layers.LSTM(4, return_sequences=True, go_backwards=True)(e)
        h = layers.LSTM(5, return_sequences=True)(h)
        h2, _, c2 = layers.LSTM(3, return_state=True)(h)
        return (gm.Model if lib is gm else keras.Model)(x, [layers.Dense(2)(h), h2, c2])
    g, k = build(gm), build(keras)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    k.set_weights(g.get_weights())
    ids = np.array([[1, 2, 3, 0, 0, 0], [0, 0, 4, 5, 6, 7], [1, 0, 2, 0, 3, 0],
                    [0, 0, 0, 0, 0, 0]])
    for a, b in zip(g.predict(ids), k.predict(ids, verbose=0)):
        tw.assert_close(a, b)
