"""Dropout: the identity at inference, Keras's scaled random zeroing while training."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Dropout, Embedding, Input, Model
from graphmask.ops import get_op
from tests.ops.harness import check_op

X = np.random.default_rng(0).normal(size=(4, 5, 3))


def test_inference_harness():
    check_op("dropout", {"rate": 0.5}, {"x": X})


def test_training_zeroes_and_scales_and_vjp_uses_the_same_draw():
    op = get_op("dropout")
    gm.set_random_seed(3)
    y, scale = op.forward({"rate": 0.25, "_training": True}, {"x": X})
    kept = scale != 0
    np.testing.assert_allclose(y[kept], X[kept] / 0.75)
    assert np.all(y[~kept] == 0)
    assert 0.1 < 1 - kept.mean() < 0.4
    g = np.ones_like(X)
    dx = op.vjp({"rate": 0.25, "_training": True}, {"x": X}, [y, scale], [g], ["x"])["x"]
    np.testing.assert_array_equal(dx, scale)


def test_model_dropout_is_identity_in_predict_and_random_in_fit():
    x = Input(shape=(6,), dtype="int32")
    emb, lstm, dense = Embedding(9, 4, mask_zero=True), LSTM(3), Dense(2)
    m = Model(x, dense(lstm(Dropout(0.5)(emb(x)))))
    ref = Model(x, dense(lstm(emb(x))))  # the same layers and weights, no dropout
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 0, 0, 0, 0]])
    np.testing.assert_array_equal(m.predict(ids), ref.predict(ids))
    g = m.graph
    (d,) = g.nodes_by_op("dropout")
    assert g.node(d)["masks"] == g.nodes_by_op("mask_not_equal")  # the mask passes through
    m.compile(optimizer="sgd", loss="mse")
    y = np.ones((2, 2))
    gm.set_random_seed(7)
    first = m.loss_and_gradients(ids, y)[0]
    gm.set_random_seed(7)
    assert m.loss_and_gradients(ids, y)[0] == first  # seeded: repeatable
    assert m.loss_and_gradients(ids, y)[0] != first  # a new draw each step
    assert m.evaluate(ids, y) == m.evaluate(ids, y)  # evaluate: no dropout


def test_bad_rate():
    with pytest.raises(gm.errors.ConfigError, match="rate must be in"):
        Dropout(1.0)
