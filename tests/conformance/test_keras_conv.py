"""Conv1D, MaxPooling1D, AveragePooling1D and SpatialDropout1D against Keras 3 (torch
backend).

Each model is built twice from one builder (graphmask and ``keras.layers``); Keras's
random weights (normal * 0.5) are copied into graphmask unchanged, so the weight lists
must agree name by name. Inputs are unmasked float sequences (a mask cannot reach these
layers: graphmask refuses it at compile time, Keras warns and drops it; the last tests
pin both sides). Compared: weight order and config, ``predict``, ``evaluate``, the loss
and every gradient against torch autograd, the weights after SGD and Adam
``train_on_batch`` steps, eager calls.

Float32 tolerances: predict and eager calls ``tw.RTOL, tw.ATOL`` (1e-5, 1e-6; sums of
at most 24 products of values of size ~1); gradients relative 1e-4, absolute 1e-5 (sums
over batch and steps of up to ~100 terms); evaluate relative 1e-5; weights after SGD
``tw.TRAIN_RTOL, tw.TRAIN_ATOL``, after Adam absolute ``ADAM_TOL * lr * steps`` (see
test_keras_composed_layers.py for why Adam needs an absolute bound).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, F = 5, 9, 4
ADAM_TOL = 1e-3
OPTIMIZERS = {"SGD": {"learning_rate": 0.05}, "Adam": {"learning_rate": 0.01}}
STEPS = 3


class Lib:
    def __init__(self, name):
        self.keras = name == "keras"
        self.layers = keras.layers if self.keras else gm
        self.Input = keras.Input if self.keras else gm.Input
        self.Model = keras.Model if self.keras else gm.Model


def conv_paddings(lib):
    L = lib.layers
    x = lib.Input((T, F), name="x")
    h = L.Conv1D(5, 3, padding="same", strides=2, activation="relu", name="same_s2")(x)
    h = L.Conv1D(4, 2, padding="causal", dilation_rate=2, name="causal_d2")(h)
    h = L.Conv1D(6, 3, padding="same", name="same_odd")(h)
    h = L.Conv1D(4, 2, padding="valid", groups=2, use_bias=False, activation="tanh",
                 name="grouped")(h)
    return lib.Model(x, L.Dense(2, name="head")(h))


def conv_strided_valid(lib):
    L = lib.layers
    x = lib.Input((T, F), name="x")
    h = L.Conv1D(3, 4, strides=3, activation="sigmoid", name="s3")(x)
    h = L.Conv1D(2, 1, activation="gelu", name="pointwise")(h)
    return lib.Model(x, L.Dense(1, name="head")(L.Flatten(name="flat")(h)))


def pooling(lib):
    L = lib.layers
    x = lib.Input((T, F), name="x")
    h = L.Conv1D(4, 2, padding="same", name="conv")(x)
    a = L.MaxPooling1D(3, strides=2, padding="same", name="max_same")(h)      # 5 steps
    b = L.AveragePooling1D(3, strides=2, padding="same", name="avg_same")(h)  # even total
    c = L.AveragePooling1D(2, strides=2, padding="same", name="avg_edge")(h)  # odd total
    d = L.MaxPooling1D(name="max_valid")(h)                                   # 4 steps
    e = L.AveragePooling1D(4, strides=1, name="avg_valid")(h)                 # 6 steps
    flat = [L.Flatten(name=f"flat_{i}")(t) for i, t in enumerate((a, b, c, d, e))]
    return lib.Model(x, L.Dense(2, name="head")(L.Concatenate(name="cat")(flat)))


def spatial_dropout(lib):
    L = lib.layers
    x = lib.Input((T, F), name="x")
    h = L.SpatialDropout1D(0.0, name="sd0")(L.Conv1D(4, 3, padding="causal", name="conv")(x))
    h = L.SpatialDropout1D(0.4, name="sd")(h)  # the identity outside training
    return lib.Model(x, L.Dense(2, name="head")(L.MaxPooling1D(3, name="pool")(h)))


CASES = {"conv_paddings": conv_paddings, "conv_strided_valid": conv_strided_valid,
         "pooling": pooling}
ALL = {**CASES, "spatial_dropout": spatial_dropout}


def twin(case, seed=0):
    g, k = ALL[case](Lib("graphmask")), ALL[case](Lib("keras"))
    ours, theirs = [v.name for v in g.weights], [v.path for v in k.weights]
    assert ours == theirs, f"{case}: weight order differs\n{ours}\n{theirs}"
    rng = np.random.default_rng(seed)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    return g, k


def batch(k, padding, rng):
    return rng.standard_normal((B, T, F)).astype(np.float32)


def targets(k, rng):
    return rng.standard_normal((B,) + tuple(k.outputs[0].shape[1:])).astype(np.float32)


def _keras_loss_and_gradients(k, x, y):
    conv = keras.ops.convert_to_tensor
    k.zero_grad()
    value = k.compute_loss(x=conv(x), y=conv(y), y_pred=k(conv(x), training=True),
                           training=True)
    value.backward()
    grads = [v.value.grad.detach().numpy().copy() for v in k.trainable_weights]
    k.zero_grad()
    return float(value.detach()), grads


@pytest.mark.parametrize("case", ALL)
def test_layers_weights_and_configs_as_keras(case):
    g, k = twin(case)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    for gl, kl in zip(g.layers, k.layers):
        assert [tuple(v.shape) for v in gl.weights] == [tuple(w.shape) for w in kl.weights]
        if type(gl).__name__ in ("Conv1D", "MaxPooling1D", "AveragePooling1D",
                                 "SpatialDropout1D"):
            ours, theirs = gl.get_config(), kl.get_config()
            shared = sorted(set(theirs) & set(ours) - {"dtype", "activation", "seed",
                                                       "kernel_initializer",
                                                       "bias_initializer"})
            assert {key: ours[key] for key in shared} == {key: theirs[key] for key in shared}
            assert set(theirs) - set(ours) <= {"lora_rank", "lora_alpha", "seed"}, gl.name


@pytest.mark.parametrize("case", ALL)
def test_predict_and_evaluate(case):
    g, k = twin(case)
    g.compile(loss="mse")
    k.compile(loss="mse")
    rng = np.random.default_rng(1)
    for _ in range(2):
        x, y = batch(k, None, rng), targets(k, rng)
        tw.assert_close(g.predict(x), k.predict(x, batch_size=B, verbose=0), what=case)
        tw.assert_close(g.evaluate(x, y, batch_size=B), k.evaluate(x, y, batch_size=B,
                                                                   verbose=0),
                        rtol=1e-5, atol=0, what=f"{case} evaluate")


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_match_torch_autograd(case):
    g, k = twin(case)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(3)
    x, y = batch(k, None, rng), targets(k, rng)
    loss, grads = g.loss_and_gradients(x, y)
    k_loss, k_grads = _keras_loss_and_gradients(k, x, y)
    assert loss == pytest.approx(k_loss, rel=1e-5)
    for var, theirs in zip(g.trainable_weights, k_grads):
        tw.assert_close(grads[var.name], theirs, rtol=1e-4, atol=1e-5,
                        what=f"{case} gradient of {var.name}")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("case", CASES)
def test_train_on_batch(case, optimizer):
    g, k = twin(case)
    tw.check_train_steps(g, k, optimizer, OPTIMIZERS[optimizer], ("none",) * STEPS, batch,
                         targets, case, ADAM_TOL)


EAGER = {
    "conv_same_s2": lambda L: L.Conv1D(3, 4, strides=2, padding="same"),
    "conv_causal": lambda L: L.Conv1D(2, 3, padding="causal", dilation_rate=3),
    "conv_groups": lambda L: L.Conv1D(4, 2, groups=4, activation="relu"),
    "max_same": lambda L: L.MaxPooling1D(4, strides=3, padding="same"),
    "avg_same_edge": lambda L: L.AveragePooling1D(2, strides=1, padding="same"),
    "avg_valid": lambda L: L.AveragePooling1D(3, strides=2),
    "spatial_dropout": lambda L: L.SpatialDropout1D(0.5),
}


@pytest.mark.parametrize("name", EAGER)
def test_eager_calls_match_keras(name):
    x = np.random.default_rng(4).standard_normal((3, 7, 4)).astype(np.float32)
    kl, gl = EAGER[name](keras.layers), EAGER[name](gm)
    theirs = keras.ops.convert_to_numpy(kl(x))
    gl(x)
    if kl.weights:
        gl.set_weights(kl.get_weights())
    tw.assert_close(gl(x), theirs, what=name)


@pytest.mark.parametrize("make", [lambda L: L.Conv1D(2, 2, name="conv"),
                                  lambda L: L.MaxPooling1D(name="conv"),
                                  lambda L: L.AveragePooling1D(2, name="conv")])
def test_keras_drops_the_mask_where_graphmask_refuses_it(make):
    """Keras warns and drops a mask reaching a convolution or a pooling layer; graphmask
    refuses at compile time, naming both layers, until it is dropped on purpose."""
    ids = keras.Input((T,), dtype="int32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make(keras.layers)(keras.layers.Embedding(7, F, mask_zero=True)(ids))
    assert getattr(out, "_keras_mask", None) is None
    assert any("does not support masking" in str(w.message) for w in caught)
    gids = gm.Input((T,), dtype="int32")
    h = gm.Embedding(7, F, mask_zero=True, name="tokens")(gids)
    with pytest.raises(gm.errors.MaskError, match="mask created by layer 'tokens'.*'conv'"):
        gm.Model(gids, make(gm)(h)).compile(loss="mse")
    dropped = gm.Lambda(lambda t: t * 1.0, mask=lambda inputs, mask: None)(h)
    gm.Model(gids, make(gm)(dropped)).compile(loss="mse")
