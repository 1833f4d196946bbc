"""BatchNormalization against Keras 3 (torch backend): the batch moments while training,
the masked moments after a masked Embedding (right and left padding, holes, rows with no
kept step, a batch with none), the moving statistics after SGD and Adam steps, inference
with them in predict and evaluate, a frozen layer, gradients against torch autograd.

Both models get Keras's random weights (normal * 0.5; moving variances uniform in
[0.5, 1.5)) copied into graphmask unchanged. Float32 tolerances: predict ``tw.RTOL,
tw.ATOL`` (1e-5, 1e-6); evaluate relative 1e-5; gradients relative 1e-4, absolute 1e-5;
weights (moving statistics included) after SGD steps ``tw.TRAIN_RTOL, tw.TRAIN_ATOL``,
after Adam absolute ``ADAM_TOL * lr * steps``. Keras's torch backend computes an
unmasked variance as ``E[x^2] - E[x]^2``, graphmask as ``E[(x - mean)^2]``: equal up to
float32 rounding of values of size ~1, inside these tolerances.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V, E, H, F = 6, 5, 9, 3, 4, 4
ADAM_TOL = 1e-3
OPTIMIZERS = {"SGD": {"learning_rate": 0.1}, "Adam": {"learning_rate": 0.01}}
PADDINGS = ("right", "left", "holes", "rows")


class Lib:
    def __init__(self, name):
        self.layers = keras.layers if name == "keras" else gm
        self.Input = keras.Input if name == "keras" else gm.Input
        self.Model = keras.Model if name == "keras" else gm.Model


def masked_embedding(lib):
    L = lib.layers
    ids = lib.Input((T,), dtype="int32", name="ids")
    h = L.BatchNormalization(momentum=0.8, name="bn")(
        L.Embedding(V, E, mask_zero=True, name="emb")(ids))
    return lib.Model(ids, L.Dense(2, name="head")(L.LSTM(H, name="lstm")(h)))


def masked_sequence_output(lib):
    L = lib.layers
    ids = lib.Input((T,), dtype="int32", name="ids")
    h = L.Embedding(V, E, mask_zero=True, name="emb")(ids)
    h = L.LSTM(H, return_sequences=True, name="lstm")(h)
    h = L.BatchNormalization(momentum=0.5, epsilon=0.01, center=False, name="bn")(h)
    return lib.Model(ids, L.Dense(2, name="head")(h))


def conv_and_dense(lib):
    L = lib.layers
    x = lib.Input((T, F), name="x")
    # no bias (nor bn_seq's beta) before a batch normalisation: its gradient is exactly
    # 0, rounding noise that Adam would turn into steps of size lr
    h = L.Conv1D(4, 3, padding="same", use_bias=False, name="conv")(x)
    h = L.BatchNormalization(momentum=0.9, center=False, name="bn_seq")(h)
    v = L.Dense(5, use_bias=False, name="proj")(L.Flatten(name="flat")(h))
    v = L.BatchNormalization(momentum=0.7, scale=False, name="bn_vec")(v)
    return lib.Model(x, L.Dense(1, name="head")(v))


def frozen(lib):
    L = lib.layers
    x = lib.Input((T, F), name="x")
    bn = L.BatchNormalization(name="bn")
    bn.trainable = False
    return lib.Model(x, L.Dense(2, name="head")(bn(L.Dense(3, name="proj")(x))))


CASES = {"masked_embedding": masked_embedding,
         "masked_sequence_output": masked_sequence_output,
         "conv_and_dense": conv_and_dense, "frozen": frozen}
MASKED = ("masked_embedding", "masked_sequence_output")


def _keras_names(variables):
    return ["/".join(p for p in v.path.split("/") if p != "lstm_cell") for v in variables]


def twin(case, seed=0):
    g, k = CASES[case](Lib("graphmask")), CASES[case](Lib("keras"))
    ours, theirs = [v.name for v in g.weights], _keras_names(k.weights)
    assert ours == theirs, f"{case}: weight order differs\n{ours}\n{theirs}"
    rng = np.random.default_rng(seed)
    k.set_weights([(rng.random(w.shape) + 0.5 if v.path.endswith("moving_variance")
                    else rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for v, w in zip(k.weights, k.get_weights())])
    g.set_weights(k.get_weights())
    return g, k


def batch(k, padding, rng):
    shape = (B,) + tuple(k.inputs[0].shape[1:])
    if "int" in str(k.inputs[0].dtype):
        return tw.ids_for(tw.mask_pattern(padding, B, T, rng), V, rng)
    return (rng.standard_normal(shape) * 2 + 1).astype(np.float32)


def targets(k, rng):
    return rng.standard_normal((B,) + tuple(k.outputs[0].shape[1:])).astype(np.float32)


@pytest.mark.parametrize("case", CASES)
def test_weights_in_keras_order_and_config(case):
    g, k = twin(case)
    for gl, kl in zip(g.layers, k.layers):
        assert [tuple(v.shape) for v in gl.weights] == [tuple(w.shape) for w in kl.weights]
        assert len(gl.trainable_weights) == len(kl.trainable_weights), gl.name
        if type(gl).__name__ == "BatchNormalization":
            ours, theirs = gl.get_config(), kl.get_config()
            assert set(theirs) <= set(ours)
            for key in theirs.keys() - {"dtype", "beta_initializer", "gamma_initializer",
                                        "moving_mean_initializer",
                                        "moving_variance_initializer"}:
                assert ours[key] == theirs[key], key


@pytest.mark.parametrize("case", CASES)
def test_predict_and_evaluate_use_the_moving_statistics(case):
    g, k = twin(case)
    g.compile(loss="mse")
    k.compile(loss="mse")
    rng = np.random.default_rng(1)
    for padding in PADDINGS if case in MASKED else ("none",):
        x, y = batch(k, padding, rng), targets(k, rng)
        tw.assert_close(g.predict(x), k.predict(x, batch_size=B, verbose=0),
                        what=f"{case} predict, {padding}")
        tw.assert_close(g.evaluate(x, y, batch_size=B), k.evaluate(x, y, batch_size=B,
                                                                   verbose=0),
                        rtol=1e-5, atol=0, what=f"{case} evaluate, {padding}")


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_in_training_mode_match_torch_autograd(case):
    g, k = twin(case)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(3)
    x, y = batch(k, "mixed", rng), targets(k, rng)
    loss, grads = g.loss_and_gradients(x, y)
    conv = keras.ops.convert_to_tensor
    value = k.compute_loss(x=conv(x), y=conv(y), y_pred=k(conv(x), training=True),
                           training=True)
    value.backward()
    assert loss == pytest.approx(float(value.detach()), rel=1e-5)
    for var, kv in zip(g.trainable_weights, k.trainable_weights):
        theirs = np.zeros(kv.shape, np.float32) if kv.value.grad is None \
            else kv.value.grad.detach().numpy()
        tw.assert_close(grads[var.name], theirs, rtol=1e-4, atol=1e-5,
                        what=f"{case} gradient of {var.name}")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("case", CASES)
def test_moving_statistics_and_weights_after_train_steps(case, optimizer):
    g, k = twin(case)
    paddings = PADDINGS + ("batch",) if case == "masked_embedding" else \
        PADDINGS if case in MASKED else ("none",) * 3
    tw.check_train_steps(g, k, optimizer, OPTIMIZERS[optimizer], paddings, batch, targets,
                         case, ADAM_TOL)
    if case != "frozen":  # the steps moved the moving statistics
        bn = next(layer for layer in g.layers if "bn" in layer.name)
        assert np.abs(bn.get_weights()[-2]).max() > 0.0


def test_eager_calls_match_keras_and_a_training_call_moves_the_statistics():
    x = np.random.default_rng(7).standard_normal((4, 3, 2)).astype(np.float32) * 2 + 1
    kl, gl = keras.layers.BatchNormalization(), gm.BatchNormalization()
    tw.assert_close(gl(x), keras.ops.convert_to_numpy(kl(x)), what="inference")
    for _ in range(2):
        theirs = keras.ops.convert_to_numpy(kl(x, training=True))
        tw.assert_close(gl(x, training=True), theirs, rtol=1e-5, atol=1e-5)
        tw.assert_close(gl.get_weights(), kl.get_weights(), what="moving statistics")
    tw.assert_close(gl(x), keras.ops.convert_to_numpy(kl(x)), what="inference after")
