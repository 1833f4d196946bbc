"""Keras-shaped API surface: module aliases, wrappers and accepted-but-default arguments."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError, MaskError


def test_keras_module_names_exist():
    assert gm.layers.Dense is gm.Dense and gm.models.Model is gm.Model
    assert gm.models.Sequential is gm.Sequential and gm.models.load_model is gm.load_model
    assert gm.callbacks.EarlyStopping is gm.EarlyStopping
    assert gm.utils.set_random_seed is gm.set_random_seed


def test_regularizer_arguments_at_default_are_accepted_others_refused():
    gm.Dense(2, kernel_regularizer=None, bias_constraint=None)
    gm.Embedding(5, 2, input_length=4)  # Keras 2 argument, ignored as by Keras 3
    with pytest.raises(ConfigError, match="kernel_regularizer.*not supported"):
        gm.Dense(2, kernel_regularizer="l2")


def test_time_distributed_dense_equals_dense_and_passes_mask():
    x = gm.Input(shape=(5,), dtype="int32")
    e = gm.Embedding(7, 3, mask_zero=True)(x)
    td = gm.TimeDistributed(gm.Dense(4))
    y = td(e)
    m = gm.Model(x, y)
    ids = np.array([[1, 2, 0, 0, 0]])
    emb, kernel, bias = m.get_weights()
    np.testing.assert_allclose(m.predict(ids)[0], emb[ids[0]] @ kernel + bias, rtol=1e-6)
    assert [layer.name for layer in m.layers] == ["input_layer", "embedding", "time_distributed"]
    g = m.graph
    assert g.node(g.nodes_by_op("dense")[0])["masks"] == g.nodes_by_op("mask_not_equal")
    assert td.output is y and td.input is e
    with pytest.raises(ConfigError, match="can wrap"):
        gm.TimeDistributed(gm.LSTM(2))


def test_global_max_pooling_refuses_a_mask():
    x = gm.Input(shape=(5,), dtype="int32")
    p = gm.GlobalMaxPooling1D()(gm.Embedding(7, 3, mask_zero=True)(x))
    with pytest.raises(MaskError, match="global_max_pooling1d"):
        _ = gm.Model(x, p).graph
    x2 = gm.Input(shape=(5, 3))
    m = gm.Model(x2, gm.GlobalMaxPooling1D()(x2))
    a = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(a), a.max(axis=1))


def test_time_distributed_saves_and_loads(tmp_path):
    x = gm.Input(shape=(5, 2))
    m = gm.Model(x, gm.TimeDistributed(gm.Dense(3, activation="relu"))(x))
    a = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    m.save(tmp_path / "td.gmz")
    np.testing.assert_array_equal(gm.load_model(tmp_path / "td.gmz").predict(a), m.predict(a))


def test_layer_order_follows_keras_depth_then_walk_from_outputs():
    x = gm.Input(shape=(4,), dtype="int32")
    e = gm.Embedding(5, 3, mask_zero=True)(x)
    h = gm.LSTM(4, return_sequences=True)(e)
    last = gm.LSTM(2)(h)             # created before the Dense, but Keras lists it after:
    seq = gm.Dense(3)(h)             # both have depth 0 and the walk reaches Dense first
    m = gm.Model(x, [seq, last])
    assert [layer.name for layer in m.layers] == ["input_layer", "embedding", "lstm", "dense",
                                                  "lstm_1"]
    assert [w.shape for w in m.get_weights()][-5:] == [(4, 3), (3,), (4, 8), (2, 8), (8,)]
