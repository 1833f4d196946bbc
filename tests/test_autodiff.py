"""Whole-model gradients, masking properties of gradients, SGD, and learning.

Gradient checks run in float64 (every layer built with dtype="float64") against central
finite differences of ``test_on_batch``.
"""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Masking, Model

IDS = np.array([[3, 1, 4, 0, 0, 0],     # right padding
                [0, 0, 2, 5, 1, 2],     # left padding
                [1, 0, 3, 0, 4, 1],     # holes
                [0, 0, 0, 0, 0, 0]])    # empty row

LOSSES = {
    "mse": ("linear", 3, lambda r: r.normal(size=(4, 6, 3))),
    "mae": ("linear", 3, lambda r: r.normal(size=(4, 6, 3))),
    "binary_crossentropy": ("sigmoid", 3, lambda r: (r.random((4, 6, 3)) > 0.5).astype(float)),
    "categorical_crossentropy": ("softmax", 3, lambda r: np.eye(3)[r.integers(0, 3, (4, 6))]),
    "sparse_categorical_crossentropy": ("softmax", 3, lambda r: r.integers(0, 3, (4, 6))),
}


def _stacked(activation, units, go_backwards=False):
    x = Input(shape=(6,), dtype="int32")
    e = Embedding(7, 4, mask_zero=True, dtype="float64")(x)
    h = LSTM(5, return_sequences=True, dtype="float64")(e)
    h = LSTM(4, return_sequences=True, go_backwards=go_backwards, dtype="float64")(h)
    return Model(x, Dense(units, activation=activation, dtype="float64")(h))


def _fd_check(model, x, y, sw=None, n_entries=6, eps=1e-6):
    loss, grads = model.loss_and_gradients(x, y, sample_weight=sw)
    rng = np.random.default_rng(0)
    weights = model.get_weights()
    names = [v.name for v in model.weights]
    for i, (name, w) in enumerate(zip(names, weights)):
        for flat in rng.choice(w.size, size=min(n_entries, w.size), replace=False):
            idx = np.unravel_index(flat, w.shape)
            plus = [a.copy() for a in weights]
            minus = [a.copy() for a in weights]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            model.set_weights(plus)
            lp = model.test_on_batch(x, y, sample_weight=sw)
            model.set_weights(minus)
            lm = model.test_on_batch(x, y, sample_weight=sw)
            fd = (lp - lm) / (2 * eps)
            assert grads[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, idx)
    model.set_weights(weights)
    return loss, grads


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_whole_model_gradients_match_finite_differences(loss):
    activation, units, make_y = LOSSES[loss]
    m = _stacked(activation, units, go_backwards=(loss == "mae"))
    m.compile(optimizer="sgd", loss=loss)
    y = make_y(np.random.default_rng(1))
    _fd_check(m, IDS, y)


def test_gradients_with_sample_weights_and_masking_layer():
    x = Input(shape=(5, 2), dtype="float64")
    h = LSTM(3, return_sequences=True, dtype="float64")(Masking(0.0, dtype="float64")(x))
    m = Model(x, Dense(1, dtype="float64")(LSTM(3, dtype="float64")(h)))
    m.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(3, 5, 2))
    xs[0, 3:] = 0.0
    xs[1, :2] = 0.0
    _fd_check(m, xs, rng.normal(size=(3, 1)), sw=np.array([1.0, 0.5, 2.0]))


def _seq_model():
    x = Input(shape=(6,), dtype="int32")
    h = LSTM(4, return_sequences=True)(Embedding(7, 3, mask_zero=True)(x))
    m = Model(x, Dense(2)(LSTM(3, return_sequences=True)(h)))
    m.compile(optimizer="sgd", loss="mse")
    return m


def test_masked_ids_and_row_zero_do_not_matter():
    m = _seq_model()
    y = np.random.default_rng(3).normal(size=(4, 6, 2))
    loss, grads = m.loss_and_gradients(IDS, y)
    # every 0 id is masked, so row 0 of the embeddings gets exactly zero gradient
    assert np.all(grads["embedding/embeddings"][0] == 0.0)
    w = m.get_weights()
    w[0][0] = 123.0  # change the embedding of id 0
    m.set_weights(w)
    loss2, grads2 = m.loss_and_gradients(IDS, y)
    assert loss2 == loss
    for name in grads:
        np.testing.assert_array_equal(grads2[name], grads[name])


def test_all_masked_batch_gives_zero_loss_and_zero_gradients():
    m = _seq_model()
    loss, grads = m.loss_and_gradients(np.zeros((3, 6), int), np.ones((3, 6, 2)))
    assert loss == 0.0
    assert all(np.all(g == 0.0) for g in grads.values())


def test_sgd_step_is_w_minus_lr_grad():
    m = _seq_model()
    m.compile(optimizer=gm.optimizers.SGD(learning_rate=0.1), loss="mse")
    y = np.random.default_rng(4).normal(size=(4, 6, 2))
    _, grads = m.loss_and_gradients(IDS, y)
    before = {v.name: v.value.copy() for v in m.weights}
    m.train_on_batch(IDS, y)
    for v in m.weights:
        np.testing.assert_array_equal(v.value, before[v.name] - np.float32(0.1) * grads[v.name])


def test_training_learns_the_masked_sum():
    """Predict the sum of the kept values of a masked sequence."""
    gm.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, t = 512, 8
    ids = rng.integers(1, 6, size=(n, t))
    for row, length in zip(ids, rng.integers(1, t + 1, size=n)):
        row[length:] = 0
    y = ids.sum(axis=1, keepdims=True).astype(np.float32) / 10.0
    x = Input(shape=(t,), dtype="int32")
    h = LSTM(16)(Embedding(6, 8, mask_zero=True)(x))
    m = Model(x, Dense(1)(h))
    m.compile(optimizer=gm.optimizers.Adam(0.01), loss="mse")
    first = m.evaluate(ids, y)
    hist = m.fit(ids, y, batch_size=32, epochs=8, verbose=0)
    last = m.evaluate(ids, y)
    assert len(hist.history["loss"]) == 8
    assert last < first / 10, (first, last)


def test_fit_with_validation_data_pairs_and_triples():
    """val_loss is evaluate() on the validation data (batched like the training data, as
    Keras does) with the weights at the end of the epoch: the same computation, so
    exactly the same number."""
    m = _seq_model()
    y = np.random.default_rng(5).normal(size=(4, 6, 2))
    h2 = m.fit(IDS, y, validation_data=(IDS, y), epochs=2, batch_size=2, verbose=0)
    assert len(h2.history["val_loss"]) == 2
    assert h2.history["val_loss"][1] == m.evaluate(IDS, y, batch_size=2, verbose=0)
    assert h2.history["val_loss"][0] != h2.history["val_loss"][1]  # the epoch trained
    w = np.array([1.0, 0.0, 2.0, 0.5])
    h3 = m.fit(IDS, y, validation_data=(IDS, y, w), epochs=1, verbose=0)
    assert len(h3.history["val_loss"]) == 1
    weighted = m.evaluate(IDS, y, sample_weight=w, verbose=0)
    assert h3.history["val_loss"][0] == weighted  # the third element is the sample weight
    assert weighted != m.evaluate(IDS, y, verbose=0)
