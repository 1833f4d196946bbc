"""GlobalMaxPooling1D with tied maxima against Keras 3: the gradient is split evenly.

Keras's layer is ``ops.max`` over time, whose gradient (torch ``amax``, JAX, TF) gives
``dy / n`` to each of ``n`` tied steps. Ties only show in the weights when the tied steps
have different inputs, so the model projects 2 features with a kernel whose two rows are
equal: rows with the same feature sum give exactly the same value (all numbers are
dyadic, so every product and sum is exact), and all-zero padded rows tie with every kept
row whose features sum to 0.
"""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()  # Keras 3 on torch; the skip names what is missing
import torch  # only once import_keras has checked that it is installed

import graphmask as gm
from tests.conformance import twin as tw

B, T, H = 6, 5, 3
# rows summing to 0 tie with the zero padding; [1, 2] ties with [2, 1] and [3, 0]
ROWS = np.array([[1.0, -1.0], [2.0, -2.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0], [0.5, 0.25],
                 [-1.5, 0.5], [0.0, 0.0]], np.float32)


def _models(seed):
    def build(lib):
        x = lib.Input(shape=(T, 2), dtype="float32", name="x")
        z = lib.layers.Dense(H, name="proj")(x) if lib is keras else gm.Dense(H, name="proj")(x)
        pool = keras.layers.GlobalMaxPooling1D if lib is keras else gm.GlobalMaxPooling1D
        p = pool(name="pool")(z)
        head = keras.layers.Dense(2, name="head") if lib is keras else gm.Dense(2, name="head")
        return lib.Model(x, head(p))

    g, k = build(gm), build(keras)
    rng = np.random.default_rng(seed)
    w = rng.choice([-0.75, -0.5, 0.5, 1.25], size=H).astype(np.float32)
    kernel = np.stack([w, w])                    # equal rows: the value depends on x0 + x1
    bias = rng.choice([-0.5, 0.0, 0.25], size=H).astype(np.float32)
    hk = (rng.standard_normal((H, 2)) * 0.5).astype(np.float32)
    g.set_weights([kernel, bias, hk, np.zeros(2, np.float32)])
    tw.copy_weights(g, k)
    return g, k


def _batch(kind, seed):
    rng = np.random.default_rng(seed)
    m = tw.mask_pattern(kind, B, T, rng)
    x = ROWS[rng.integers(0, len(ROWS), size=(B, T))]
    x[~m] = 0.0                                   # padded steps are all-zero rows
    return x, rng.standard_normal((B, 2)).astype(np.float32)


def _ties_between_different_rows(g, x) -> int:
    """How many (sample, unit) maxima are tied between steps with different inputs."""
    kernel, bias = g.get_weights()[:2]
    z = x @ kernel + bias
    best = z.max(axis=1, keepdims=True)
    n = 0
    for b in range(B):
        for j in range(H):
            tied = np.flatnonzero(z[b, :, j] == best[b, 0, j])
            n += len({tuple(r) for r in x[b, tied]}) > 1
    return n


def _keras_gradients(k, x, y):
    k.compile(optimizer="sgd", loss="mse")
    xt = torch.tensor(x)
    loss = keras.losses.MeanSquaredError()(torch.tensor(y), k(xt))
    for v in k.trainable_weights:
        v.value.grad = None
    loss.backward()
    return float(loss.detach()), [v.value.grad.numpy().copy() for v in k.trainable_weights]


@pytest.mark.parametrize("kind", ["right", "left", "holes", "rows", "mixed", "batch"])
def test_gradients_with_tied_maxima(kind):
    g, k = _models(seed=3)
    x, y = _batch(kind, seed=len(kind))
    if kind == "batch":  # nothing kept: every step of every sample ties at the bias
        assert not x.any()
    else:
        assert _ties_between_different_rows(g, x) > 0, "the batch must hold ties that matter"
    g.compile(optimizer="sgd", loss="mse")
    loss, grads = g.loss_and_gradients(x, y)
    kloss, kgrads = _keras_gradients(k, x, y)
    tw.assert_close(loss, kloss, what="loss")
    for v, kg in zip(g.trainable_weights, kgrads):
        tw.assert_close(grads[v.name], kg, what=f"gradient of {v.name}")


@pytest.mark.parametrize("name,cfg", [("SGD", {"learning_rate": 0.05}),
                                      ("Adam", {"learning_rate": 0.05})], ids=str)
def test_weights_after_train_steps_with_tied_maxima(name, cfg):
    g, k = _models(seed=4)
    go, ko = tw.optimizer_pair(name, **cfg)
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    for step, kind in enumerate(["right", "left", "holes"]):
        x, y = _batch(kind, seed=10 + step)
        if step == 0:
            assert _ties_between_different_rows(g, x) > 0
        ours = g.train_on_batch(x, y)
        theirs = k.train_on_batch(x, y)
        tw.assert_close(ours, theirs, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"loss at step {step}")
        for v, a, b in zip(g.weights, g.get_weights(), tw.keras_weights(k)):
            tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"step {step} {v.name}")
