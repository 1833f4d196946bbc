"""BatchNormalization: Keras 3's arguments, weights and config; moving statistics
updated once per successful train step (fit, train_on_batch), never by predict,
evaluate or loss_and_gradients, nor by a refused step; the masked moments after a masked
Embedding; a frozen layer; a shared layer; save and load. Float32 comparisons use
rtol=1e-5 (a few float32 operations on values of size ~1)."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError, NumericalError, ShapeError

RTOL = 1e-5


def _model(bn, shape=(4, 3)):
    inp = gm.Input(shape)
    return gm.Model(inp, gm.Dense(1, name="head")(gm.Flatten()(bn(inp))))


def _x(shape=(6, 4, 3), seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 3 + 2).astype(np.float32)


def test_weights_in_keras_order_and_config():
    bn = gm.BatchNormalization(name="bn")
    _model(bn)
    assert [(v.name, v.trainable) for v in bn.weights] == [
        ("bn/gamma", True), ("bn/beta", True), ("bn/moving_mean", False),
        ("bn/moving_variance", False)]
    assert [w.tolist() for w in bn.get_weights()] == [[1.0] * 3, [0.0] * 3, [0.0] * 3,
                                                      [1.0] * 3]
    cfg = bn.get_config()
    assert {k: cfg[k] for k in ("axis", "momentum", "epsilon", "center", "scale",
                                "moving_mean_initializer", "renorm", "synchronized")} == {
        "axis": -1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True,
        "moving_mean_initializer": "zeros", "renorm": False, "synchronized": False}
    assert gm.BatchNormalization.from_config(cfg | {"name": "bn2"}).momentum == 0.99
    lone = gm.BatchNormalization(center=False, scale=False, name="lone")
    _model(lone)
    assert [v.name for v in lone.weights] == ["lone/moving_mean", "lone/moving_variance"]


@pytest.mark.parametrize("kwargs,message", [
    ({"momentum": "high"}, "momentum must be a finite number"),
    ({"epsilon": -1.0}, "epsilon must be a finite number >= 0"),
    ({"renorm": True}, r"\['renorm'\] are not supported"),
    ({"synchronized": True}, r"\['synchronized'\] are not supported"),
    ({"gamma_regularizer": "l2"}, r"\['gamma_regularizer'\] are not supported"),
    ({"center": 1}, "center must be True or False"),
    ({"axis": [1, 2]}, "axis must be an int"),
])
def test_argument_errors_name_the_layer(kwargs, message):
    with pytest.raises(ConfigError, match="BatchNormalization 'bn': " + message):
        gm.BatchNormalization(name="bn", **kwargs)


def test_only_the_last_axis():
    with pytest.raises(ShapeError, match="axis=1 is not supported for an input of rank 3"):
        _model(gm.BatchNormalization(axis=1, name="bn"))
    _model(gm.BatchNormalization(axis=2))  # rank - 1 is the last axis


def test_train_step_uses_batch_moments_and_updates_moving_stats_once():
    gm.set_random_seed(0)
    bn = gm.BatchNormalization(momentum=0.8, epsilon=1e-3, name="bn")
    model = _model(bn)
    model.compile(optimizer=gm.optimizers.SGD(1e-30), loss="mse")
    x, y = _x(), np.zeros((6, 1), np.float32)
    flat = x.reshape(-1, 3).astype(np.float64)
    model.train_on_batch(x, y)
    mm, mv = bn.get_weights()[2:]
    np.testing.assert_allclose(mm, 0.2 * flat.mean(0), rtol=RTOL)
    np.testing.assert_allclose(mv, 0.8 + 0.2 * flat.var(0), rtol=RTOL)
    model.train_on_batch(x, y)  # a second step moves them again, from the new values
    np.testing.assert_allclose(bn.get_weights()[2], 0.36 * flat.mean(0), rtol=RTOL)
    # predict / evaluate / loss_and_gradients use and keep the moving statistics
    before = [w.copy() for w in model.get_weights()]
    pred = model.predict(x)
    model.evaluate(x, y, verbose=0)
    model.loss_and_gradients(x, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    normed = (x - before[2]) / np.sqrt(before[3] + 1e-3)
    k, b = model.get_layer("head").get_weights()
    np.testing.assert_allclose(pred, normed.reshape(6, -1) @ k + b, rtol=RTOL, atol=1e-6)


def test_fit_updates_once_per_batch():
    bn = gm.BatchNormalization(momentum=0.5, center=False, scale=False, name="bn")
    model = _model(bn)
    model.compile(optimizer="sgd", loss="mse")
    x = _x((8, 4, 3), seed=1)
    model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
    first, second = x[:4].reshape(-1, 3), x[4:].reshape(-1, 3)
    want = (0.5 * first.mean(0).astype(np.float64)) * 0.5 + 0.5 * second.mean(0)
    np.testing.assert_allclose(bn.get_weights()[0], want, rtol=RTOL)


def test_a_refused_step_changes_no_statistic(monkeypatch):
    monkeypatch.setattr(gm.training.data, "ALLOW_NONFINITE", True)
    bn = gm.BatchNormalization(name="bn")
    model = _model(bn)
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    with pytest.raises(NumericalError):
        model.train_on_batch(_x(), np.full((6, 1), np.inf, np.float32))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_masked_moments_after_a_masked_embedding():
    # right padding, left padding, holes and an empty row: only kept steps count
    ids = np.array([[3, 1, 0, 0], [0, 0, 2, 5], [4, 0, 6, 0], [0, 0, 0, 0]])
    inp = gm.Input((4,), dtype="int32")
    emb = gm.Embedding(8, 3, mask_zero=True, name="emb")
    bn = gm.BatchNormalization(momentum=0.0, name="bn")
    h = bn(emb(inp))
    assert h.keras_mask is not None
    model = gm.Model(inp, gm.Dense(1)(gm.GlobalAveragePooling1D()(h)))
    model.compile(optimizer=gm.optimizers.SGD(1e-30), loss="mse")
    model.train_on_batch(ids, np.zeros((4, 1)))
    table = emb.get_weights()[0].astype(np.float64)
    kept = table[ids[ids != 0]]
    d = len(kept) + 1e-7
    mean = kept.sum(0) / d
    np.testing.assert_allclose(bn.get_weights()[2], mean, rtol=RTOL)
    np.testing.assert_allclose(bn.get_weights()[3], ((kept - mean) ** 2).sum(0) / d,
                               rtol=1e-4)


def test_a_frozen_layer_runs_in_inference_mode_while_fitting():
    bn = gm.BatchNormalization(name="bn")
    bn.trainable = False
    model = _model(bn)
    model.compile(optimizer="sgd", loss="mse")
    before = bn.get_weights()
    model.fit(_x(), np.ones((6, 1)), epochs=2, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [v.name for v in model.trainable_weights] == ["head/kernel", "head/bias"]


def test_a_shared_layer_updates_once_per_call_in_order():
    bn = gm.BatchNormalization(momentum=0.5, center=False, scale=False, name="bn")
    a, b = gm.Input((3,)), gm.Input((3,))
    model = gm.Model([a, b], gm.Dense(1)(gm.Add()([bn(a), bn(b)])))
    model.compile(optimizer="sgd", loss="mse")
    xa, xb = _x((5, 3), 2), _x((5, 3), 3)
    model.train_on_batch([xa, xb], np.zeros((5, 1)))
    want = (0.5 * xa.mean(0).astype(np.float64)) * 0.5 + 0.5 * xb.mean(0)
    np.testing.assert_allclose(bn.get_weights()[0], want, rtol=RTOL)


def test_training_argument_at_a_symbolic_call_is_refused():
    with pytest.raises(ConfigError, match="training=True at call time is not supported"):
        gm.BatchNormalization()(gm.Input((3,)), training=True)


def test_save_and_load_keep_the_moving_statistics(tmp_path):
    bn = gm.BatchNormalization(momentum=0.3, name="bn")
    model = _model(bn)
    model.compile(optimizer="adam", loss="mse")
    x = _x()
    model.fit(x, np.ones((6, 1)), epochs=3, verbose=0)
    model.save(tmp_path / "bn.gmz")
    back = gm.load_model(tmp_path / "bn.gmz")
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert back.get_layer("bn").momentum == 0.3


def test_generated_models_with_batch_norm_are_padding_invariant():
    # the testing kit runs inference plans (moving statistics); the training-mode masked
    # moments are pinned by test_masked_moments_after_a_masked_embedding above
    from graphmask.testing import build_model, check_padding_invariance, make_targets
    spec = ("ids", 7, 3, 0.0, 2, ((3, True, False, False),), 2, "mse", False, True)
    model, loss = build_model(spec, seed=1)
    assert "batch_norm" in [layer.name for layer in model.layers]
    x = np.array([[3, 1, 4, 0, 0], [0, 0, 5, 2, 6], [1, 0, 2, 0, 3], [0, 0, 0, 0, 0]])
    report = check_padding_invariance(model, x, make_targets(model, loss, x))
    assert "skipped" not in str(report).split("\n", 1)[1]
